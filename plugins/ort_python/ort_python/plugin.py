"""Claims Python handlers for ORT: ``module.function`` or ``dir/module.function``."""

from __future__ import annotations

import importlib.util
import os
import sys

from ort_core import FunctionConfig, hookimpl
from ort_python.in_process import InProcessBridge


@hookimpl
def launch_language(config: FunctionConfig) -> InProcessBridge | None:
    if config.language not in (None, "python"):
        return None
    if config.language is None and not has_python_module(config):
        return None
    return InProcessBridge(config)


def has_python_module(config: FunctionConfig) -> bool:
    """True when the handler's module is a file under the task root, or an importable module
    that is not the standard library's (a layer's, for example)."""
    module_path = config.handler.rpartition(".")[0].replace(".", "/")
    if not module_path:
        return False
    base = os.path.join(config.task_root, module_path)
    if os.path.isfile(base + ".py") or os.path.isfile(os.path.join(base, "__init__.py")):
        return True
    top_level = module_path.split("/")[0]
    if top_level in sys.stdlib_module_names:
        return False
    return importlib.util.find_spec(top_level) is not None
