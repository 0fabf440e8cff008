"""Claims Node.js handlers (``file.fn``, ``dir/file.obj.fn``) and starts the Node worker."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ort_core import FunctionConfig, hookimpl
from ort_node.launch import worker_spec

if TYPE_CHECKING:
    from ort_core.workers.bridge import WorkerBridge


@hookimpl
def launch_language(config: FunctionConfig) -> WorkerBridge | None:
    spec = worker_spec(config)
    if spec is None:
        return None
    from ort_core.workers.bridge import WorkerBridge  # only functions in Node pay for it

    return WorkerBridge.from_spec(spec, config)
