"""Each of ORT's bridges against a bare Runtime API loop in the same language, in one run.

Rows are compared with the bare loop of their language (bench/bare/): the physical limit of
a Lambda runtime in that language. Measured: cold start to the first /next and to the first
response, and warm p50/p99 with a 64-byte event and with a 1 MB event.

    python bench/bridges.py [--runs 10] [--invocations 300] [--only node,deno]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from harness import (
    ROOT,
    Runtime,
    base_environment,
    measure_cold_starts,
    percentile,
    print_table,
    warm_latencies,
)

BARE = ROOT / "bench" / "bare"
SMALL = {"name": "x" * 40}  # 64 bytes of JSON
LARGE = {"name": "x" * (1024 * 1024 - 12)}  # 1 MB of JSON

FUNCTIONS = {
    "app.py": "def handler(event, context):\n    return {'length': len(event['name'])}\n",
    "index.js": "exports.handler = async (event) => ({length: event.name.length});\n",
    "hello.ts": "export const handler = async (event: {name: string}) => "
    "({length: event.name.length});\n",
    "handler.sh": '#!/bin/sh\nwc -c | { read n; printf \'{"length": %s}\' "$n"; }\n',
}


def runtimes(folder: str, languages: set[str]) -> list[Runtime]:
    bootstrap = [str(ROOT / "bin" / "bootstrap")]

    def ort(name: str, handler: str, language: str, reference: str, **extra: str) -> Runtime:
        env = base_environment(
            _HANDLER=handler,
            LAMBDA_TASK_ROOT=folder,
            ORT_PYTHON=sys.executable,
            ORT_LANGUAGE=language,
            **extra,
        )
        return Runtime(name, bootstrap, env, folder, reference)

    def bare(name: str, command: list[str], handler: str) -> Runtime:
        env = base_environment(
            _HANDLER=handler, LAMBDA_TASK_ROOT=folder, DENO_DIR="/tmp/ort-bench-deno"
        )
        return Runtime(name, command, env, folder, name)

    from ort_node.launch import node_binary

    deno = "deno"
    if "deno" in languages:
        from ort_deno.sandbox import deno_binary

        deno = deno_binary()
    every = [
        bare("python: bare loop", [sys.executable, str(BARE / "loop.py")], "app.handler"),
        ort(
            "python: ORT in-process",
            "app.handler",
            "python",
            "python: bare loop",
            ORT_PLUGINS="ort-python",
        ),
        ort(
            "python: ORT subprocess",
            "app.handler",
            "python",
            "python: bare loop",
            ORT_PLUGINS="ort-python",
            ORT_PYTHON_MODE="subprocess",
        ),
        bare("node: bare loop", [node_binary(), str(BARE / "loop.js")], "index.handler"),
        ort("node: ORT", "index.handler", "node", "node: bare loop", ORT_PLUGINS="ort-node"),
        bare(
            "deno: bare loop",
            [deno, "run", "--allow-net", "--allow-env", "--allow-read", str(BARE / "loop.ts")],
            "hello.handler",
        ),
        ort(
            "deno: ORT persistent",
            "hello.handler",
            "deno",
            "deno: bare loop",
            ORT_PLUGINS="ort-deno",
            ORT_DENO_MODE="persistent",
        ),
        ort(
            "deno: ORT per-invocation",
            "hello.handler",
            "deno",
            "deno: bare loop",
            ORT_PLUGINS="ort-deno",
            ORT_DENO_MODE="per-invocation",
        ),
        bare("executable: bash+curl loop", [str(BARE / "loop.sh")], "handler.sh"),
        ort(
            "executable: ORT",
            "handler.sh",
            "executable",
            "executable: bash+curl loop",
            ORT_PLUGINS="",
        ),
    ]
    return [runtime for runtime in every if runtime.name.split(":")[0] in languages]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--invocations", type=int, default=300)
    parser.add_argument("--only", help="languages to measure, e.g. node,deno")
    options = parser.parse_args()

    folder = tempfile.mkdtemp(prefix="ort-bench-")
    for name, source in FUNCTIONS.items():
        path = Path(folder, name)
        path.write_text(source)
        path.chmod(0o755)
    languages = set((options.only or "python,node,deno,executable").split(","))
    selected = runtimes(folder, languages)
    rows = measure_cold_starts(selected, SMALL, options.runs)
    for runtime in selected:
        small = warm_latencies(runtime, SMALL, options.invocations)
        large = warm_latencies(runtime, LARGE, max(20, options.invocations // 10))
        rows[runtime.name].update(
            {
                "warm p50 (ms)": percentile(small, 0.5),
                "warm p99 (ms)": percentile(small, 0.99),
                "1 MB p50 (ms)": percentile(large, 0.5),
            }
        )
    print_table(rows, selected)
    print(
        f"\nmedians of {options.runs} interleaved cold starts; {options.invocations} warm "
        f"invocations (1 MB: {max(20, options.invocations // 10)}); python "
        f"{sys.version.split()[0]}"
    )
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
