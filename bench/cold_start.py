"""Cold start and per-invocation time: ORT's bootstrap against AWS's awslambdaric, same run.

Both serve the same Python handler from the same minimal Runtime API on 127.0.0.1. Measured:
spawn to the first ``/next`` and to the first response (interleaved cold starts), the sum of
``PYTHONPROFILEIMPORTTIME`` self times up to the first answer, and warm p50/p99.

    python bench/cold_start.py [--runs 20] [--invocations 500]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
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
    start_peer,
    warm_latencies,
)

HANDLER = "def handler(event, context):\n    return {'ok': True, 'event': event}\n"


def runtimes(folder: str) -> list[Runtime]:
    env = base_environment(
        _HANDLER="app.handler",
        LAMBDA_TASK_ROOT=folder,
        PYTHONPATH=folder,
        ORT_PYTHON=sys.executable,
    )
    bootstrap = [str(ROOT / "bin" / "bootstrap")]
    reference = "awslambdaric"
    return [
        Runtime(reference, [sys.executable, "-m", "awslambdaric", "app.handler"], env, folder),
        Runtime("ORT bin/bootstrap", bootstrap, env, folder, reference),
        Runtime(
            "ORT bin/bootstrap, ORT_PLUGINS=ort-python",
            bootstrap,
            {**env, "ORT_PLUGINS": "ort-python"},
            folder,
            reference,
        ),
    ]


def import_self_ms(runtime: Runtime) -> float:
    """Sum of the self times PYTHONPROFILEIMPORTTIME prints, up to the first answer."""
    peer = start_peer()
    process = subprocess.Popen(
        runtime.command,
        env={**runtime.env, "AWS_LAMBDA_RUNTIME_API": peer.address, "PYTHONPROFILEIMPORTTIME": "1"},
        cwd=runtime.cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    peer.invoke({"n": 0})
    process.kill()
    _, err = process.communicate()
    peer.close()
    return (
        sum(
            int(line.split(":")[1].split("|")[0])
            for line in err.decode().splitlines()
            if line.startswith("import time:") and "self [us]" not in line
        )
        / 1000
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--invocations", type=int, default=500)
    options = parser.parse_args()

    folder = tempfile.mkdtemp(prefix="ort-bench-")
    Path(folder, "app.py").write_text(HANDLER)
    selected = runtimes(folder)
    rows = measure_cold_starts(selected, {"n": 0}, options.runs)
    for runtime in selected:
        warm = warm_latencies(runtime, {"n": 1}, options.invocations)
        rows[runtime.name].update(
            {
                "imports, self sum (ms)": statistics.median(
                    import_self_ms(runtime) for _ in range(5)
                ),
                "warm p50 (ms)": percentile(warm, 0.5),
                "warm p99 (ms)": percentile(warm, 0.99),
            }
        )
    print_table(rows, selected)
    print(
        f"\nmedians of {options.runs} interleaved cold starts, {options.invocations} warm "
        f"invocations; python {sys.version.split()[0]}"
    )


if __name__ == "__main__":
    main()
