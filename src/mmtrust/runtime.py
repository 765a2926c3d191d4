"""Process-level runtime settings that mmtrust's own processes (the CLI, benchmark rows) apply.

:func:`keep_freed_memory`: by default glibc ``malloc`` serves every allocation above 128 KiB-32 MiB with a
fresh ``mmap`` and returns it to the kernel on ``free``. PyTorch's CPU allocator has no cache, so a network
whose activations are hundreds of MB (PhysMamba's paper preset allocates ~1 GB of short-lived tensors a
forward) page-faults every one of those pages back in, zero-filled, on every forward: ~270,000 minor page
faults per PhysMamba clip. Asking malloc to serve large blocks from its heap and to keep freed memory for
reuse (``M_MMAP_MAX = 0``, ``M_TRIM_THRESHOLD`` = the maximum) removes them: 345 faults a clip, and the
PhysMamba paper forward went from 2.16 s to 1.65 s median on the 2-core CPU (two processes run one after
the other; more figures in ``mmtrust.methods.rppg.physmamba``). The cost: memory a process has freed stays in
it (its resident size does not shrink back after a peak), and malloc's alignment padding can leave the heap
above the live working set: PhysMamba's peak RSS went from 0.83-0.85 GB to 0.87-1.08 GB.

This is a setting for a whole process, so the library never applies it on import: ``mmtrust`` commands
and benchmark rows call :func:`keep_freed_memory` at start-up, and a Python user can call it too. Set
``MMTRUST_KEEP_FREED_MEMORY=0`` to leave malloc as it is. It does nothing outside glibc (macOS, Windows,
musl), where it returns False.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

__all__ = ["keep_freed_memory"]

# glibc <malloc.h> parameter numbers
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4

_APPLIED: list[bool] = []


def keep_freed_memory() -> bool:
    """Make glibc malloc keep freed memory for reuse instead of unmapping it (see the module docstring).

    Idempotent. Returns True when the setting is in force, False when it could not be or should not be
    applied (not Linux/glibc, or ``MMTRUST_KEEP_FREED_MEMORY=0``).
    """
    if _APPLIED:
        return _APPLIED[0]
    ok = False
    if os.environ.get("MMTRUST_KEEP_FREED_MEMORY", "1").strip().lower() not in ("0", "false", "no", "off") \
            and sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            mallopt = libc.mallopt
        except (OSError, AttributeError):  # not glibc (e.g. musl has no mallopt)
            mallopt = None
        if mallopt is not None:
            mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
            mallopt.restype = ctypes.c_int
            ok = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    _APPLIED.append(ok)
    return ok
