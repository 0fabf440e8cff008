"""Claims Python handlers for ORT: ``module.function`` or ``dir/module.function``.

``ORT_PYTHON_MODE`` picks where the handler runs: ``in-process`` (the default, in ORT's own
interpreter) or ``subprocess`` (in a persistent worker, ``worker.py``, run by
``ORT_PYTHON_BINARY`` or ORT's own interpreter).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ort_core import FunctionConfig, FunctionError, hookimpl
from ort_python.in_process import InProcessBridge
from ort_python.launch import claims, mode, worker_spec

if TYPE_CHECKING:
    from ort_core.bridge import Bridge


@hookimpl
def launch_language(config: FunctionConfig) -> Bridge | None:
    if not claims(config):
        return None
    if mode() == "in-process":
        return InProcessBridge(config)
    spec = worker_spec(config)
    if spec is not None:
        from ort_core.workers.bridge import WorkerBridge  # only this mode pays for it

        return WorkerBridge.from_spec(spec, config)
    raise FunctionError(
        "Runtime.InvalidEntrypoint",
        f"ORT_PYTHON_MODE={mode()!r} is not a mode of ort-python: "
        "use 'in-process' (the default) or 'subprocess'",
    )
