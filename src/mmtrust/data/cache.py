"""The user cache folder and crash-safe file writes.

Everything mmtrust generates or preprocesses lives under :func:`cache_dir` (``$MMTRUST_CACHE`` or
``~/.cache/mmtrust``). Files are written to a temporary name beside their target and renamed into place,
so a run that fails half-way never leaves a truncated file where a good one was.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["cache_dir", "atomic_path", "atomic_dir", "config_hash"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _publishable(path: Path, is_dir: bool) -> None:
    """mkstemp/mkdtemp create private (0600/0700) entries; give them the permissions a plain write would."""
    os.chmod(path, (0o777 if is_dir else 0o666) & ~_umask())


def cache_dir(*parts: str) -> Path:
    """``$MMTRUST_CACHE/<parts>`` (default ``~/.cache/mmtrust``), created if missing."""
    root = Path(os.environ.get("MMTRUST_CACHE") or Path.home() / ".cache" / "mmtrust")
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def config_hash(obj: Any, n: int = 12) -> str:
    """A short stable hash of a JSON-able object (used to key caches on their settings)."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:n]


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success rename it onto ``target``.

    On an exception the temporary file is removed and ``target`` is untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp" + "".join(target.suffixes),
                               dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        _publishable(tmp_path, is_dir=False)
        os.replace(tmp_path, target)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; on success it replaces ``target`` as a whole."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield tmp
        _publishable(tmp, is_dir=True)
        if target.exists():
            # a unique name: two processes finishing the same build at once must not share it
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            try:
                os.replace(tmp, target)
            except OSError:
                if not target.is_dir():  # anything but "another process just published it" is an error
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
