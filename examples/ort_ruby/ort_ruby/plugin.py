"""Claims Ruby handlers (``handler.handler``, ``lib/orders.Orders::Api.create``) and starts
the Ruby worker, ``worker.rb``, which speaks ORT's worker protocol.

Everything else (the socket, framing, logs, deadlines, restarts) is ORT's ``WorkerBridge``.
Keep this module cheap: ``ort bootstrap`` imports it on every cold start.
"""

from __future__ import annotations

import os

from ort_core.plugin import Bridge, FunctionConfig, FunctionError, WorkerSpec, hookimpl

WORKER = os.path.join(os.path.dirname(__file__), "worker.rb")


def handler_file(config: FunctionConfig) -> str | None:
    """``<task root>/<file>.rb`` for the handler ``<file>.<method>``, if it exists."""
    folder, slash, base = config.handler.rpartition("/")
    name, dot, _ = base.partition(".")
    if not dot or not name:
        return None
    path = os.path.join(config.task_root, folder + slash + name + ".rb")
    return path if os.path.isfile(path) else None


def ruby_binary() -> str:
    """``ORT_RUBY_BINARY``, else ``ruby`` on PATH."""
    configured = os.environ.get("ORT_RUBY_BINARY")
    if configured:
        return configured
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        candidate = os.path.join(directory, "ruby")
        if directory and os.access(candidate, os.X_OK):
            return candidate
    raise FunctionError(
        "Runtime.InvalidEntrypoint",
        "no Ruby: set ORT_RUBY_BINARY or put ruby on PATH (Debian: apt-get install ruby)",
    )


def worker_spec(config: FunctionConfig) -> WorkerSpec | None:
    """How the Ruby worker starts for this handler, or None when the handler is not Ruby's.

    Published in the ``ort.workers`` group too, so that ``ort bootstrap`` starts the worker
    before it loads plugins; the bridge then adopts that very process.
    """
    if config.language not in (None, "ruby"):
        return None
    if config.language is None and handler_file(config) is None:
        return None
    return WorkerSpec("ruby", (ruby_binary(), WORKER))


@hookimpl
def launch_language(config: FunctionConfig) -> Bridge | None:
    spec = worker_spec(config)
    if spec is None:
        return None
    from ort_core.plugin import WorkerBridge  # only Ruby functions pay for importing it

    return WorkerBridge(spec.language, spec.command, config)
