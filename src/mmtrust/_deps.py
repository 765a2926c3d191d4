"""Optional dependencies: a clear "please install" error naming the extra."""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingExtraError(ImportError):
    pass


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` or raise an error that says which ``mmtrust[extra]`` provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingExtraError(
            f"this feature needs the optional package {module.split('.')[0]!r}: "
            f'pip install "mmtrust[{extra}]"'
        ) from err
