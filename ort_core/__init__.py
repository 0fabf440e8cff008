"""ORT core: the hook contract, plugin discovery and the invocation pipeline.

What this module exports is the public API for plugin authors.
"""

from ort_core.config import FunctionConfig
from ort_core.context import Context
from ort_core.errors import FunctionError
from ort_core.pipeline import EarlyResponse
from ort_core.plugins import hookimpl

__all__ = ["Context", "EarlyResponse", "FunctionConfig", "FunctionError", "hookimpl"]
