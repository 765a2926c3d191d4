"""mmtrust: trustworthy face and multimodal perception in one PyTorch toolkit.

The public surface is small::

    import mmtrust
    mmtrust.list_methods()                         # ['chrom', 'green', 'ica', ..., 'physnet', 'pos']
    model = mmtrust.create_method("pos", preset="tiny")
    data = mmtrust.load_dataset("synthetic-rppg", split="test")
    model = mmtrust.load_checkpoint("runs/physnet/checkpoint")
    model = mmtrust.load_checkpoint("official:PURE", method="physmamba")   # $MMTRUST_WEIGHTS
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "list_methods", "create_method", "method_info", "list_datasets", "load_dataset",
           "load_checkpoint", "build_method_config"]


def list_methods(family: str | None = None) -> list[str]:
    """Names of the registered methods (optionally of one family: rppg, forgery, antispoof, ...)."""
    from .registry import list_methods as _lm

    return _lm(family)


def method_info(name: str) -> dict[str, Any]:
    """Metadata of a method: family, task, paper (title, venue, arXiv, code URL, licence), presets."""
    from .registry import get_method

    return get_method(name).as_dict()


def build_method_config(name: str, preset: str = "paper", yaml_path: str | None = None, **overrides: Any) -> Any:
    """The typed config of ``name`` for ``preset`` with a YAML file and keyword overrides applied."""
    from .config import build_config
    from .registry import get_method

    entry = get_method(name)
    return build_config(entry.config_cls, entry.presets, preset, yaml_path, overrides)


def create_method(name: str, preset: str = "paper", **overrides: Any):
    """Build the model of method ``name`` with the ``paper`` (published) or ``tiny`` (CPU-seconds) preset.

    Keyword overrides set config fields, dotted names as ``**{"train.lr": 1e-3}``.
    """
    from .registry import get_method

    entry = get_method(name)
    cfg = build_method_config(name, preset, **overrides)
    model = entry.model_cls(cfg)
    model.preset = preset
    return model


def list_datasets(task: str | None = None) -> list[str]:
    from .registry import list_datasets as _ld

    return _ld(task)


def load_dataset(name: str, root: str | None = None, split: str = "all", **kwargs: Any):
    """A registered dataset: built-in ones need no ``root``; real benchmarks read ``root``."""
    from .registry import get_dataset

    return get_dataset(name).factory(root=root, split=split, **kwargs)


def load_checkpoint(path: str, method: str | None = None, preset: str = "paper"):
    """A ready model (eval mode) from a checkpoint.

    ``path`` is a folder written by ``mmtrust train`` (a checkpoint of another ``method`` is refused) or, with
    ``method`` given, also ``"official:NAME"`` (released weights found in ``$MMTRUST_WEIGHTS``), a training
    ``.ckpt`` or a third-party weights file loaded strictly into the ``preset`` architecture.
    """
    if method is None:
        from .engine.checkpoint import load_method

        return load_method(path, expected_method=None)[0]
    from .engine.loading import load_model

    return load_model(method, path, preset=preset)[0]
