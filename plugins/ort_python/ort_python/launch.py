"""How the subprocess worker starts: cheap to import, so ``ort bootstrap`` can start it first
(entry-point group ``ort.workers``); the plugin's ``launch_language`` starts the same one."""

from __future__ import annotations

import os
import sys

from ort_core.config import FunctionConfig
from ort_core.workers.prelaunch import WorkerSpec

MODES = ("in-process", "subprocess")
WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "worker.py")


def claims(config: FunctionConfig) -> bool:
    if config.language not in (None, "python"):
        return False
    return config.language is not None or has_python_module(config)


def mode() -> str:
    return os.environ.get("ORT_PYTHON_MODE") or MODES[0]


def worker_spec(config: FunctionConfig) -> WorkerSpec | None:
    """The subprocess worker for this handler; None in-process or when it is not Python's."""
    if mode() != "subprocess" or not claims(config):
        return None
    return WorkerSpec("python", (python_binary(), WORKER))


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
    import importlib.util  # seldom: only for a handler that is no file under the task root

    return importlib.util.find_spec(top_level) is not None
