"""ORT core: the hook contract, plugin discovery and the invocation pipeline.

What this module exports is the public API for plugin authors. The names load on first use,
so that importing a submodule (as the cold start does before anything else) costs nothing.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # typing's own constant would import typing, which costs 3-7 ms
if TYPE_CHECKING:
    from ort_core.config import FunctionConfig
    from ort_core.context import Context
    from ort_core.errors import FunctionError
    from ort_core.pipeline import EarlyResponse
    from ort_core.plugins import hookimpl

_EXPORTS = {
    "Context": "ort_core.context",
    "EarlyResponse": "ort_core.pipeline",
    "FunctionConfig": "ort_core.config",
    "FunctionError": "ort_core.errors",
    "hookimpl": "ort_core.plugins",
}
__all__ = ["Context", "EarlyResponse", "FunctionConfig", "FunctionError", "hookimpl"]


def __getattr__(name: str) -> object:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'ort_core' has no attribute {name!r}")
