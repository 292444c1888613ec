"""Lazy imports of the libraries that :mod:`rlmath.adapters` submodules wrap."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import numpy as np


def require(module: str, package: str) -> ModuleType:
    """Import ``module``, or raise an ``ImportError`` that names the pip package to install."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"this adapter needs {module!r}: pip install {package} "
            f"(scripts/library_report.py installs the pinned versions; cause: {error})"
        ) from error


def tensor(value: Any, *, dtype: Any = None) -> Any:
    """A torch tensor of ``value`` (a tensor is returned as it is, keeping its graph)."""
    torch = require("torch", "torch")
    if isinstance(value, torch.Tensor):
        return value if dtype is None else value.to(dtype)
    array = np.asarray(value)
    if dtype is None and array.dtype.kind == "f":
        dtype = torch.float64 if array.dtype == np.float64 else torch.float32
    return torch.as_tensor(array, dtype=dtype)
