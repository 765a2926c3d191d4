"""Checkpoints without pickle.

Two formats, both safetensors:

* **Method checkpoints** (what ``mmtrust train`` exports and ``eval``/``predict`` load): a folder with
  ``model.safetensors`` (the model's state dict) and ``config.json`` (method name, preset, the full typed
  config, the mmtrust version, optional metrics). :func:`save_method` / :func:`load_method`.
* **Training checkpoints** (what Lightning writes while training, used to resume): one ``.ckpt`` file
  that is a safetensors file whose header metadata holds the JSON skeleton of Lightning's checkpoint
  dict (loops, optimiser and scheduler state, callbacks) with every tensor stored in the safetensors body.
  :class:`SafetensorsCheckpointIO` is the Lightning plugin that reads and writes it.

Third-party ``.pth`` files are never unpickled freely: method loaders use ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.fabric.plugins.io.checkpoint_io import CheckpointIO
from safetensors import safe_open
from safetensors.torch import save_file

from ..data.cache import atomic_dir, atomic_path

__all__ = ["SafetensorsCheckpointIO", "save_method", "load_method", "read_method_config", "CheckpointMismatchError"]

_TREE_KEY = "mmtrust_tree"
FORMAT_VERSION = 1


class CheckpointMismatchError(ValueError):
    """A checkpoint that belongs to another method or architecture."""


# ----------------------------------------------------------------------------------- tree codec
def _encode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = obj.detach().cpu().contiguous()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        return {"__dict__": [[_encode(k, tensors), _encode(v, tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, tensors) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v, tensors) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return {"__float__": repr(obj)}
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot store a {type(obj).__name__} in a safetensors checkpoint (value {obj!r})")


def _decode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__dict__" in obj:
            return {_decode(k, tensors): _decode(v, tensors) for k, v in obj["__dict__"]}
        if "__tuple__" in obj:
            return tuple(_decode(v, tensors) for v in obj["__tuple__"])
        if "__float__" in obj:
            return float(obj["__float__"])
    return obj


def save_tree(tree: Any, path: str | Path) -> None:
    """Write a nested structure of tensors and plain values to one safetensors file, atomically."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _encode(tree, tensors)
    # safetensors refuses tensors that share memory; give each its own storage
    tensors = {k: v.clone() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={_TREE_KEY: json.dumps(skeleton), "format": "mmtrust-tree-v1"})


def load_tree(path: str | Path, device: str = "cpu") -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    try:
        with safe_open(str(path), framework="pt", device=device) as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:  # noqa: BLE001 - any parse failure means "not our format"
        raise ValueError(f"{path} is not an mmtrust training checkpoint (a safetensors file): {err}") from err
    if _TREE_KEY not in meta:
        raise ValueError(f"{path} is a safetensors file but not an mmtrust training checkpoint (no {_TREE_KEY!r})")
    return _decode(json.loads(meta[_TREE_KEY]), tensors)


class SafetensorsCheckpointIO(CheckpointIO):
    """Lightning ``CheckpointIO`` plugin: training checkpoints as safetensors, no pickle anywhere."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError("SafetensorsCheckpointIO takes no storage_options")
        save_tree(checkpoint, path)

    def load_checkpoint(self, path, map_location: Any | None = None, weights_only: bool | None = None) -> dict[str, Any]:
        return load_tree(path)

    def remove_checkpoint(self, path) -> None:
        Path(path).unlink(missing_ok=True)


# ------------------------------------------------------------------------- method checkpoints
def save_method(
    directory: str | Path,
    model: torch.nn.Module,
    *,
    method: str,
    preset: str,
    config: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Export ``model`` to ``directory/model.safetensors`` + ``directory/config.json``, atomically.

    The folder is written whole or not at all: an existing checkpoint there is only replaced once the new
    one is complete.
    """
    from .. import __version__

    directory = Path(directory)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    with atomic_dir(directory) as tmp:
        save_file(state, str(tmp / "model.safetensors"), metadata={"method": method})
        info = {
            "format": "mmtrust-method",
            "format_version": FORMAT_VERSION,
            "mmtrust_version": __version__,
            "method": method,
            "preset": preset,
            "config": config,
            "num_parameters": int(sum(p.numel() for p in model.parameters())),
            **(extra or {}),
        }
        (tmp / "config.json").write_text(json.dumps(info, indent=2, default=str))
    return directory


def read_method_config(directory: str | Path) -> dict[str, Any]:
    directory = Path(directory)
    cfg_path = directory / "config.json"
    if not cfg_path.is_file() or not (directory / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"{directory} is not an mmtrust checkpoint folder: expected\n"
            f"  {directory}/model.safetensors\n  {directory}/config.json"
        )
    info = json.loads(cfg_path.read_text())
    if info.get("format") != "mmtrust-method":
        raise ValueError(f"{cfg_path} is not an mmtrust method checkpoint config")
    return info


def load_method(directory: str | Path, expected_method: str | None = None):
    """Rebuild the model saved in ``directory`` and load its weights strictly.

    Returns ``(model, info)``. ``expected_method`` refuses a checkpoint of another method, naming both.
    """
    from safetensors.torch import load_file

    from ..config import config_from_dict
    from ..registry import get_method

    info = read_method_config(directory)
    saved = info["method"]
    if expected_method is not None and saved != expected_method:
        raise CheckpointMismatchError(
            f"checkpoint {directory} holds method {saved!r}, but {expected_method!r} was asked for"
        )
    entry = get_method(saved)
    cfg = config_from_dict(entry.config_cls, info["config"])
    model = entry.model_cls(cfg)
    state = load_file(str(Path(directory) / "model.safetensors"))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointMismatchError(
            f"checkpoint {directory} does not fit method {saved!r}: missing keys {missing[:10]}, "
            f"unexpected keys {unexpected[:10]}"
        )
    model.eval()
    return model, info
