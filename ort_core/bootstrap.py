"""``ort bootstrap``: ORT's front end on AWS Lambda, and its cold-start path.

It starts the language worker (if any) first, so that it boots while ORT imports the rest
(:mod:`ort_core.lambda_loop`); nothing else is imported before that.
"""

from __future__ import annotations

import os
import sys

from ort_core.workers.prelaunch import start_early


def main(environ: dict[str, str] | None = None) -> int:
    env = os.environ if environ is None else environ
    address = env.get("AWS_LAMBDA_RUNTIME_API")
    if not address:
        print(
            "ort bootstrap: AWS_LAMBDA_RUNTIME_API is not set; run it on Lambda or "
            "under `ort emulate`",
            file=sys.stderr,
        )
        return 2
    start_early(env)
    from ort_core.logs import hold_lines

    hold_lines()  # a worker's first lines may come before serve() sets the log up
    from ort_core.lambda_loop import serve

    return serve(address, dict(env))


if __name__ == "__main__":
    sys.exit(main())
