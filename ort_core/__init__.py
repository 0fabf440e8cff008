"""ORT core: the hook contract, plugin discovery and the invocation pipeline.

What this module exports is the public API for plugin authors, the same names as
:mod:`ort_core.plugin` (which documents them); every other module is private. The names load
on first use, so that importing a submodule (as the cold start does first) costs nothing.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # typing's own constant would import typing, which costs 3-7 ms
if TYPE_CHECKING:
    from ort_core.bridge import Bridge
    from ort_core.config import FunctionConfig
    from ort_core.context import Context
    from ort_core.errors import FunctionError
    from ort_core.pipeline import EarlyResponse
    from ort_core.plugins import hookimpl
    from ort_core.workers.bridge import WorkerBridge
    from ort_core.workers.prelaunch import WorkerSpec

_EXPORTS = {
    "Bridge": "ort_core.bridge",
    "Context": "ort_core.context",
    "EarlyResponse": "ort_core.pipeline",
    "FunctionConfig": "ort_core.config",
    "FunctionError": "ort_core.errors",
    "WorkerBridge": "ort_core.workers.bridge",
    "WorkerSpec": "ort_core.workers.prelaunch",
    "hookimpl": "ort_core.plugins",
}
__all__ = [
    "Bridge",
    "Context",
    "EarlyResponse",
    "FunctionConfig",
    "FunctionError",
    "WorkerBridge",
    "WorkerSpec",
    "hookimpl",
]


def __getattr__(name: str) -> object:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'ort_core' has no attribute {name!r}")
