"""One way to get a ready model of a method from whatever the user points at.

``checkpoint`` may be:

* an mmtrust checkpoint folder (``model.safetensors`` + ``config.json``, written by ``mmtrust train``),
* an mmtrust training checkpoint (``OUT/checkpoints/*.ckpt``; the run's own config is used),
* ``official:NAME``: a released third-party checkpoint found in the weights folders (:mod:`mmtrust.weights`),
* a third-party weights file (``.pth``), read by the method's ``load_pretrained`` with
  ``torch.load(weights_only=True)`` and a strict key map,
* nothing: classical methods, or trainable ones with ``untrained=True`` (random weights).

A checkpoint of another method or architecture is refused with the names / mismatching keys.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

__all__ = ["load_model"]


def load_model(method: str, checkpoint: str | Path | None = None, *, preset: str = "paper", config: str | None = None,
               sets: list[str] | None = None, untrained: bool = False) -> tuple[Any, str, dict[str, Any]]:
    """``(model in eval mode, preset, config dict)`` of ``method`` loaded from ``checkpoint`` (see module doc)."""
    from ..config import build_config, config_from_dict, config_to_dict, parse_set_args
    from ..registry import get_method
    from ..weights import is_official_spec, resolve_official
    from .checkpoint import CheckpointMismatchError, load_method, load_tree

    entry = get_method(method)
    if checkpoint is not None and not is_official_spec(checkpoint) and Path(checkpoint).is_dir():
        model, info = load_method(checkpoint, expected_method=method)
        model.eval()
        return model, info["preset"], info["config"]
    cfg = build_config(entry.config_cls, entry.presets, preset, config, parse_set_args(sets))
    if entry.trainable and not checkpoint and not untrained:
        raise ValueError(f"{method!r} has learned weights: pass --checkpoint (a folder written by `mmtrust train "
                         f"{method}`, official:NAME for released weights, or a weights file), or --untrained to "
                         f"run it with random weights")
    if is_official_spec(checkpoint):
        checkpoint, _ = resolve_official(method, entry.model_cls, str(checkpoint), entry.family)
    model = entry.model_cls(cfg)
    if checkpoint:
        path = Path(checkpoint)
        if not path.is_file():
            raise FileNotFoundError(f"--checkpoint {checkpoint}: no such file or checkpoint folder")
        try:
            tree = load_tree(path)  # one of our own training checkpoints (safetensors)?
        except ValueError:
            tree = None
        if tree is not None:
            run_cfg = path.parent.parent / "run_config.json"
            saved = json.loads(run_cfg.read_text()) if run_cfg.is_file() else {}
            if saved.get("method") and saved["method"] != method:
                raise CheckpointMismatchError(f"{path} was trained for method {saved['method']!r}, not {method!r}")
            if "config" in saved:  # rebuild with the run's own settings, not the preset's
                cfg = config_from_dict(entry.config_cls, saved["config"])
                model = entry.model_cls(cfg)
            state = {k.removeprefix("model."): v for k, v in tree["state_dict"].items()}
            try:
                model.load_state_dict(state, strict=True)
            except RuntimeError as err:
                lines = str(err).splitlines()
                raise CheckpointMismatchError(f"{path} does not fit {method!r} with this preset/config: "
                                              f"{lines[1].strip() if len(lines) > 1 else err}") from err
        else:
            try:
                model.load_pretrained(path)
            except (RuntimeError, EOFError, OSError, IndexError, KeyError, pickle.UnpicklingError) as err:
                raise ValueError(f"{path}: not a readable weights file for {method!r} ({type(err).__name__}: "
                                 f"{str(err).splitlines()[0] if str(err) else ''})") from err
    model.eval()
    return model, preset, config_to_dict(cfg)
