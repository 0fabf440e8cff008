"""Claims Python handlers for ORT: ``module.function`` or ``dir/module.function``.

``ORT_PYTHON_MODE`` picks where the handler runs: ``in-process`` (the default, in ORT's own
interpreter) or ``subprocess`` (in a persistent worker, ``worker.py``, run by
``ORT_PYTHON_BINARY`` or ORT's own interpreter).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import TYPE_CHECKING

from ort_core import FunctionConfig, FunctionError, hookimpl
from ort_python.in_process import InProcessBridge

if TYPE_CHECKING:
    from ort_core.bridge import Bridge

MODES = ("in-process", "subprocess")
WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "worker.py")


@hookimpl
def launch_language(config: FunctionConfig) -> Bridge | None:
    if config.language not in (None, "python"):
        return None
    if config.language is None and not has_python_module(config):
        return None
    mode = os.environ.get("ORT_PYTHON_MODE") or MODES[0]
    if mode == "in-process":
        return InProcessBridge(config)
    if mode == "subprocess":
        from ort_core.workers.bridge import WorkerBridge  # only this mode pays for it

        return WorkerBridge("python", [python_binary(), WORKER], config)
    raise FunctionError(
        "Runtime.InvalidEntrypoint",
        f"ORT_PYTHON_MODE={mode!r} is not a mode of ort-python: "
        "use 'in-process' (the default) or 'subprocess'",
    )


def python_binary() -> str:
    """The interpreter of the subprocess worker: ``ORT_PYTHON_BINARY``, else ORT's own."""
    return os.environ.get("ORT_PYTHON_BINARY") or sys.executable


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
