"""Start the gateway: read the configuration, open the pool of pipelines, run uvicorn."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Mapping

from ort_core.config import FunctionConfig
from ort_core.errors import FunctionError

DEFAULT_PORT = 8080
DEFAULT_QUEUE = 64
DEFAULT_MAX_BODY = 6 * 1024 * 1024  # SCW_PAYLOAD_MAX_SIZE's default, Lambda's limit too


def scaleway_identity(env: Mapping[str, str]) -> dict[str, str]:
    """Scaleway's names for the function, as the context's fields (``functionName``,
    ``functionVersion``, ``memoryLimitInMb``) read them."""
    names = {
        "SCW_APPLICATION_NAME": "AWS_LAMBDA_FUNCTION_NAME",
        "SCW_APPLICATION_VERSION": "AWS_LAMBDA_FUNCTION_VERSION",
        "SCW_APPLICATION_MEMORY": "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    }
    return {lambda_name: env[name] for name, lambda_name in names.items() if env.get(name)}


def handler_from_scaleway(env: Mapping[str, str]) -> str | None:
    """``SCW_HANDLER_PATH=handlers/hello.js`` and ``SCW_HANDLER_NAME=hello`` is ORT's
    ``handlers/hello.hello``; a path without a name is the file itself (an executable)."""
    path = env.get("SCW_HANDLER_PATH")
    if not path:
        return None
    name = env.get("SCW_HANDLER_NAME")
    if not name:
        return path
    stem, dot, extension = path.rpartition(".")
    return f"{stem if dot and '/' not in extension else path}.{name}"


def serve(
    env: dict[str, str],
    handler: str | None,
    host: str,
    port: int | None,
    concurrency: int | None,
    timeout_s: float | None,
) -> int:
    import uvicorn

    from ort_core.gateway.app import Gateway
    from ort_core.gateway.auth import TokenVerifier
    from ort_core.gateway.pool import Pool
    from ort_core.logs import setup_function_logging
    from ort_core.startup import start_function

    env = {**env, **scaleway_identity(env)}
    setup_function_logging(env)
    handler = handler or env.get("_HANDLER") or handler_from_scaleway(env)
    config = FunctionConfig.from_environ(env, handler=handler)
    if not env.get("ORT_SIGNATURE"):
        config = config._replace(signature="raw")  # Scaleway's event, unless asked otherwise
    size = concurrency or int(env.get("ORT_CONCURRENCY") or os.cpu_count() or 1)
    pool = Pool(
        lambda on_expiry: start_function(config, env, on_expiry=on_expiry),
        size=size,
        queue_limit=int(env.get("ORT_QUEUE_SIZE") or DEFAULT_QUEUE),
    )
    try:
        pool.open()
    except FunctionError as error:
        print(json.dumps(error.to_dict()), file=sys.stderr, flush=True)
        return 1
    app = Gateway(
        pool,
        TokenVerifier(env),
        config,
        timeout_s=timeout_s or float(env.get("AWS_LAMBDA_FUNCTION_TIMEOUT") or 300),
        max_body=int(env.get("SCW_PAYLOAD_MAX_SIZE") or DEFAULT_MAX_BODY),
    )
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port or int(env.get("PORT") or DEFAULT_PORT),
            loop=_available("uvloop", "asyncio"),
            http=_available("httptools", "h11"),
            lifespan="on",
            log_level="warning",
            access_log=False,
            server_header=False,
        )
    )
    # uvicorn drains on SIGTERM, then raises the signal again with the handler it found: make
    # that one a clean exit (0), as a drained shutdown is no failure. Before uvicorn takes the
    # signal over, it ends the server at once, still stopping the workers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.run()
    finally:
        pool.close()
    return 0


def _available(module: str, fallback: str) -> str:
    import importlib.util

    return module if importlib.util.find_spec(module) else fallback
