"""Claims Deno handlers (``file.fn``, ``dir/file.fn``, ``file.obj.fn``) and starts Deno.

``ORT_DENO_MODE`` picks how: ``persistent`` (the default, one Deno worker for the sandbox's
life, speaking ORT's worker protocol) or ``per-invocation`` (a fresh Deno process per event).
Which handlers are Deno's is :mod:`ort_deno.launch`; how Deno runs, with which permissions,
:mod:`ort_deno.sandbox`.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ort_core import FunctionConfig, FunctionError, hookimpl
from ort_deno import launch

if TYPE_CHECKING:
    from ort_core.bridge import Bridge


@hookimpl
def launch_language(config: FunctionConfig) -> Bridge | None:
    if not launch.claims(config):
        return None
    if ".." in config.handler:
        raise FunctionError(
            "Runtime.MalformedHandlerName",
            "'../' not allowed in handler name. Relative paths are not supported.",
        )
    if launch.deno_mode() == "persistent":
        from ort_core.workers.bridge import WorkerBridge  # only functions in Deno pay for it

        spec = launch.worker_spec(config)
        assert spec is not None
        return WorkerBridge.from_spec(spec, config)
    from ort_deno import sandbox
    from ort_deno.per_invocation import PerInvocationBridge

    permissions = os.environ.get("ORT_DENO_PERMISSIONS", "")
    env = sandbox.environment(config, sandbox.deno_environment(sandbox.deno_dir()))
    preloads = sandbox.preload_files(config, env)
    command = [
        sandbox.deno_binary(),
        "run",
        *sandbox.run_flags(config, permissions, preloads=preloads),
        sandbox.RUNNER,
    ]
    return PerInvocationBridge(config, command, env)
