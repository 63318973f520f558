"""One module per method family: its config and one builder; `runner.run` does the rest.

Every module here that defines `METHODS` (a list of `runner.Method`) is registered, so adding a
method is one new file (see docs/architecture.md, "How to add a method").
"""
from __future__ import annotations

import importlib
import pkgutil

from corral.core.registry import Registry

_REGISTRY = Registry("method")


def registry() -> Registry:
    """Every training method, found by importing this package's modules once."""
    if not _REGISTRY.names():
        for info in pkgutil.iter_modules(__path__):
            module = importlib.import_module(f"{__name__}.{info.name}")
            for method in getattr(module, "METHODS", ()):
                _REGISTRY.add(method.name, method)
    return _REGISTRY
