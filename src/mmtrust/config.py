"""Typed method configurations: dataclass defaults (the paper preset), named presets, YAML and ``k=v``.

A method's config is a dataclass whose defaults are the published configuration. Presets, a YAML file
and command-line ``--set key=value`` pairs are applied on top, in that order. Nested dataclasses are
addressed with dotted keys (``train.lr=1e-3``). Unknown keys and values of the wrong type are refused
with a message that lists what is accepted.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from pathlib import Path
from typing import Any

import yaml

__all__ = ["TrainSettings", "build_config", "config_to_dict", "config_from_dict", "parse_set_args",
           "parse_data_options", "ConfigError"]


class ConfigError(ValueError):
    """A configuration key or value that is not accepted."""


@dataclasses.dataclass
class TrainSettings:
    """Training-loop settings shared by every trainable method (the engine reads these)."""

    epochs: int = 20
    batch_size: int = 4
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adam"  # adam | adamw | sgd
    scheduler: str = "none"  # none | onecycle | cosine
    seed: int = 100
    num_workers: int = 0
    precision: str = "32-true"
    deterministic: bool = False
    gradient_clip_val: float = 0.0
    limit_train_batches: float = 1.0
    select_best: bool = True  # keep the best epoch by ``monitor`` on the validation split (never on test)
    monitor: str = "val_loss"  # a validation quantity the recipe logs: val_loss, or e.g. val_auc (forgery)
    monitor_mode: str = "auto"  # min | max | auto (min: losses, EER, MAE...; max: AUC, accuracy...; else an error)


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _coerce(value: Any, typ: Any, key: str) -> Any:
    origin = typing.get_origin(typ)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        return _coerce(value, args[0], key)
    if origin in (tuple, list):
        args = typing.get_args(typ)
        if isinstance(value, str):
            try:
                value = yaml.safe_load(value if value.startswith(("[", "(")) else f"[{value}]")
            except yaml.YAMLError:
                raise ConfigError(f"{key}: expected a list such as [0.7, 2.5], got {value!r}") from None
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        elem = args[0] if args else Any
        out = [_coerce(v, elem, key) for v in value]
        return tuple(out) if origin is tuple else out
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if typ in (int, float):
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected {typ.__name__}, got {value!r}") from None
        if typ is int:
            if not number.is_integer():
                raise ConfigError(f"{key}: expected int, got {value!r}")
            return int(number)
        return number
    if typ is str:
        return str(value)
    return value


def _apply(cfg: Any, overrides: dict[str, Any], where: str) -> Any:
    for key, value in overrides.items():
        obj = cfg
        parts = key.split(".")
        for i, part in enumerate(parts):
            types_ = _field_types(type(obj))
            if part not in types_:
                close = difflib.get_close_matches(part, list(types_), n=3)
                hint = f" (did you mean {', '.join(close)}?)" if close else ""
                raise ConfigError(
                    f"unknown config key {key!r} in {where}{hint}. Accepted keys: {', '.join(sorted(types_))}"
                )
            if i == len(parts) - 1:
                current = getattr(obj, part)
                if dataclasses.is_dataclass(current):
                    if not isinstance(value, dict):
                        raise ConfigError(f"{key}: expected a mapping of {type(current).__name__} fields")
                    _apply(current, value, where)
                else:
                    setattr(obj, part, _coerce(value, types_[part], key))
            else:
                obj = getattr(obj, part)
                if not dataclasses.is_dataclass(obj):
                    raise ConfigError(f"{key}: {part!r} is not a group of settings")
    return cfg


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def parse_data_options(data: str) -> tuple[str, dict[str, Any]]:
    """A ``--data`` string ``NAME?k=v&...`` -> ``(NAME, {k: value})``; values are parsed as YAML
    (``online=1`` -> 1, ``kinds=[sbi]`` -> a list, ``split_fractions={test: [0.6, 1.0]}`` -> a dict)."""
    data, _, query = data.partition("?")
    kw: dict[str, Any] = {}
    for pair in filter(None, query.split("&")):
        key, eq, value = pair.partition("=")
        if not eq:
            raise ValueError(f"dataset option {pair!r} must be key=value (in {data}?{query})")
        kw[key] = yaml.safe_load(value)
    return data, kw


def parse_set_args(pairs: list[str] | None) -> dict[str, str]:
    """``["a=1", "train.lr=3e-3"]`` -> ``{"a": "1", "train.lr": "3e-3"}``."""
    out: dict[str, str] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise ConfigError(f"--set expects key=value, got {pair!r}")
        k, v = pair.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def build_config(
    config_cls: type,
    presets: dict[str, dict[str, Any]] | None = None,
    preset: str = "paper",
    yaml_path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> Any:
    """Defaults -> preset -> YAML file -> overrides."""
    presets = presets or {"paper": {}}
    if preset not in presets:
        raise ConfigError(f"unknown preset {preset!r}; this method has: {', '.join(sorted(presets))}")
    cfg = config_cls()
    _apply(cfg, _flatten(presets[preset]), f"preset {preset!r}")
    if yaml_path is not None:
        path = Path(yaml_path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path} is not valid YAML: {err}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a YAML mapping of config keys, got {type(data).__name__}")
        _apply(cfg, _flatten(data), str(path))
    if overrides:
        _apply(cfg, _flatten(dict(overrides)), "overrides")
    return cfg


def config_to_dict(cfg: Any) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


def config_from_dict(config_cls: type, data: dict[str, Any]) -> Any:
    cfg = config_cls()
    return _apply(cfg, _flatten(data), "saved config")
