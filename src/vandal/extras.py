"""Optional dependencies: a missing one is named with the extra that installs it."""

from __future__ import annotations

import importlib
from types import ModuleType


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module``, or raise an ImportError saying ``purpose`` needs ``pip install 'vandal[extra]'``."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name != module.split(".")[0]:
            raise  # the package is there but broken: its own message says more
        raise ImportError(f"{purpose} needs {error.name}, which is not installed: "
                          f"pip install 'vandal[{extra}]'") from error
