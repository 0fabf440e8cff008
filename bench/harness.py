"""What every benchmark here shares: runtimes under one minimal Runtime API on 127.0.0.1.

A *runtime* is a command and an environment. Each cold start gets its own Runtime API (a
killed runtime's pending ``/next`` must not take the next run's event); warm invocations run
on one process. Cold starts of all runtimes are interleaved, one of each per round, so that
drift in the machine's load weighs on each alike.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from runtime_api_peer import start_peer  # noqa: E402


@dataclass
class Runtime:
    name: str
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    reference: str | None = None  # the name of the row this one is compared with


def base_environment(**extra: str) -> dict[str, str]:
    """This environment without Lambda's, ORT's and this sandbox's start-up costs (Node reads
    every certificate of NODE_EXTRA_CA_CERTS at start: 125 ms here, none on Lambda)."""
    skipped = ("AWS_", "ORT_", "_HANDLER", "NODE_EXTRA_CA_CERTS")
    env = {k: v for k, v in os.environ.items() if not k.startswith(skipped)}
    env["ORT_SIGNATURE"] = "raw"  # the references pass Lambda's events as they are: so does ORT
    env.update(extra)
    return env


def spawn(runtime: Runtime, address: str) -> subprocess.Popen:
    return subprocess.Popen(
        runtime.command,
        env={**runtime.env, "AWS_LAMBDA_RUNTIME_API": address},
        cwd=runtime.cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def cold_start(runtime: Runtime, event: object) -> tuple[float, float]:
    """Milliseconds from spawn to the first /next and to the first response, on a Runtime API
    of its own (a killed runtime's pending /next must not take the next run's event)."""
    peer = start_peer()
    seen_next = threading.Event()
    original_get = peer.events.get

    def get(*args: object, **kwargs: object) -> object:
        seen_next.set()
        return original_get(*args, **kwargs)

    peer.events.get = get  # type: ignore[method-assign]
    started = time.perf_counter()
    process = spawn(runtime, peer.address)
    try:
        if not seen_next.wait(60):
            raise RuntimeError(f"{runtime.name} never asked for an event")
        to_next = (time.perf_counter() - started) * 1000
        result = peer.invoke(event, timeout=60)
        if result.kind != "response":
            raise RuntimeError(f"{runtime.name} failed: {result.body[:300]!r}")
        return to_next, (time.perf_counter() - started) * 1000
    finally:
        process.kill()
        process.wait()
        # Its server stops at its next poll, up to 0.5 s: not worth waiting for.
        threading.Thread(target=peer.close, daemon=True).start()


def warm_latencies(runtime: Runtime, event: object, invocations: int) -> list[float]:
    """Sorted round trips, in milliseconds, of ``invocations`` events on one process."""
    peer = start_peer()
    process = spawn(runtime, peer.address)
    try:
        peer.invoke(event, timeout=60)
        latencies = []
        for _ in range(invocations):
            peer.wait_for_next(60)  # as Lambda: an event goes to a sandbox that asked for one
            started = time.perf_counter()
            result = peer.invoke(event, timeout=60)
            latencies.append((time.perf_counter() - started) * 1000)
            if result.kind != "response":
                raise RuntimeError(f"{runtime.name} failed: {result.body[:300]!r}")
        return sorted(latencies)
    finally:
        process.kill()
        process.wait()
        peer.close()


def cpu_ns(pid: int) -> int:
    """Nanoseconds on a CPU so far, of the process and its descendants' live threads (the
    scheduler's own accounting, /proc/<pid>/task/<tid>/schedstat): the work a runtime does,
    whatever the machine's scheduling adds to its latency. 0 where /proc has none."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as stat:
                total += int(stat.read().split()[0])
            with open(f"/proc/{pid}/task/{tid}/children") as children:
                total += sum(cpu_ns(int(child)) for child in children.read().split())
        except (OSError, ValueError, IndexError):
            pass
    return total


def interleaved_warm_latencies(
    runtimes: list[Runtime],
    event: object,
    invocations: dict[str, int],
    rounds: int,
    headers: Callable[[], dict[str, str]] | None = None,
    cpu: dict[str, list[int]] | None = None,
) -> dict[str, list[float]]:
    """Sorted round trips per runtime, all running at once and measured in ``rounds`` blocks
    taken in turn, so that drift in the machine's load weighs on each alike. ``invocations``
    gives each runtime's total; every block starts with one unmeasured invocation, since the
    process sat idle while the others ran. ``headers`` gives each event's extra headers.
    ``cpu``, when given, gets each runtime's CPU nanoseconds over its measured invocations
    (what each block adds, with what follows the last answer: see ``cpu_ns``)."""
    peers = {runtime.name: start_peer() for runtime in runtimes}
    processes = [spawn(runtime, peers[runtime.name].address) for runtime in runtimes]
    latencies: dict[str, list[float]] = {runtime.name: [] for runtime in runtimes}
    try:
        for index in range(rounds):
            for runtime, process in zip(runtimes, processes, strict=True):
                peer, total = peers[runtime.name], invocations[runtime.name]
                peer.invoke(event, timeout=60)
                if cpu is not None:
                    peer.wait_for_next(60)
                    used = -cpu_ns(process.pid)
                for _ in range(total * (index + 1) // rounds - total * index // rounds):
                    peer.wait_for_next(60)  # done with the last one, what follows its answer too
                    extra = headers() if headers is not None else None
                    started = time.perf_counter()
                    result = peer.invoke(event, extra, timeout=60)
                    latencies[runtime.name].append((time.perf_counter() - started) * 1000)
                    if result.kind != "response":
                        raise RuntimeError(f"{runtime.name} failed: {result.body[:300]!r}")
                if cpu is not None:
                    peer.wait_for_next(60)
                    cpu.setdefault(runtime.name, []).append(used + cpu_ns(process.pid))
        return {name: sorted(values) for name, values in latencies.items()}
    finally:
        for process in processes:
            process.kill()
            process.wait()
        for peer in peers.values():
            peer.close()


def percentile(sorted_values: list[float], fraction: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * fraction))]


def measure_cold_starts(
    runtimes: list[Runtime], event: object, runs: int
) -> dict[str, dict[str, float]]:
    samples: dict[str, list[tuple[float, float]]] = {runtime.name: [] for runtime in runtimes}
    for _ in range(runs):
        for runtime in runtimes:
            samples[runtime.name].append(cold_start(runtime, event))
    return {
        name: {
            "cold: first /next (ms)": statistics.median(s[0] for s in values),
            "cold: first response (ms)": statistics.median(s[1] for s in values),
        }
        for name, values in samples.items()
    }


def print_table(rows: dict[str, dict[str, float]], runtimes: list[Runtime]) -> str:
    """A markdown table with each row's ratio to its reference; returns it, printed."""
    by_name = {runtime.name: runtime for runtime in runtimes}
    metrics = list(next(iter(rows.values())))
    lines = [
        "| runtime | " + " | ".join(metrics) + " |",
        "|---|" + "---|" * len(metrics),
    ]
    for name, row in rows.items():
        reference = rows.get(by_name[name].reference or name, row)
        cells = [
            f"{row[m]:.2f} ({row[m] / reference[m]:.2f}x)" if reference[m] else f"{row[m]:.2f}"
            for m in metrics
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print(table)
    return table
