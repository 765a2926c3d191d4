"""Registries of methods, datasets and tasks.

A method, a dataset or a task is registered once, by decorator, in its own file. Nothing else in the
library names it: the CLI, the benchmark and the tests look it up here.

Example::

    @register_method(
        "pos", family="rppg", task="rppg", config=POSConfig,
        paper=Paper(title="Algorithmic principles of remote PPG", venue="IEEE TBME", year=2017),
        presets={"tiny": {}}, default_data="synthetic-rppg",
    )
    class POS(ClassicalRPPG):
        ...
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Paper",
    "MethodInfo",
    "DatasetInfo",
    "register_method",
    "register_dataset",
    "register_task",
    "get_method",
    "get_dataset",
    "get_task",
    "list_methods",
    "list_datasets",
    "UnknownNameError",
]


class UnknownNameError(KeyError):
    """An unknown method, dataset or task name; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0])


@dataclass(frozen=True)
class Paper:
    """Where a method comes from, and how much of it we could check."""

    title: str
    venue: str = ""
    year: int | None = None
    arxiv: str | None = None
    code_url: str | None = None
    licence: str = ""
    verified: tuple[str, ...] = ()
    inferred: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class MethodInfo:
    """Everything the library needs to build, train, evaluate and describe one method."""

    name: str
    model_cls: type
    config_cls: type
    family: str
    task: str
    paper: Paper
    presets: dict[str, dict[str, Any]]
    trainable: bool
    default_data: str | None
    summary: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "family": self.family,
            "task": self.task,
            "trainable": self.trainable,
            "default_data": self.default_data,
            "presets": sorted(self.presets),
            "summary": self.summary,
            "paper": self.paper.as_dict(),
        }


@dataclass
class DatasetInfo:
    name: str
    factory: Callable[..., Any]
    task: str
    builtin: bool
    summary: str = ""
    splits: tuple[str, ...] = ("train", "val", "test")
    extra: dict[str, Any] = field(default_factory=dict)


_METHODS: dict[str, MethodInfo] = {}
_DATASETS: dict[str, DatasetInfo] = {}
_TASKS: dict[str, Any] = {}

# Modules that register things when imported. Importing them lazily keeps `import mmtrust` light.
_PLUGIN_MODULES = (
    "mmtrust.methods.rppg.unsupervised",
    "mmtrust.methods.rppg.physnet",
    "mmtrust.methods.rppg.physmamba",
    "mmtrust.methods.rppg.sfda",
    "mmtrust.data.rppg_datasets",
    "mmtrust.data.synthetic_rppg",
    "mmtrust.tasks.rppg",
    "mmtrust.methods.singlecell.scfusionttt",
    "mmtrust.data.citeseq",
    "mmtrust.tasks.singlecell",
    "mmtrust.data.synthetic_deepfake",
    "mmtrust.data.forgery_datasets",
    "mmtrust.methods.attacks.pgd_imp",
    "mmtrust.methods.attacks.baselines",
    "mmtrust.tasks.attack",
    "mmtrust.tasks.forgery",
    "mmtrust.methods.forgery.dtn",
    "mmtrust.methods.forgery.baselines",
)
_loaded = False


def _load_plugins() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for mod in _PLUGIN_MODULES:
        importlib.import_module(mod)


def _unknown(kind: str, name: str, known: list[str]) -> UnknownNameError:
    close = difflib.get_close_matches(name, known, n=3)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return UnknownNameError(f"unknown {kind} {name!r}.{hint} Known {kind}s: {', '.join(sorted(known)) or '(none)'}")


def register_method(
    name: str,
    *,
    config: type,
    family: str,
    task: str,
    paper: Paper,
    presets: dict[str, dict[str, Any]] | None = None,
    trainable: bool = False,
    default_data: str | None = None,
    summary: str = "",
) -> Callable[[type], type]:
    """Register a model class under ``name``.

    ``config`` is a dataclass whose defaults are the paper configuration; ``presets`` maps a preset
    name to overrides of it (``"paper"`` is added as no overrides when absent, ``"tiny"`` is required:
    the tests and the demo use it).
    """
    if not dataclasses.is_dataclass(config):
        raise TypeError(f"config for method {name!r} must be a dataclass, got {config!r}")
    presets = dict(presets or {})
    presets.setdefault("paper", {})
    if "tiny" not in presets:
        raise ValueError(f"method {name!r} must define a 'tiny' preset (tests and the demo use it)")

    def deco(cls: type) -> type:
        if name in _METHODS and _METHODS[name].model_cls is not cls:
            raise ValueError(f"method {name!r} is registered twice")
        doc = (cls.__doc__ or "").strip().splitlines()
        _METHODS[name] = MethodInfo(
            name=name,
            model_cls=cls,
            config_cls=config,
            family=family,
            task=task,
            paper=paper,
            presets=presets,
            trainable=trainable,
            default_data=default_data,
            summary=summary or (doc[0] if doc else ""),
        )
        cls.method_name = name
        return cls

    return deco


def register_dataset(
    name: str, *, task: str, builtin: bool = False, summary: str = "", splits: tuple[str, ...] = ("train", "val", "test"),
    **extra: Any,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a dataset factory ``factory(root=None, split=..., **kw)`` under ``name``."""

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        _DATASETS[name] = DatasetInfo(name, fn, task, builtin, summary or (fn.__doc__ or "").strip().split("\n")[0],
                                      splits, dict(extra))
        return fn

    return deco


def register_task(name: str) -> Callable[[type], type]:
    """Register a task class (how a family of methods is trained, evaluated and used on files)."""

    def deco(cls: type) -> type:
        _TASKS[name] = cls
        cls.task_name = name
        return cls

    return deco


def get_method(name: str) -> MethodInfo:
    _load_plugins()
    if name not in _METHODS:
        raise _unknown("method", name, list(_METHODS))
    return _METHODS[name]


def get_dataset(name: str) -> DatasetInfo:
    _load_plugins()
    if name not in _DATASETS:
        raise _unknown("dataset", name, list(_DATASETS))
    return _DATASETS[name]


def get_task(name: str) -> Any:
    _load_plugins()
    if name not in _TASKS:
        raise _unknown("task", name, list(_TASKS))
    return _TASKS[name]()


def list_methods(family: str | None = None) -> list[str]:
    _load_plugins()
    return sorted(n for n, m in _METHODS.items() if family is None or m.family == family)


def list_datasets(task: str | None = None) -> list[str]:
    _load_plugins()
    return sorted(n for n, d in _DATASETS.items() if task is None or d.task == task)
