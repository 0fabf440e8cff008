"""How much of ORT_TIMEOUT_MARGIN_MS a timeout uses, from the watchdog to the error's post.

A handler sleeps far past its deadline, set by the Runtime API (1000 ms from ``/next``). ORT's
watchdog fires ``ORT_TIMEOUT_MARGIN_MS`` before it, cuts the step in flight and posts
``Sandbox.Timedout``. Measured at the Runtime API: how many ms before the deadline the error
arrived (1 ms resolution); the margin minus that is what the way from the watchdog to the
post took. An error after the deadline would be lost on Lambda, which reports its own timeout.

Node and bash handlers run in processes of their own: the worker is killed and the runtime
goes on, so the invocation right after a timeout is timed too (it starts a fresh worker),
against a warm one. A Python handler in ORT's own process cannot be cut: the runtime posts
the error and exits, so each of its timeouts gets a fresh runtime and Runtime API.
``--busy N`` keeps N other processes spinning meanwhile, for a loaded machine.

    python bench/timeout_margin.py [--timeouts 20] [--margin 50] [--deadline 1000] [--busy 0]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import ROOT, Runtime, base_environment, percentile, spawn, start_peer
from runtime_api_peer import Peer, Result

FUNCTIONS = {
    "index.js": (
        "exports.handler = async (event) => {\n"
        "  await new Promise((done) => setTimeout(done, event.sleep || 0));\n"
        "  return event;\n"
        "};\n"
    ),
    "handler.sh": (
        '#!/bin/bash\nevent=$(cat)\ncase "$event" in *sleep*) sleep 30;; esac\necho "$event"\n'
    ),
    "app.py": (
        "import time\n\n\ndef handler(event, context):\n"
        "    while event.get('spin'):  # CPU-bound: holds the GIL the watchdog needs\n"
        "        pass\n"
        "    time.sleep(event.get('sleep', 0) / 1000)\n"
        "    return event\n"
    ),
}
SLEEP = {"sleep": 30_000}  # far past any deadline here
SMALL = {"name": "x" * 40}
WARM_UP = 3  # invocations before the warm one timed ahead of each timeout


def cases(folder: str, margin: int) -> list[tuple[Runtime, dict, bool]]:
    """Each case's runtime, the event that times out, and whether the runtime goes on."""
    bootstrap = [str(ROOT / "bin" / "bootstrap")]

    def runtime(name: str, handler: str, language: str, plugins: str) -> Runtime:
        env = base_environment(
            _HANDLER=handler,
            LAMBDA_TASK_ROOT=folder,
            ORT_PYTHON=sys.executable,
            ORT_LANGUAGE=language,
            ORT_PLUGINS=plugins,
            ORT_TIMEOUT_MARGIN_MS=str(margin),
        )
        return Runtime(name, bootstrap, env, folder)

    python = runtime("python in-process", "app.handler", "python", "ort-python")
    spinning = Runtime("python in-process, CPU-bound", python.command, python.env, folder)
    return [
        (runtime("node", "index.handler", "node", "ort-node"), SLEEP, True),
        (runtime("bash (per event)", "handler.sh", "bash", ""), SLEEP, True),
        (python, SLEEP, False),
        (spinning, {"spin": True}, False),
    ]


def timed_out(name: str, result: Result) -> int:
    """Ms between the error's arrival and the deadline (negative: it came after)."""
    if result.kind != "error" or result.json().get("errorType") != "Sandbox.Timedout":
        raise RuntimeError(f"{name}: expected Sandbox.Timedout, got {result.body[:300]!r}")
    return result.deadline_ms - result.received_ms


def timed(name: str, peer: Peer, event: object) -> float:
    started = time.perf_counter()
    result = peer.invoke(event, timeout=60)
    if result.kind != "response":
        raise RuntimeError(f"{name} failed: {result.body[:300]!r}")
    return (time.perf_counter() - started) * 1000


def goes_on(runtime: Runtime, event: object, deadline: int, timeouts: int) -> dict[str, list]:
    """One runtime, ``timeouts`` times: a warm invocation, a timeout, the invocation after."""
    peer = start_peer(deadline_ms=deadline)
    process = spawn(runtime, peer.address)
    samples: dict[str, list] = {"early": [], "next": [], "warm": []}
    try:
        for _ in range(timeouts):
            for _ in range(WARM_UP):
                peer.invoke(SMALL, timeout=60)
            samples["warm"].append(timed(runtime.name, peer, SMALL))
            result = peer.invoke(event, timeout=60)
            samples["early"].append(timed_out(runtime.name, result))
            samples["next"].append(timed(runtime.name, peer, SMALL))
            if process.poll() is not None:
                raise RuntimeError(f"{runtime.name} exited after a timeout")
        return samples
    finally:
        process.kill()
        process.wait()
        peer.close()


def fresh_each_time(
    runtime: Runtime, event: object, deadline: int, timeouts: int
) -> dict[str, list]:
    """A runtime and a Runtime API per timeout: the runtime answers, then exits with 1."""
    samples: dict[str, list] = {"early": [], "next": [], "warm": []}
    for _ in range(timeouts):
        peer = start_peer(deadline_ms=deadline)
        process = spawn(runtime, peer.address)
        try:
            result = peer.invoke(event, timeout=60)
            samples["early"].append(timed_out(runtime.name, result))
            if process.wait(timeout=10) != 1:
                raise RuntimeError(f"{runtime.name} did not exit with 1 after its timeout")
        finally:
            process.kill()
            process.wait()
            peer.close()
    return samples


def print_rows(rows: dict[str, dict[str, list]], margin: int) -> None:
    print(
        "| handler | before the deadline: min / p50 (ms) | margin used: p50 / p90 / max (ms) "
        "| after the deadline | next invocation: p50 / max (ms) | warm p50 (ms) |"
    )
    print("|---|---|---|---|---|---|")
    for name, samples in rows.items():
        early = sorted(samples["early"])
        used = sorted(margin - value for value in early)
        late = sum(value < 0 for value in early)
        after = "| | |"
        if samples["next"]:
            following, warm = sorted(samples["next"]), sorted(samples["warm"])
            after = (
                f"| {percentile(following, 0.5):.1f} / {following[-1]:.1f} "
                f"| {percentile(warm, 0.5):.2f} |"
            )
        print(
            f"| {name} | {early[0]} / {percentile(early, 0.5)} "
            f"| {percentile(used, 0.5)} / {percentile(used, 0.9)} / {used[-1]} "
            f"| {late} of {len(early)} {after}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeouts", type=int, default=20)
    parser.add_argument("--margin", type=int, default=50, help="ORT_TIMEOUT_MARGIN_MS")
    parser.add_argument("--deadline", type=int, default=1000, help="ms from /next")
    parser.add_argument("--busy", type=int, default=0, help="spinning processes meanwhile")
    options = parser.parse_args()

    folder = tempfile.mkdtemp(prefix="ort-bench-")
    for name, source in FUNCTIONS.items():
        path = Path(folder, name)
        path.write_text(source)
        path.chmod(0o755)
    spinners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(options.busy)
    ]
    rows: dict[str, dict[str, list]] = {}
    try:
        for runtime, event, continues in cases(folder, options.margin):
            measure = goes_on if continues else fresh_each_time
            rows[runtime.name] = measure(runtime, event, options.deadline, options.timeouts)
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
    print_rows(rows, options.margin)
    print(
        f"\n{options.timeouts} timeouts per handler, ORT_TIMEOUT_MARGIN_MS={options.margin}, "
        f"deadline {options.deadline} ms after /next, {options.busy} spinning processes; "
        f"python {sys.version.split()[0]}"
    )
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
