"""Cold start and per-invocation time: ORT's bootstrap against AWS's awslambdaric, same run.

Both runtimes serve the same Python handler from the same minimal Runtime API on 127.0.0.1
(tests/runtime_api_peer.py). For each, over ``--runs`` fresh processes: time from process
start to the first ``/next``, to the first response, and the self-time sum of
``python -X importtime``; then p50 of ``--invocations`` warm invocations on one process.
Prints a table of absolute figures and ratios to awslambdaric.

    python bench/cold_start.py [--runs 15] [--invocations 500]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from runtime_api_peer import start_peer  # noqa: E402

HANDLER = "def handler(event, context):\n    return {'ok': True, 'event': event}\n"

RUNTIMES = {
    "awslambdaric": [sys.executable, "-m", "awslambdaric", "app.handler"],
    "ort bin/bootstrap": [str(ROOT / "bin" / "bootstrap")],
    "ort bin/bootstrap, ORT_PLUGINS": [str(ROOT / "bin" / "bootstrap")],
}


def environment(folder: str, address: str, name: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ORT_", "_HANDLER"))}
    env.update(
        AWS_LAMBDA_RUNTIME_API=address,
        _HANDLER="app.handler",
        LAMBDA_TASK_ROOT=folder,
        PYTHONPATH=folder,
        ORT_PYTHON=sys.executable,
    )
    if "ORT_PLUGINS" in name:
        env["ORT_PLUGINS"] = "ort-python"
    return env


def first_next_and_response(command: list[str], env: dict[str, str], folder: str) -> tuple:
    """Milliseconds from spawn to the first /next and to the first response.

    Each run gets its own Runtime API: a killed runtime's pending /next must not take the
    next run's event.
    """
    peer = start_peer()
    env = {**env, "AWS_LAMBDA_RUNTIME_API": peer.address}
    seen_next = threading.Event()
    original_get = peer.events.get

    def get(*args, **kwargs):
        seen_next.set()
        return original_get(*args, **kwargs)

    peer.events.get = get
    started = time.perf_counter()
    process = subprocess.Popen(
        command, env=env, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        seen_next.wait(30)
        to_next = (time.perf_counter() - started) * 1000
        peer.invoke({"n": 0})
        to_response = (time.perf_counter() - started) * 1000
        return to_next, to_response
    finally:
        process.kill()
        process.wait()
        peer.close()


def import_self_ms(command: list[str], env: dict[str, str], folder: str) -> float:
    peer = start_peer()
    env = {**env, "AWS_LAMBDA_RUNTIME_API": peer.address}
    process = subprocess.Popen(
        command,
        env={**env, "PYTHONPROFILEIMPORTTIME": "1"},
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    peer.invoke({"n": 0})
    process.kill()
    _, err = process.communicate()
    peer.close()
    total = 0
    for line in err.decode().splitlines():
        if line.startswith("import time:") and "self [us]" not in line:
            total += int(line.split(":")[1].split("|")[0])
    return total / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--invocations", type=int, default=500)
    options = parser.parse_args()

    folder = tempfile.mkdtemp(prefix="ort-bench-")
    Path(folder, "app.py").write_text(HANDLER)
    # Cold starts are interleaved, one of each runtime per round, so that drift in the
    # machine's load weighs on every runtime alike.
    samples: dict[str, dict[str, list[float]]] = {
        name: {"next": [], "response": [], "imports": []} for name in RUNTIMES
    }
    for round_number in range(options.runs):
        for name, command in RUNTIMES.items():
            env = environment(folder, "", name)
            to_next, to_response = first_next_and_response(command, env, folder)
            samples[name]["next"].append(to_next)
            samples[name]["response"].append(to_response)
            if round_number < 5:
                samples[name]["imports"].append(import_self_ms(command, env, folder))

    rows = {}
    for name, command in RUNTIMES.items():
        peer = start_peer()
        env = environment(folder, peer.address, name)
        process = subprocess.Popen(
            command, env=env, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        peer.invoke({})
        warm = []
        for number in range(options.invocations):
            started = time.perf_counter()
            peer.invoke({"n": number})
            warm.append((time.perf_counter() - started) * 1000)
        process.kill()
        process.wait()
        peer.close()
        warm.sort()
        rows[name] = {
            "to first /next (ms)": statistics.median(samples[name]["next"]),
            "to first response (ms)": statistics.median(samples[name]["response"]),
            "imports, self sum (ms)": statistics.median(samples[name]["imports"]),
            "warm p50 (ms)": warm[len(warm) // 2],
            "warm p99 (ms)": warm[int(len(warm) * 0.99)],
        }

    reference = rows["awslambdaric"]
    metrics = list(reference)
    print(f"{'runtime':28}" + "".join(f"{m:>26}" for m in metrics))
    for name, row in rows.items():
        cells = "".join(f"{row[m]:>17.2f} ({row[m] / reference[m]:.2f}x)" for m in metrics)
        print(f"{name:28}{cells}")
    print(
        f"\nmedians over {options.runs} cold starts, {options.invocations} warm invocations; "
        f"python {sys.version.split()[0]}"
    )


if __name__ == "__main__":
    main()
