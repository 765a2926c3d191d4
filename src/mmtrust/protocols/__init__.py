"""Evaluation protocols as small YAML files: which data trains, which data and split test.

A protocol names its data with the same strings as ``--data`` (``NAME[:ROOT][?k=v&...]``); real dataset
folders come from environment variables (``${UBFC_ROOT}``, ``${PURE_ROOT}``), so the files stay the same
on every machine. Shipped protocols live in ``protocols/<family>/<name>.yaml``; a path to a YAML file of
the same keys works too::

    mmtrust train physmamba --protocol pure-to-ubfc          # needs PURE_ROOT and UBFC_ROOT
    mmtrust train physnet --protocol synthetic-cross --preset quick

Keys: ``name``, ``summary``, ``train_data`` (train and validation splits come from it), ``test_data``,
``test_split`` (``test`` or ``all``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

__all__ = ["Protocol", "load_protocol", "list_protocols"]

_HERE = Path(__file__).resolve().parent
_VAR = re.compile(r"\$\{(\w+)\}|\$(\w+)")


@dataclass(frozen=True)
class Protocol:
    name: str
    summary: str
    train_data: str
    test_data: str
    test_split: str = "test"
    source: str = ""


def list_protocols(family: str | None = None) -> dict[str, str]:
    """Shipped protocol names -> summary (``family``: rppg, ...)."""
    out = {}
    for f in sorted(_HERE.glob(f"{family or '*'}/*.yaml")):
        out[f.stem] = str((yaml.safe_load(f.read_text()) or {}).get("summary", ""))
    return out


def _expand(value: str, what: str, source: str) -> str:
    missing = [a or b for a, b in _VAR.findall(value) if not os.environ.get(a or b)]
    if missing:
        raise ValueError(f"protocol {source}: {what} {value!r} needs the environment variable(s) "
                         f"{', '.join('$' + m for m in missing)} set to the dataset folder(s)")
    return _VAR.sub(lambda m: os.environ[m.group(1) or m.group(2)], value)


def load_protocol(spec: str, family: str = "rppg") -> Protocol:
    """A shipped protocol by name, or a YAML file by path; ``${VAR}`` are filled from the environment."""
    path = Path(spec)
    if not path.is_file():
        path = _HERE / family / f"{spec}.yaml"
        if not path.is_file():
            known = ", ".join(list_protocols(family)) or "(none)"
            raise ValueError(f"unknown protocol {spec!r}: neither a YAML file nor a shipped {family} protocol "
                             f"(known: {known})")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"protocol {path}: expected a mapping of keys, got {type(raw).__name__}")
    keys = {"name", "summary", "train_data", "test_data", "test_split"}
    unknown = sorted(set(raw) - keys)
    if unknown:
        raise ValueError(f"protocol {path}: unknown keys {unknown}; expected {sorted(keys)}")
    for k in ("train_data", "test_data"):
        if not isinstance(raw.get(k), str) or not raw[k]:
            raise ValueError(f"protocol {path}: {k!r} must be a dataset string such as 'pure:${{PURE_ROOT}}'")
    split = str(raw.get("test_split", "test"))
    if split not in ("test", "all", "val", "train"):
        raise ValueError(f"protocol {path}: test_split must be test or all, got {split!r}")
    return Protocol(name=str(raw.get("name", path.stem)), summary=str(raw.get("summary", "")),
                    train_data=_expand(raw["train_data"], "train_data", str(path)),
                    test_data=_expand(raw["test_data"], "test_data", str(path)), test_split=split, source=str(path))
