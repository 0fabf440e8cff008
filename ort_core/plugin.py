"""The public API for plugin authors: everything a plugin may import from ORT's core.

A middleware, telemetry or language plugin imports these names from here (or from
``ort_core`` itself, which exports the same) and nothing else: every other module of
``ort_core`` is private and may change in any release. docs/writing-plugins.md walks
through using them.

- ``hookimpl``: marks a function as the implementation of a hook (docs/hooks.md).
- ``Context``, ``FunctionConfig``, ``FunctionError``, ``EarlyResponse``: what hooks receive
  and return.
- ``Bridge``: what ``launch_language`` returns, the protocol a language bridge implements.
- ``WorkerBridge``, ``WorkerSpec``: a bridge for a language whose worker speaks ORT's worker
  protocol (docs/worker-protocol.md): the core does start-up, framing, logs, timeouts and
  restarts; the plugin only says how to start its worker.

The names load on first use, so that importing this module costs nothing at cold start.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing's own constant would import typing at cold start
if TYPE_CHECKING:  # for type checkers: `X as X` re-exports
    from ort_core.bridge import Bridge as Bridge
    from ort_core.config import FunctionConfig as FunctionConfig
    from ort_core.context import Context as Context
    from ort_core.errors import FunctionError as FunctionError
    from ort_core.pipeline import EarlyResponse as EarlyResponse
    from ort_core.plugins import hookimpl as hookimpl
    from ort_core.workers.bridge import WorkerBridge as WorkerBridge
    from ort_core.workers.prelaunch import WorkerSpec as WorkerSpec

# The same names as ``ort_core`` itself, loaded by it on first use.
from ort_core import __all__ as __all__  # noqa: E402
from ort_core import __getattr__ as __getattr__  # noqa: E402
