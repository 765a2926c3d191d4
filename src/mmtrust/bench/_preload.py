"""Imported once by the benchmark's fork server: every method's process then starts with these loaded.

Each benchmark row runs in its own process (its own peak memory; a crash becomes a row). Spawning a fresh
interpreter per row re-imports torch, Lightning, SciPy, scikit-learn and matplotlib every time (5-10 s a row
on a 2-core machine); the ``forkserver`` start method imports them once and forks a ready process per row.
Only imports happen here: no tensors, no thread pools, so forking stays safe.
"""

from __future__ import annotations

import importlib
import os

os.environ.setdefault("MPLBACKEND", "Agg")

for _name in ("torch", "lightning.pytorch", "numpy", "scipy.signal", "scipy.stats", "sklearn.metrics",
              "sklearn.decomposition", "matplotlib.pyplot", "yaml", "safetensors.torch", "cv2", "av"):
    try:
        importlib.import_module(_name)
    except ImportError:  # an optional package: the row that needs it says so itself
        pass

from mmtrust.registry import _load_plugins  # noqa: E402 - after the heavy imports above
from mmtrust.runtime import keep_freed_memory  # noqa: E402

_load_plugins()
keep_freed_memory()  # a malloc setting (no threads, no memory): every forked row inherits it
