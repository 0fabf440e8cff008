"""Every runtime in one run: ORT's bridges, AWS's awslambdaric and bare Runtime API loops.

All rows serve the same handler of their language from the same minimal Runtime API on
127.0.0.1 (``tests/runtime_api_peer.py``), on this machine, in one run:

- **python**: AWS's ``awslambdaric`` (the reference of ORT's Python rows), a bare loop
  (``bare/loop.py``), ORT in-process and ``ORT_PYTHON_MODE=subprocess``;
- **node**, **deno**: a bare loop (the reference of ORT's rows in that language), ORT's
  persistent bridge, and for Deno the per-invocation mode too;
- **executable**: the curl loop of Lambda's custom-runtime tutorial, ORT with the same bash
  handler.

Measured for each: cold start (spawn to the first ``/next``, to the first response; medians
of interleaved cold starts, each on its own Runtime API), warm p50 and p99 and sequential
invocations per second with 64-byte and 1 MB events (one process per row, all measured in
interleaved blocks), and the resident memory of the runtime's whole process tree (its RSS and
its descendants', from /proc) after those invocations. Then the scale: warm p50 against the
event size (64 B to just under Lambda's 6 MB) and against the number of persistent
middlewares (0, 1, 5), and plugin discovery with a static manifest.

Writes ``results.md`` (absolute figures, ratios to each row's reference, the targets of issue
9), ``results.png`` and ``scale.png`` next to this file.

    python bench/all.py [--runs 30] [--invocations 1000] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from harness import ROOT, Runtime, base_environment, cold_start, spawn, start_peer
from middlewares import MIDDLEWARES

HERE = Path(__file__).resolve().parent
BARE = HERE / "bare"
LIMIT = 6 * 1024 * 1024  # Lambda's synchronous payload limit (6 MB)
SIZES = {"64 B": 64, "1 KB": 1024, "64 KB": 64 * 1024, "1 MB": 1024 * 1024, "6 MB": LIMIT - 1024}
MAIN_SIZES = ("64 B", "1 MB")  # the main table's; the others are the scale plot's
FUNCTIONS = {
    "app.py": "def handler(event, context):\n    return {'length': len(event['name'])}\n",
    "index.js": "exports.handler = async (event) => ({length: event.name.length});\n",
    "hello.ts": "export const handler = async (event: {name: string}) => "
    "({length: event.name.length});\n",
    "handler.sh": '#!/bin/sh\nwc -c | { read n; printf \'{"length": %s}\' "$n"; }\n',
}
MIDDLEWARE_COUNTS = (0, 1, 5)
AWS = "python: awslambdaric"
BARE_PYTHON = "python: bare loop"


def event_of(size: int) -> bytes:
    """A JSON event of exactly ``size`` bytes: ``{"name": "xxx…"}``."""
    return json.dumps({"name": "x" * (size - 12)}).encode()


@dataclass
class Row:
    runtime: Runtime
    slow: bool = False  # a process per event: fewer invocations


def rows(folder: str) -> list[Row]:
    """The runtimes, each with its reference (``Runtime.reference``)."""
    from ort_deno.sandbox import deno_binary
    from ort_node.launch import node_binary

    bootstrap = [str(ROOT / "bin" / "bootstrap")]
    python_env = base_environment(
        _HANDLER="app.handler",
        LAMBDA_TASK_ROOT=folder,
        PYTHONPATH=folder,
        ORT_PYTHON=sys.executable,
    )

    def ort(name: str, handler: str, language: str, reference: str, **extra: str) -> Runtime:
        env = base_environment(
            _HANDLER=handler,
            LAMBDA_TASK_ROOT=folder,
            PYTHONPATH=folder,
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

    deno = [deno_binary(), "run", "--allow-net", "--allow-env", "--allow-read"]
    return [
        Row(
            Runtime(AWS, [sys.executable, "-m", "awslambdaric", "app.handler"], python_env, folder)
        ),
        Row(bare(BARE_PYTHON, [sys.executable, str(BARE / "loop.py")], "app.handler")),
        Row(ort("python: ORT in-process", "app.handler", "python", AWS, ORT_PLUGINS="ort-python")),
        Row(
            ort(
                "python: ORT subprocess",
                "app.handler",
                "python",
                AWS,
                ORT_PLUGINS="ort-python",
                ORT_PYTHON_MODE="subprocess",
            )
        ),
        Row(bare("node: bare loop", [node_binary(), str(BARE / "loop.js")], "index.handler")),
        Row(ort("node: ORT", "index.handler", "node", "node: bare loop", ORT_PLUGINS="ort-node")),
        Row(bare("deno: bare loop", [*deno, str(BARE / "loop.ts")], "hello.handler")),
        Row(
            ort(
                "deno: ORT persistent",
                "hello.handler",
                "deno",
                "deno: bare loop",
                ORT_PLUGINS="ort-deno",
                ORT_DENO_MODE="persistent",
            )
        ),
        Row(
            ort(
                "deno: ORT per-invocation",
                "hello.handler",
                "deno",
                "deno: bare loop",
                ORT_PLUGINS="ort-deno",
                ORT_DENO_MODE="per-invocation",
            ),
            slow=True,
        ),
        Row(bare("executable: bash+curl loop", [str(BARE / "loop.sh")], "handler.sh"), slow=True),
        Row(
            ort(
                "executable: ORT",
                "handler.sh",
                "executable",
                "executable: bash+curl loop",
                ORT_PLUGINS="",
            )
        ),
    ]


def middleware_rows(folder: str, middleware_dir: str) -> dict[str, tuple[Runtime, int]]:
    """ORT in-process with 0, 1 and 5 persistent middlewares (bash and Python loops)."""
    env = base_environment(
        _HANDLER="app.handler",
        LAMBDA_TASK_ROOT=folder,
        ORT_PYTHON=sys.executable,
        ORT_LANGUAGE="python",
        ORT_PLUGINS="ort-python",
        ORT_MIDDLEWARE_DIR=middleware_dir,
    )
    bootstrap = [str(ROOT / "bin" / "bootstrap")]
    found = {"middlewares: 0": (Runtime("middlewares: 0", bootstrap, env, folder), 0)}
    for language in ("bash", "python"):
        for count in MIDDLEWARE_COUNTS[1:]:
            name = f"middlewares: {count} persistent {language}"
            names = ",".join(f"persistent-{language}-{n}" for n in range(1, count + 1))
            runtime = Runtime(name, bootstrap, {**env, "SLSMIDDLEWARES": names}, folder)
            found[name] = (runtime, count)
    return found


# -- measuring ---------------------------------------------------------------------------------


def cold_starts(
    runtimes: list[Runtime], payload: bytes, runs: int, probes: dict[str, list[str]]
) -> tuple[dict[str, tuple[float, float]], dict[str, float]]:
    """Median (to first /next, to first response) of each runtime, one of each per round, the
    order rotated every round (the first runtime of a round tends to start faster); and the
    median wall time of each probe command, run once per round, so that both see the same
    machine."""
    samples: dict[str, list[tuple[float, float]]] = {runtime.name: [] for runtime in runtimes}
    probed: dict[str, list[float]] = {name: [] for name in probes}
    env = base_environment()
    for index in range(runs):
        shift = index % len(runtimes)
        for runtime in runtimes[shift:] + runtimes[:shift]:
            samples[runtime.name].append(cold_start(runtime, payload))
        for name, command in probes.items():
            started = time.perf_counter()
            subprocess.run(command, env=env, check=True)
            probed[name].append((time.perf_counter() - started) * 1000)
    return (
        {
            name: (statistics.median(s[0] for s in values), statistics.median(s[1] for s in values))
            for name, values in samples.items()
        },
        {name: statistics.median(values) for name, values in probed.items()},
    )


def tree_rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` and all its descendants, from /proc (MiB)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as file:
                    stat = file.read()
            except OSError:
                continue
            parent = int(stat.rpartition(")")[2].split()[1])
            children.setdefault(parent, []).append(int(entry))
    total_kib, todo = 0, [pid]
    while todo:
        current = todo.pop()
        todo.extend(children.get(current, ()))
        try:
            with open(f"/proc/{current}/status") as file:
                for line in file:
                    if line.startswith("VmRSS:"):
                        total_kib += int(line.split()[1])
        except OSError:
            continue
    return total_kib / 1024


class Warm:
    """One process per runtime on its own Runtime API, all alive at once, measured in blocks
    taken in turn so that drift in the machine's load weighs on each alike."""

    def __init__(self, runtimes: list[Runtime]) -> None:
        self.runtimes = runtimes
        self.peers = {runtime.name: start_peer() for runtime in runtimes}
        self.processes = {
            runtime.name: spawn(runtime, self.peers[runtime.name].address) for runtime in runtimes
        }
        self.latencies: dict[tuple[str, str], list[float]] = {}
        self.elapsed: dict[tuple[str, str], float] = {}

    def invoke(self, name: str, payload: bytes) -> float:
        """One invocation's round trip (ms), the event handed over once the runtime waits on
        ``/next`` when the peer can tell (as Lambda does)."""
        peer = self.peers[name]
        wait_for_next = getattr(peer, "wait_for_next", None)
        if wait_for_next is not None:
            wait_for_next(120)
        started = time.perf_counter()
        result = peer.invoke(payload, timeout=120)
        took = (time.perf_counter() - started) * 1000
        if result.kind != "response":
            raise RuntimeError(f"{name} failed: {result.body[:300]!r}")
        return took

    def measure(self, size: str, counts: dict[str, int], rounds: int) -> None:
        payload = event_of(SIZES[size])
        for index in range(rounds):
            for runtime in self.runtimes:
                name, total = runtime.name, counts[runtime.name]
                block = total * (index + 1) // rounds - total * index // rounds
                if not block:
                    continue
                self.invoke(name, payload)  # it sat idle while the others ran
                started = time.perf_counter()
                values = [self.invoke(name, payload) for _ in range(block)]
                self.elapsed[name, size] = self.elapsed.get((name, size), 0.0) + (
                    time.perf_counter() - started
                )
                self.latencies.setdefault((name, size), []).extend(values)

    def p(self, name: str, size: str, fraction: float) -> float:
        values = sorted(self.latencies[name, size])
        return values[min(len(values) - 1, int(len(values) * fraction))]

    def per_second(self, name: str, size: str) -> float:
        return len(self.latencies[name, size]) / self.elapsed[name, size]

    def rss(self) -> dict[str, float]:
        return {name: tree_rss_mib(process.pid) for name, process in self.processes.items()}

    def close(self) -> None:
        for process in self.processes.values():
            process.kill()
            process.wait()
        for peer in self.peers.values():
            peer.close()


DISCOVERY = """
import os, sys, time
from ort_core.entry_points import entry_points
started = time.perf_counter()
for group in ("ort.workers", "ort.worker_env", "ort"):
    entry_points(group, None)
print((time.perf_counter() - started) * 1000)
"""


def discovery_ms(manifest: str | None, runs: int = 9) -> tuple[float, float]:
    """Median and fastest time, in a fresh interpreter each run, of reading the three
    entry-point groups the cold start reads: with a manifest, or scanning sys.path."""
    env = base_environment()
    env["ORT_PLUGIN_MANIFEST"] = manifest or ""
    samples = [
        float(
            subprocess.run(
                [sys.executable, "-c", DISCOVERY], env=env, capture_output=True, check=True
            ).stdout
        )
        for _ in range(runs)
    ]
    return statistics.median(samples), min(samples)


# What both Python runtimes import; pluggy (with inspect and typing) is what ORT keeps off it.
SHARED_IMPORTS = "import json, logging, threading, traceback"


def write_manifest(path: Path) -> int:
    """A manifest of every installed distribution, as ``ort layer build`` writes one."""
    import site

    from ort_core.entry_points import manifest_entry
    from ort_core.layer import MANIFEST_GROUPS

    found = {}
    for directory in site.getsitepackages():
        for name in sorted(os.listdir(directory)):
            if name.endswith(".dist-info"):
                entry = manifest_entry(os.path.join(directory, name), MANIFEST_GROUPS)
                found.setdefault(entry["name"], entry)
    path.write_text(json.dumps({"distributions": list(found.values())}))
    return len(found)


# -- reporting ---------------------------------------------------------------------------------

METRICS = (
    ("cold: first /next (ms)", "cold_next"),
    ("cold: first response (ms)", "cold_response"),
    ("64 B p50 (ms)", "p50 64 B"),
    ("64 B p99 (ms)", "p99 64 B"),
    ("64 B inv/s", "ips 64 B"),
    ("64 B RSS (MiB)", "rss 64 B"),
    ("1 MB p50 (ms)", "p50 1 MB"),
    ("1 MB p99 (ms)", "p99 1 MB"),
    ("1 MB inv/s", "ips 1 MB"),
    ("1 MB RSS (MiB)", "rss 1 MB"),
)


def table(results: dict[str, dict[str, float]], runtimes: list[Runtime]) -> str:
    by_name = {runtime.name: runtime for runtime in runtimes}
    lines = [
        "| runtime | reference | " + " | ".join(title for title, _ in METRICS) + " |",
        "|---|---|" + "---|" * len(METRICS),
    ]
    for name, row in results.items():
        reference_name = by_name[name].reference or name
        reference = results[reference_name]
        cells = []
        for _, key in METRICS:
            value = row[key]
            text = f"{value:.0f}" if key.startswith("ips") else f"{value:.2f}"
            if reference_name != name and reference[key]:
                text += f" ({value / reference[key]:.2f}x)"
            cells.append(text)
        shown = "" if reference_name == name else reference_name
        lines.append(f"| {name} | {shown} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def targets(
    results: dict[str, dict[str, float]], discovery: float
) -> list[tuple[str, float, float]]:
    """(what, measured ratio or value, limit) for each target of issue 9."""
    checks = []
    ort, aws = results["python: ORT in-process"], results[AWS]
    checks += [
        (
            "ORT Python cold start to first /next vs awslambdaric",
            ort["cold_next"] / aws["cold_next"],
            1.25,
        ),
        (
            "ORT Python cold start to first response vs awslambdaric",
            ort["cold_response"] / aws["cold_response"],
            1.25,
        ),
        ("ORT Python 64 B p50 vs awslambdaric", ort["p50 64 B"] / aws["p50 64 B"], 1.1),
        ("ORT Python memory (64 B) vs awslambdaric", ort["rss 64 B"] / aws["rss 64 B"], 2.0),
    ]
    for name, reference in (
        ("node: ORT", "node: bare loop"),
        ("deno: ORT persistent", "deno: bare loop"),
    ):
        row, bare = results[name], results[reference]
        checks += [
            (
                f"{name} cold start to first /next vs bare",
                row["cold_next"] / bare["cold_next"],
                1.25,
            ),
            (
                f"{name} cold start to first response vs bare",
                row["cold_response"] / bare["cold_response"],
                1.25,
            ),
            (f"{name} 64 B p50 vs bare", row["p50 64 B"] / bare["p50 64 B"], 1.5),
        ]
    bare_python = results[BARE_PYTHON]["p50 1 MB"]
    for name in ("python: ORT in-process", "python: ORT subprocess"):
        checks.append(
            (
                f"{name} 1 MB p50 vs the bare Python loop",
                results[name]["p50 1 MB"] / bare_python,
                1.5,
            )
        )
    checks.append(("plugin discovery with a static manifest (ms)", discovery, 2.0))
    return checks


def check_lines(checks: list[tuple[str, float, float]]) -> str:
    lines = []
    for what, value, limit in checks:
        unit = " ms" if "(ms)" in what else "x"
        mark = "x" if value <= limit else " "
        verdict = "met" if value <= limit else f"MISSED by {value / limit - 1:.0%}"
        lines.append(f"- [{mark}] {what}: **{value:.2f}{unit}** (at most {limit}{unit}: {verdict})")
    return "\n".join(lines)


COLOURS = {"python": "#3572A5", "node": "#43853d", "deno": "#222222", "executable": "#89e051"}


def plot_results(results: dict[str, dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    colours = [COLOURS[name.split(":")[0]] for name in names]
    figure, axes = plt.subplots(2, 2, figsize=(13, 9))
    panels = (
        (axes[0][0], "cold start to first response (ms)", "cold_response", False),
        (axes[0][1], "warm p50, 64 B and 1 MB events (ms, log)", None, True),
        (axes[1][0], "resident memory of the process tree, 64 B (MiB)", "rss 64 B", False),
        (axes[1][1], "sequential invocations per second, 64 B", "ips 64 B", False),
    )
    positions = range(len(names))
    for axis, title, key, log in panels:
        if key is None:
            axis.barh(
                [p - 0.2 for p in positions],
                [results[n]["p50 64 B"] for n in names],
                height=0.4,
                color=colours,
                label="64 B",
            )
            axis.barh(
                [p + 0.2 for p in positions],
                [results[n]["p50 1 MB"] for n in names],
                height=0.4,
                color=colours,
                alpha=0.45,
                label="1 MB",
            )
            axis.legend(loc="lower right")
        else:
            axis.barh(list(positions), [results[n][key] for n in names], color=colours)
        if key == "cold_response":
            axis.barh(
                list(positions),
                [results[n]["cold_next"] for n in names],
                color="white",
                alpha=0.35,
                hatch="//",
                label="to first /next",
            )
            axis.legend(loc="lower right")
        axis.set_yticks(list(positions), names, fontsize=8)
        axis.invert_yaxis()
        axis.set_title(title, fontsize=10)
        if log:
            axis.set_xscale("log")
        axis.grid(axis="x", alpha=0.3)
    figure.suptitle("ORT against awslambdaric and bare Runtime API loops (same run, same peer)")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def plot_scale(
    warm: Warm, names: list[str], middleware: dict[int, dict[str, float]], path: Path
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 5.5))
    sizes = [SIZES[size] for size in SIZES]
    styles = ["-", "--", ":", "-."]  # the language's reference solid, ORT's rows broken
    seen: dict[str, int] = {}
    for name in names:
        language = name.split(":")[0]
        index = seen[language] = seen.get(language, -1) + 1
        p50s = [warm.p(name, size, 0.5) for size in SIZES]
        left.plot(
            sizes,
            p50s,
            styles[index % len(styles)],
            marker="o",
            markersize=3,
            color=COLOURS[language],
            label=name,
        )
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xticks(sizes, list(SIZES))
    left.set_xlabel("event size")
    left.set_ylabel("warm p50 (ms)")
    left.set_title("per-invocation p50 against event size", fontsize=10)
    left.grid(alpha=0.3)
    left.legend(fontsize=7, loc="upper left")
    for language, marker in (("bash", "o"), ("python", "s")):
        counts = list(MIDDLEWARE_COUNTS)
        right.plot(
            counts,
            [middleware[count][language] for count in counts],
            marker=marker,
            label=f"persistent {language} middlewares",
        )
    right.set_xticks(list(MIDDLEWARE_COUNTS))
    right.set_xlabel("middlewares (each called before and after the handler)")
    right.set_ylabel("warm p50 (ms), 64 B")
    right.set_ylim(bottom=0)
    right.set_title("ORT, Python in-process: p50 against persistent middlewares", fontsize=10)
    right.grid(alpha=0.3)
    right.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


# -- the run -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="cold starts per runtime")
    parser.add_argument("--invocations", type=int, default=1000, help="warm, 64 B, per row")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved blocks per size")
    parser.add_argument("--quick", action="store_true", help="a few of everything (a smoke run)")
    parser.add_argument("--output", default=str(HERE), help="where results.md and the plots go")
    options = parser.parse_args()
    Path(options.output).mkdir(parents=True, exist_ok=True)
    if options.quick:
        options.runs, options.invocations, options.rounds = 2, 40, 2
    began = time.perf_counter()
    output = Path(options.output)

    folder = Path(tempfile.mkdtemp(prefix="ort-bench-"))
    for name, source in FUNCTIONS.items():
        (folder / name).write_text(source)
        (folder / name).chmod(0o755)
    (folder / "middlewares").mkdir()
    for (kind, language), source in MIDDLEWARES.items():
        if kind == "persistent":
            for number in range(1, max(MIDDLEWARE_COUNTS) + 1):
                path = folder / "middlewares" / f"{kind}-{language}-{number}"
                path.write_text(source)
                path.chmod(0o755)
    load = os.getloadavg()[0]

    selected = rows(str(folder))
    runtimes = [row.runtime for row in selected]
    print(f"cold starts: {options.runs} rounds of {len(runtimes)} runtimes", flush=True)
    probes = {
        "shared": [sys.executable, "-c", SHARED_IMPORTS],
        "shared + pluggy": [sys.executable, "-c", SHARED_IMPORTS + ", pluggy"],
    }
    cold, probed = cold_starts(runtimes, event_of(64), options.runs, probes)
    without_pluggy, with_pluggy = probed["shared"], probed["shared + pluggy"]
    pluggy_ms = with_pluggy - without_pluggy

    # Invocations per size: fewer as events grow; a tenth for a process per event.
    n = options.invocations
    per_size = {
        "64 B": n,
        "1 KB": n // 2,
        "64 KB": n // 2,
        "1 MB": max(20, n // 10),
        "6 MB": max(6, n // 60),
    }
    middlewares = middleware_rows(str(folder), str(folder / "middlewares"))
    warm = Warm(runtimes)
    middleware_warm = Warm([runtime for runtime, _ in middlewares.values()])
    rss: dict[str, dict[str, float]] = {}
    try:
        for size in SIZES:
            counts = {
                row.runtime.name: max(3, per_size[size] // 10) if row.slow else per_size[size]
                for row in selected
            }
            print(f"warm: {size}", flush=True)
            warm.measure(size, counts, options.rounds)
            if size in MAIN_SIZES:
                rss[size] = warm.rss()
        print("warm: middlewares", flush=True)
        middleware_warm.measure("64 B", dict.fromkeys(middlewares, n // 2), options.rounds)
    finally:
        warm.close()
        middleware_warm.close()

    with tempfile.TemporaryDirectory() as scratch:
        manifest = Path(scratch, "ort-plugins.json")
        distributions = write_manifest(manifest)
        with_manifest, fastest = discovery_ms(str(manifest))
        scanning, scanning_fastest = discovery_ms(None)

    results: dict[str, dict[str, float]] = {}
    for runtime in runtimes:
        name = runtime.name
        row = {
            "cold_next": cold[name][0],
            "cold_response": cold[name][1],
        }
        for size in MAIN_SIZES:
            row[f"p50 {size}"] = warm.p(name, size, 0.5)
            row[f"p99 {size}"] = warm.p(name, size, 0.99)
            row[f"ips {size}"] = warm.per_second(name, size)
            row[f"rss {size}"] = rss[size][name]
        results[name] = row

    middleware_p50 = {0: {}}  # count -> language -> p50
    for name, (_, count) in middlewares.items():
        p50 = middleware_warm.p(name, "64 B", 0.5)
        if count == 0:
            middleware_p50[0] = {"bash": p50, "python": p50}
        else:
            middleware_p50.setdefault(count, {})[name.rsplit(" ", 1)[1]] = p50

    checks = targets(results, with_manifest)
    pluggy_share = pluggy_ms / results[AWS]["cold_next"]  # to the first /next
    main_table = table(results, runtimes)
    scale_lines = [
        "| runtime | " + " | ".join(f"{size} p50 (ms)" for size in SIZES) + " | invocations |",
        "|---|" + "---|" * (len(SIZES) + 1),
    ]
    for runtime in runtimes:
        cells = " | ".join(f"{warm.p(runtime.name, size, 0.5):.2f}" for size in SIZES)
        counts = "/".join(str(len(warm.latencies[runtime.name, size])) for size in SIZES)
        scale_lines.append(f"| {runtime.name} | {cells} | {counts} |")
    middleware_lines = [
        "| middlewares | bash p50 (ms) | python p50 (ms) |",
        "|---|---|---|",
        *(
            f"| {count} | {middleware_p50[count]['bash']:.2f} | "
            f"{middleware_p50[count]['python']:.2f} |"
            for count in MIDDLEWARE_COUNTS
        ),
    ]
    versions = {
        "python": platform.python_version(),
        "node": subprocess.run(
            [runtimes[4].command[0], "--version"], capture_output=True, text=True
        ).stdout.strip(),
        "deno": subprocess.run(
            [runtimes[6].command[0], "--version"], capture_output=True, text=True
        )
        .stdout.split(" (")[0]
        .removeprefix("deno "),
    }
    try:
        from importlib.metadata import version

        versions["awslambdaric"] = version("awslambdaric")
    except Exception:
        pass
    took = time.perf_counter() - began
    header = (
        f"{time.strftime('%Y-%m-%d %H:%M')}, {platform.machine()}, {os.cpu_count()} cores, "
        f"load average {load:.2f} at the start; "
        + ", ".join(f"{name} {value}" for name, value in versions.items())
        + f". Medians of {options.runs} interleaved cold starts per runtime (the order rotated "
        "each round); warm figures from "
        f"{n} invocations with 64 B events and {per_size['1 MB']} with 1 MB events "
        f"({max(3, n // 10)} and {max(3, per_size['1 MB'] // 10)} for the rows that start a "
        f"process per event), in {options.rounds} interleaved blocks, each event handed over "
        "once the runtime waits on /next; inv/s is sequential (wall time over count); RSS is "
        "the runtime's whole process tree after those. Ratios are to the row named in "
        f"*reference*. The run took {took:.0f} s."
    )
    report = f"""# bench/all.py results

{header}

![results](results.png)

{main_table}

## Targets (issue 9)

{check_lines(checks)}

## Scale

![scale](scale.png)

Warm p50 against the event size (``{{"name": "xxx…"}}`` of exactly that many bytes; 6 MB is
Lambda's limit less 1 KiB):

{chr(10).join(scale_lines)}

Against the number of persistent middlewares (ORT, Python in-process, 64 B events, each
middleware called before and after the handler):

{chr(10).join(middleware_lines)}

## What pluggy would cost the Python cold start

ORT's hooks are pluggy's, but its cold start registers the usual plugins without importing
pluggy (`ort_core/registry.py`). What that saves: a fresh interpreter importing what both
Python runtimes import (`{SHARED_IMPORTS}`), then the same and pluggy (its import brings
inspect, ast, dis and typing): medians of {options.runs}, one of each in every round of the
cold starts above.

| imports | wall time (ms) |
|---|---|
| shared | {without_pluggy:.1f} |
| shared + pluggy | {with_pluggy:.1f} |
| pluggy's share | **{pluggy_ms:.1f}** ({pluggy_share:.0%} of awslambdaric's cold start) |

## Plugin discovery

The three entry-point groups the cold start reads, in a fresh interpreter (median and fastest
of 9; the plugins' own imports not counted), {distributions} distributions installed:

| discovery | median (ms) | fastest (ms) |
|---|---|---|
| static manifest (``ORT_PLUGIN_MANIFEST``) | {with_manifest:.2f} | {fastest:.2f} |
| scanning sys.path | {scanning:.2f} | {scanning_fastest:.2f} |
"""
    (output / "results.md").write_text(report)
    plot_results(results, output / "results.png")
    plot_scale(warm, [runtime.name for runtime in runtimes], middleware_p50, output / "scale.png")
    print(report)
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
