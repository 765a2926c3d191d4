"""Official (third-party) weights by name: ``--checkpoint official:PURE``.

mmtrust never downloads weights. A method that can load released checkpoints lists them in a class
attribute ``official_weights`` (short name -> :class:`OfficialWeights`); the user puts the files in a
weights folder once, and ``official:NAME`` finds them there. Folders searched, in order:

1. every folder in ``$MMTRUST_WEIGHTS`` (``os.pathsep``-separated),
2. ``<cache>/weights`` (the mmtrust cache folder: ``$MMTRUST_CACHE`` or ``~/.cache/mmtrust``),

each as it is and in its ``<family>/`` sub-folder (``rppg/`` for rPPG weights), so the rPPG-Toolbox
``final_model_release`` folder can be pointed at directly.

Example::

    export MMTRUST_WEIGHTS=~/rPPG-Toolbox/final_model_release
    mmtrust predict physmamba --checkpoint official:PURE my_video.mp4
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .data.cache import cache_dir

__all__ = ["OfficialWeights", "OFFICIAL_PREFIX", "weights_dirs", "resolve_official", "is_official_spec",
           "official_names"]

OFFICIAL_PREFIX = "official:"


@dataclass(frozen=True)
class OfficialWeights:
    """One released checkpoint: its file name as published, where it is published, what it was trained on."""

    file: str
    source: str
    trained_on: str = ""
    licence: str = ""
    #: other accepted short names (e.g. "UBFC" for "UBFC-rPPG")
    aliases: tuple[str, ...] = ()


def is_official_spec(spec: str | os.PathLike | None) -> bool:
    return isinstance(spec, str) and spec.startswith(OFFICIAL_PREFIX)


def weights_dirs() -> list[Path]:
    """The folders searched for official weights, in order (they need not exist)."""
    dirs = [Path(p).expanduser() for p in os.environ.get("MMTRUST_WEIGHTS", "").split(os.pathsep) if p.strip()]
    dirs.append(cache_dir() / "weights")
    return dirs


def official_names(model_cls: Any) -> dict[str, OfficialWeights]:
    """Short name (and every alias) -> :class:`OfficialWeights` for a method's model class."""
    table: dict[str, OfficialWeights] = {}
    for name, w in (getattr(model_cls, "official_weights", None) or {}).items():
        table[name] = w
        for a in w.aliases:
            table[a] = w
    return table


def resolve_official(method: str, model_cls: Any, spec: str, family: str = "") -> tuple[Path, str]:
    """``official:NAME`` -> (path of the weights file, canonical NAME), or a clear error saying where to put it."""
    name = spec[len(OFFICIAL_PREFIX):] if is_official_spec(spec) else spec
    table = official_names(model_cls)
    if not table:
        raise ValueError(f"method {method!r} has no official released weights; pass an mmtrust checkpoint folder "
                         f"written by `mmtrust train {method}`")
    canonical = {id(w): n for n, w in (getattr(model_cls, "official_weights", None) or {}).items()}
    if name not in table:
        known = ", ".join(f"official:{n}" for n in getattr(model_cls, "official_weights", {}))
        raise ValueError(f"unknown official weights {spec!r} for {method!r}; known: {known}")
    w = table[name]
    tried = []
    for d in weights_dirs():
        for folder in ([d / family] if family else []) + [d]:
            path = folder / w.file
            tried.append(str(path))
            if path.is_file():
                return path, canonical[id(w)]
    raise FileNotFoundError(
        f"official weights {spec!r} for {method!r} are the file {w.file!r} ({w.trained_on or 'released'} weights, "
        f"published at {w.source}{'; licence: ' + w.licence if w.licence else ''}). mmtrust does not download "
        f"weights: put the file into one of these folders, or point MMTRUST_WEIGHTS at the folder that holds it:\n  "
        + "\n  ".join(tried)
    )
