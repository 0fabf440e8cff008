"""Whether a handler is Deno's, and how its worker starts: cheap to import.

Published in the entry-point group ``ort.workers`` (see ort_core.workers.prelaunch), so that
``ort bootstrap`` can start the worker before importing the rest of ORT, and used by the
plugin's ``launch_language``, so that both start the very same worker. Every cold start that
loads all plugins imports this module: the rest (:mod:`ort_deno.sandbox`) loads only when a
handler is Deno's.
"""

from __future__ import annotations

import os

from ort_core.config import FunctionConfig
from ort_core.workers.prelaunch import WorkerSpec

MODES = ("persistent", "per-invocation")
# Looked for in this order, as handler.ts does; without ORT_LANGUAGE=deno, Deno claims only
# TypeScript, and plain JavaScript stays Node's.
EXTENSIONS = (".ts", ".mts", ".tsx", ".js", ".mjs", ".jsx", ".cts", ".cjs")
CLAIMED_EXTENSIONS = (".ts", ".tsx", ".mts")


def claims(config: FunctionConfig) -> bool:
    """Whether the handler is Deno's: ORT_LANGUAGE=deno, or a TypeScript module without one."""
    if config.language not in (None, "deno"):
        return False
    return config.language == "deno" or handler_file(config, CLAIMED_EXTENSIONS) is not None


def deno_mode() -> str:
    """``ORT_DENO_MODE``: ``persistent`` (the default) or ``per-invocation``."""
    mode = os.environ.get("ORT_DENO_MODE") or MODES[0]
    if mode not in MODES:
        from ort_core.errors import FunctionError  # traceback, typing: not before the worker

        raise FunctionError(
            "Runtime.InvalidEntrypoint",
            f"ORT_DENO_MODE={mode!r} is not a mode of ort-deno: "
            "use 'persistent' (the default) or 'per-invocation'",
        )
    return mode


def worker_spec(config: FunctionConfig) -> WorkerSpec | None:
    """The persistent Deno worker for this handler; None when the handler is not Deno's, or
    not for a persistent worker (per-invocation mode, a malformed handler name)."""
    if not claims(config) or ".." in config.handler or deno_mode() != "persistent":
        return None
    from ort_deno import sandbox

    permissions = os.environ.get("ORT_DENO_PERMISSIONS", "")
    command = sandbox.WorkerCommand(sandbox.deno_binary(), config, permissions)
    env = sandbox.deno_environment(sandbox.deno_dir())
    return WorkerSpec("deno", command, tuple(sorted(env.items())))


def handler_file(config: FunctionConfig, extensions: tuple[str, ...] = EXTENSIONS) -> str | None:
    """The handler's module file under the task root, as handler.ts looks for it."""
    handler = config.handler
    if ".." in handler or handler.startswith("/"):
        return None
    directory, _, module_and_function = handler.rpartition("/")
    module, dot, _ = module_and_function.partition(".")
    if not module or not dot:
        return None
    base = os.path.join(config.task_root, directory, module)
    for extension in extensions:
        if os.path.isfile(base + extension):
            return base + extension
    return None
