"""What enabling ort-apm costs: cold start and warm p50 of a Python and a Node function.

The same in-process Python handler under ``bin/bootstrap``, from the same minimal Runtime API
on 127.0.0.1, in the same run:

- **ort-apm off**: ort-apm installed, not enabled (no ``OTEL_EXPORTER_OTLP_ENDPOINT``): the
  reference, what every user without a collector runs;
- **ort-apm on**: enabled, exporting every invocation's spans to a minimal OTLP/HTTP receiver
  (``RECEIVER`` below: a separate process answering 200, as a collector extension on
  localhost would) after the answer is posted, before the next ``/next`` (the default);
- **ort-apm on, ORT_APM_FLUSH=before_answer**: the same export, before the answer is posted;
- **ort-apm on, ORT_APM_EXPORT_MODE=send**: the default, but each flush only writes its
  request and reads the collector's answer at the next flush;
- **ort-apm on, always_off**: enabled, spans sampled out (metrics only): the cost of
  recording without the export;
- **ort-apm on, collector down**: enabled, its endpoint a closed port (backing off);

and the same, off, on and on with ``always_off``, for a Node handler (its worker loads
ort-apm's preload, and times the handler for ORT, which builds its span: with no HTTP call,
the worker sends nothing but its result).

Also measured: the import cost of ort-apm's plugin when enabled, against http.client and (if
importable here) OpenTelemetry's SDK and OTLP/HTTP exporter. Targets (issue 7): under 30 ms
of added cold start, under 5% added warm p50.

Warm p50 is the answer's latency, each event handed over once the runtime waits on ``/next``
(as Lambda does), each with a new X-Ray trace header (as Lambda sends one with every event).
A few microseconds are the whole difference, on a shared machine: the warm measurement is
repeated (``--repeats``, fresh processes each time), and the added p50 is given over all
samples, then as the median and range of the repeats. The **cycle** column is the other side:
invocations back to back, wall time over count, so what a runtime does between its answer
and its next ``/next`` shows there. The **CPU** columns are the work itself: the runtime's
and its worker's CPU time per warm invocation (the scheduler's accounting, answer and export
included), which the machine's idle states and scheduling do not blur as they blur latency.

    python bench/apm.py [--runs 20] [--invocations 1000] [--rounds 5] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import (
    ROOT,
    Runtime,
    base_environment,
    cold_start,
    interleaved_warm_latencies,
    percentile,
    spawn,
    start_peer,
)

HANDLER = "def handler(event, context):\n    return {'ok': True, 'event': event}\n"
NODE_HANDLER = "exports.handler = async (event) => ({ ok: true, event });\n"
EVENT = {"name": "x" * 40}
REFERENCE = "ort-apm off"


def lambda_trace_header() -> dict[str, str]:
    """A new X-Ray trace per event, as Lambda sends (``Sampled=1``: active tracing, so the
    parent-based sampler keeps every trace): ORT sets ``_X_AMZN_TRACE_ID`` from it, with or
    without ort-apm, and ort-apm parents its spans under it."""
    root = f"1-{int(time.time()):08x}-{os.urandom(12).hex()}"
    parent = os.urandom(8).hex()
    return {"Lambda-Runtime-Trace-Id": f"Root={root};Parent={parent};Sampled=1"}


NODE_REFERENCE = "node: ort-apm off"
COLD_TARGET_MS = 30.0
P50_TARGET = 0.05

# A minimal OTLP/HTTP receiver: reads each request (Content-Length framed), answers 200 "{}"
# on a kept-alive connection. Threads, sockets: as light as a Python collector gets.
RECEIVER = r"""
import socket, sys, threading

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"

def serve(connection):
    connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buffer = b""
    while True:
        while b"\r\n\r\n" not in buffer:
            chunk = connection.recv(65536)
            if not chunk:
                return
            buffer += chunk
        head, _, buffer = buffer.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        while len(buffer) < length:
            buffer += connection.recv(65536)
        buffer = buffer[length:]
        connection.sendall(ANSWER)

listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", 0))
listener.listen(64)
print(listener.getsockname()[1], flush=True)
while True:
    connection, _ = listener.accept()
    threading.Thread(target=serve, args=(connection,), daemon=True).start()
"""

# What ORT's cold start has imported before it loads plugins (its Runtime API client: socket,
# json; logging, threading) is set up first, so that a row is what importing it adds.
ORT_COLD_PATH = "import ort_core.plugins, ort_core.runtime_api, json, logging, socket, threading"
IMPORTS = {
    "ort_apm.plugin (enabled)": (ORT_COLD_PATH, "import ort_apm.plugin"),
    "http.client": ("", "import http.client"),
    "opentelemetry.sdk.trace + metrics": (
        "",
        "import opentelemetry.sdk.trace, opentelemetry.sdk.metrics",
    ),
    "opentelemetry OTLP/HTTP exporters": (
        "",
        "import opentelemetry.exporter.otlp.proto.http.trace_exporter, "
        "opentelemetry.exporter.otlp.proto.http.metric_exporter",
    ),
}


def start_receiver() -> tuple[subprocess.Popen, int]:
    process = subprocess.Popen(
        [sys.executable, "-c", RECEIVER], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    assert process.stdout is not None
    return process, int(process.stdout.readline())


def closed_port() -> int:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return port


def runtimes(folder: str, receiver_port: int) -> list[Runtime]:
    env = base_environment(
        _HANDLER="app.handler",
        LAMBDA_TASK_ROOT=folder,
        ORT_PYTHON=sys.executable,
        ORT_LANGUAGE="python",
        AWS_LAMBDA_FUNCTION_NAME="bench",
        AWS_LAMBDA_FUNCTION_MEMORY_SIZE="128",
    )
    env = {k: v for k, v in env.items() if not k.startswith("OTEL_") and k != "ORT_APM"}
    node = {**env, "_HANDLER": "index.handler", "ORT_LANGUAGE": "node"}
    bootstrap = [str(ROOT / "bin" / "bootstrap")]
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver_port}"}
    on = {**env, **endpoint}
    down = {**env, "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{closed_port()}"}
    return [
        Runtime(REFERENCE, bootstrap, env, folder),
        Runtime("ort-apm on", bootstrap, on, folder, REFERENCE),
        Runtime(
            "ort-apm on, ORT_APM_FLUSH=before_answer",
            bootstrap,
            {**on, "ORT_APM_FLUSH": "before_answer"},
            folder,
            REFERENCE,
        ),
        Runtime(
            "ort-apm on, ORT_APM_EXPORT_MODE=send",
            bootstrap,
            {**on, "ORT_APM_EXPORT_MODE": "send"},
            folder,
            REFERENCE,
        ),
        Runtime(
            "ort-apm on, always_off",
            bootstrap,
            {**on, "OTEL_TRACES_SAMPLER": "always_off"},
            folder,
            REFERENCE,
        ),
        Runtime("ort-apm on, collector down", bootstrap, down, folder, REFERENCE),
        Runtime(NODE_REFERENCE, bootstrap, node, folder, NODE_REFERENCE),
        Runtime("node: ort-apm on", bootstrap, {**node, **endpoint}, folder, NODE_REFERENCE),
        Runtime(
            "node: ort-apm on, always_off",
            bootstrap,
            {**node, **endpoint, "OTEL_TRACES_SAMPLER": "always_off"},
            folder,
            NODE_REFERENCE,
        ),
    ]


def import_ms(setup: str, statement: str, runs: int = 9) -> float | None:
    """Median wall time of ``statement`` in a fresh interpreter, after ``setup``; None when
    it cannot be imported here."""
    code = (
        f"{setup}\nimport time\nstarted = time.perf_counter()\n{statement}\n"
        "print((time.perf_counter() - started) * 1000)"
    )
    samples = []
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env={**base_environment(), "ORT_APM": "1"},
        )
        if done.returncode != 0:
            return None
        samples.append(float(done.stdout.strip().splitlines()[-1]))
    return statistics.median(samples)


def cycle_ms(runtime: Runtime, invocations: int) -> float:
    """Milliseconds per invocation sent back to back: the answer and whatever the runtime does
    before it asks for the next event."""
    peer = start_peer()
    process = spawn(runtime, peer.address)
    try:
        peer.invoke(EVENT, timeout=60)
        started = time.perf_counter()
        for _ in range(invocations):
            peer.invoke(EVENT, timeout=60)
        return (time.perf_counter() - started) * 1000 / invocations
    finally:
        process.kill()
        process.wait()
        peer.close()


def rotated_cold_starts(runtimes: list[Runtime], runs: int) -> dict[str, dict[str, float]]:
    """Median cold starts, one of each runtime per round, the order rotated every round: here
    the first runtime of a round starts several ms faster than the same one later in it."""
    samples: dict[str, list[tuple[float, float]]] = {runtime.name: [] for runtime in runtimes}
    for round_index in range(runs):
        shift = round_index % len(runtimes)
        for runtime in runtimes[shift:] + runtimes[:shift]:
            samples[runtime.name].append(cold_start(runtime, EVENT))
    return {
        name: {
            "cold: first /next (ms)": statistics.median(s[0] for s in values),
            "cold: first response (ms)": statistics.median(s[1] for s in values),
        }
        for name, values in samples.items()
    }


def added(value: float, reference: float) -> float:
    return (value - reference) / reference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="cold starts per row")
    parser.add_argument("--invocations", type=int, default=1000, help="warm ones per row")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved blocks per repeat")
    parser.add_argument("--repeats", type=int, default=5, help="warm measurements per row")
    options = parser.parse_args()

    print("## imports (median of 9 fresh interpreters)\n")
    print("| import | ms |\n|---|---|")
    for name, (setup, statement) in IMPORTS.items():
        value = import_ms(setup, statement)
        print(f"| {name} | {'not installed here' if value is None else f'{value:.1f}'} |")

    folder = Path(tempfile.mkdtemp(prefix="ort-bench-apm-"))
    (folder / "app.py").write_text(HANDLER)
    (folder / "index.js").write_text(NODE_HANDLER)
    receiver, port = start_receiver()
    try:
        rows = runtimes(str(folder), port)
        time.sleep(0.2)
        cold = rotated_cold_starts(rows, options.runs)
        cpu: dict[str, list[int]] = {}
        repeats = [
            interleaved_warm_latencies(
                rows,
                EVENT,
                dict.fromkeys((r.name for r in rows), options.invocations),
                options.rounds,
                lambda_trace_header,
                cpu,
            )
            for _ in range(options.repeats)
        ]
        cycles: dict[str, list[float]] = {row.name: [] for row in rows}
        for _ in range(options.rounds):
            for row in rows:
                cycles[row.name].append(cycle_ms(row, options.invocations // options.rounds))
        cycle = {name: statistics.median(values) for name, values in cycles.items()}
    finally:
        receiver.kill()
        receiver.wait()
        shutil.rmtree(folder, ignore_errors=True)

    warm = {row.name: sorted(v for each in repeats for v in each[row.name]) for row in rows}
    # CPU time of the runtime and its worker per invocation, answer and export included (µs)
    cpu_us = {
        name: sum(values) / 1000 / (options.invocations * options.repeats)
        for name, values in cpu.items()
    }
    p50 = {name: percentile(values, 0.5) for name, values in warm.items()}
    # each repeat's added p50, against the reference measured in that repeat
    spread = {
        row.name: sorted(
            added(percentile(each[row.name], 0.5), percentile(each[row.reference or row.name], 0.5))
            for each in repeats
        )
        for row in rows
    }

    print("\n## cold start and warm latency (ms)\n")
    print(
        "| runtime | cold: first /next | cold: first response | added cold | warm p50 "
        "| added p50 | added p50 by repeat: median (range) | warm p99 | cycle | CPU µs "
        "| added CPU µs |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        name, reference = row.name, row.reference or row.name
        first = cold[name]["cold: first response (ms)"]
        added_cold = first - cold[reference]["cold: first response (ms)"]
        by_repeat = spread[name]
        print(
            f"| {name} | {cold[name]['cold: first /next (ms)']:.2f} | {first:.2f} | "
            f"{added_cold:+.2f} | {p50[name]:.3f} | {added(p50[name], p50[reference]):+.1%} | "
            f"{statistics.median(by_repeat):+.1%} ({by_repeat[0]:+.1%} to {by_repeat[-1]:+.1%}) "
            f"| {percentile(warm[name], 0.99):.3f} | {cycle[name]:.3f} | {cpu_us[name]:.0f} "
            f"| {cpu_us[name] - cpu_us[reference]:+.0f} |"
        )

    print()
    for name, how in (
        ("ort-apm on", "spans in the collector before each next /next"),
        ("node: ort-apm on", "the same, with the handler timed in the Node worker"),
        ("ort-apm on, ORT_APM_FLUSH=before_answer", "spans in the collector before each answer"),
        ("ort-apm on, ORT_APM_EXPORT_MODE=send", "spans written before each next /next"),
    ):
        reference = next(row.reference for row in rows if row.name == name) or name
        added_cold = (
            cold[name]["cold: first response (ms)"] - cold[reference]["cold: first response (ms)"]
        )
        added_p50 = added(p50[name], p50[reference])
        print(
            f"- [{'x' if added_cold < COLD_TARGET_MS else ' '}] {name}: added cold start "
            f"{added_cold:+.2f} ms (target under {COLD_TARGET_MS:.0f} ms)"
        )
        print(
            f"- [{'x' if added_p50 < P50_TARGET else ' '}] {name}: added warm p50 "
            f"{added_p50:+.1%} (target under {P50_TARGET:.0%}; {how})"
        )
    print(
        f"\n{options.runs} interleaved cold starts per row (order rotated each round); "
        f"{options.repeats} repeats of {options.invocations} warm invocations per row in "
        f"{options.rounds} interleaved blocks; python {sys.version.split()[0]}"
    )


if __name__ == "__main__":
    main()
