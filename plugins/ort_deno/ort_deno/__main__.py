"""``python -m ort_deno cache DIR``: prepare a DENO_DIR at packaging time, for ORT_DENO_CACHE.

Deno downloads the handler's remote imports (``npm:``, ``jsr:``, URLs) and compiles ORT's
worker, its runner, the preloads (``ORT_PRELOAD``) and the handler's TypeScript into DIR.
Ship DIR with the function and set ``ORT_DENO_CACHE`` to it: a cold start copies it into the
writable DENO_DIR under /tmp. Compiled files are keyed by their absolute path, so prepare at
the paths the function runs from (``/var/task`` on Lambda); downloads are keyed by URL and
serve from anywhere.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from ort_core import FunctionConfig, FunctionError
from ort_deno import launch, sandbox


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ort_deno", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    cache = commands.add_parser("cache", help="fill DIR with what a cold start needs")
    cache.add_argument("directory", metavar="DIR", help="the DENO_DIR to fill")
    cache.add_argument("--handler", default=os.environ.get("_HANDLER"), help="e.g. hello.handler")
    cache.add_argument(
        "--task-root",
        default=os.environ.get("LAMBDA_TASK_ROOT") or os.getcwd(),
        help="where the handler is (default $LAMBDA_TASK_ROOT, else the current directory)",
    )
    options = parser.parse_args(argv)

    config = FunctionConfig(
        handler=options.handler or "", task_root=os.path.abspath(options.task_root)
    )
    preloads = sandbox.preload_files(config, sandbox.environment(config))
    files = [sandbox.WORKER, sandbox.RUNNER, *preloads]
    if options.handler:
        handler = launch.handler_file(config)
        if handler is None:
            parser.error(f"no module for handler {options.handler!r} in {config.task_root}")
        files.append(handler)
    try:
        deno = sandbox.deno_binary()
    except FunctionError as error:
        parser.error(error.message)
    env = {**os.environ, "DENO_DIR": os.path.abspath(options.directory)}
    return subprocess.run([deno, "cache", sandbox.config_flag(config), *files], env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
