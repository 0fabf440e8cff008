"""ort-apm's hooks. Imported at every cold start where ort-apm is installed: when it is not
enabled (no ``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` nor
``ORT_APM=1``) the module defines no hook at all, so the pipeline runs as if it were absent.

When enabled, ort-apm is the outermost layer: it opens the invocation in ``observe_event``,
before any ``before_event`` hook, and closes it in ``after_response`` last (``tryfirst``,
which ORT's onion order turns into last on the way out), so its invocation span covers the
other plugins. It only reads the event, so a language worker still gets the event's received
bytes, not an encoding of them again. It exports in ``after_answer``, once the
answer is delivered and before the next event.
"""

from __future__ import annotations

import os

from ort_apm import enabled

if enabled(os.environ):
    from ort_apm.agent import Agent
    from ort_core import hookimpl

    agent = Agent(os.environ)

    @hookimpl
    def on_init(config, bridge):  # type: ignore[no-untyped-def]
        agent.on_init(config, bridge)

    @hookimpl(tryfirst=True)
    def observe_event(event, context):  # type: ignore[no-untyped-def]
        agent.begin(event, context)

    @hookimpl(tryfirst=True)
    def after_response(context):  # type: ignore[no-untyped-def]
        agent.finish(context)

    @hookimpl(tryfirst=True)
    def on_error(error, event, context):  # type: ignore[no-untyped-def]
        agent.finish(context, error=error, event=event)

    @hookimpl(tryfirst=True)
    def on_timeout(event, context):  # type: ignore[no-untyped-def]
        agent.finish(context, timeout=True, event=event)

    @hookimpl
    def after_answer():  # type: ignore[no-untyped-def]
        agent.answered()

    @hookimpl
    def on_shutdown():  # type: ignore[no-untyped-def]
        agent.shut_down()
