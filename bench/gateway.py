"""`ort serve` against Google's functions-framework: requests per second and latency under wrk.

The same hello function, served on 127.0.0.1 with each server's defaults, as a user starts it:

- **functions-framework** (the reference): ``functions-framework --target hello``, a Flask-style
  ``def hello(request): return "Hello, world!"``. Its defaults (``_http/gunicorn.py``): gunicorn,
  ``WORKERS=1`` process, ``THREADS`` = 4 x the CPU count (gthread), no timeout.
- **ort serve (Python)**: a Scaleway-style ``handle(event, context)`` answering
  ``{"statusCode": 200, "headers": {...}, "body": "Hello, world!"}``, ``SCW_PUBLIC=true``;
  ``ORT_CONCURRENCY`` defaults to the CPU count (a row with the usable core count is added
  when the two differ).
- **ort serve (Node)**: the same answer from ``index.js``, ``ORT_LANGUAGE=node``.
- **uvicorn alone**: a bare ASGI hello on uvicorn with ORT's settings (uvloop, httptools): the
  ceiling of the server ORT is built on, not a competitor.

All servers are started, each answer checked (200, ``Hello, world!``) and each server warmed
up with wrk; then wrk measures them in interleaved rounds (one block of each per round, the
order turning), at ``--connections`` (16) over ``--threads`` (2), then at one connection
(per-request latency). wrk runs on the same cores as the servers. Any wrk error (a status >=
400, a socket error, a timeout) fails the run.

    python bench/gateway.py [--duration 12] [--rounds 6] [--single-duration 6]
                            [--connections 16] [--functions-framework PATH] [--only Node]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

HELLO = b"Hello, world!"
FILES = {
    # Scaleway's style: the answer is the HTTP response.
    "handler.py": (
        "def handle(event, context):\n"
        "    return {\n"
        '        "statusCode": 200,\n'
        '        "headers": {"Content-Type": "text/plain"},\n'
        '        "body": "Hello, world!",\n'
        "    }\n"
    ),
    "index.js": (
        "exports.handle = (event, context) => ({\n"
        "  statusCode: 200,\n"
        '  headers: {"Content-Type": "text/plain"},\n'
        '  body: "Hello, world!",\n'
        "});\n"
    ),
    # functions-framework's style (Flask): the same function.
    "main.py": 'def hello(request):\n    return "Hello, world!"\n',
    # The server ORT runs on, alone: what any ASGI app on it can reach at most.
    "asgi_hello.py": (
        "HEADERS = [(b'content-type', b'text/plain'), (b'content-length', b'13')]\n\n\n"
        "async def app(scope, receive, send):\n"
        "    if scope['type'] != 'http':\n"
        "        return\n"
        "    await send({'type': 'http.response.start', 'status': 200, 'headers': HEADERS})\n"
        "    await send({'type': 'http.response.body', 'body': b'Hello, world!'})\n"
    ),
}

# wrk calls done() once at the end: one JSON line with its counts and a grid of latency
# percentiles (microseconds), fine enough at the tail to merge the rounds' distributions.
WRK_SCRIPT = """
done = function(summary, latency, requests)
  local e = summary.errors
  local grid = {}
  for i = 1, 990 do grid[#grid + 1] = latency:percentile(i / 10) end
  for i = 1, 99 do grid[#grid + 1] = latency:percentile(99 + i / 100) end
  io.write(string.format(
    'ORT-BENCH {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, '
    .. '"status": %d, "timeout": %d, "max": %d, "grid": [%s]}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency.max, table.concat(grid, ",")))
end
"""
GRID = [i / 1000 for i in range(1, 991)] + [0.99 + i / 10000 for i in range(1, 100)]

REFERENCE = "functions-framework (Python)"
TARGET_ROW = "ort serve (Python)"
TARGET_RATIO = 2.0
# Variables that would change a server's defaults or ORT's behaviour: none is passed on.
DROPPED = ("AWS_", "ORT_", "SCW_", "OTEL_", "FUNCTION_", "_HANDLER", "NODE_EXTRA_CA_CERTS")
DROPPED_NAMES = {"PORT", "HOST", "DEBUG", "THREADS", "WORKERS", "CLOUD_RUN_TIMEOUT_SECONDS"}


@dataclass
class Server:
    name: str
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    ready_path: str = "/"


def environment(**extra: str) -> dict[str, str]:
    """This environment without what would change the servers' defaults, nor this sandbox's
    NODE_EXTRA_CA_CERTS (Node parses the bundle at every start)."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(DROPPED) and name not in DROPPED_NAMES
    }
    env.update(extra)
    return env


def servers(functions_framework: str) -> list[Server]:
    ort = str(Path(sys.executable).parent / "ort")
    serve = [ort, "serve", "--host", "127.0.0.1", "--port", "{port}"]
    rows = [
        Server(
            REFERENCE,
            [functions_framework, "--target", "hello", "--host", "127.0.0.1", "--port", "{port}"],
            environment(),
        ),
        Server(
            TARGET_ROW,
            [*serve, "--handler", "handler.handle"],
            environment(SCW_PUBLIC="true"),
            "/_ort/ready",
        ),
    ]
    usable = len(os.sched_getaffinity(0))
    if usable != (os.cpu_count() or 1):  # ORT's default is os.cpu_count(), not the usable cores
        rows.append(
            Server(
                f"ort serve (Python), ORT_CONCURRENCY={usable}",
                [*serve, "--handler", "handler.handle"],
                environment(SCW_PUBLIC="true", ORT_CONCURRENCY=str(usable)),
                "/_ort/ready",
            )
        )
    rows.append(
        Server(
            "ort serve (Node)",
            [*serve, "--handler", "index.handle"],
            environment(SCW_PUBLIC="true", ORT_LANGUAGE="node"),
            "/_ort/ready",
        )
    )
    uvicorn = [sys.executable, "-m", "uvicorn", "asgi_hello:app", "--host", "127.0.0.1"]
    uvicorn += ["--port", "{port}", "--loop", "uvloop", "--http", "httptools"]
    uvicorn += ["--log-level", "warning", "--no-access-log", "--no-server-header"]
    rows.append(Server("uvicorn alone, ASGI hello (ceiling)", uvicorn, environment()))
    return rows


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def start(server: Server, folder: Path, port: int) -> subprocess.Popen:
    command = [part.replace("{port}", str(port)) for part in server.command]
    with open(folder / f"{port}.log", "wb") as log:
        process = subprocess.Popen(
            command, env=server.env, cwd=folder, stdout=log, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            if get(f"http://127.0.0.1:{port}{server.ready_path}")[0] == 200:
                return process
        except OSError:
            pass
        time.sleep(0.1)
    stop(process)
    output = (folder / f"{port}.log").read_text(errors="replace")[-3000:]
    raise SystemExit(f"FAIL: {server.name} did not start ({' '.join(command)}):\n{output}")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def tree_cpu_seconds(root: int) -> float:
    """User and system CPU of a process and all its descendants, in seconds."""
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        parents[int(entry)] = int(fields[1])
        ticks[int(entry)] = int(fields[11]) + int(fields[12])
    tree, grew = {root}, True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= more
        grew = bool(more)
    return sum(ticks.get(pid, 0) for pid in tree) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> tuple[float, float]:
    """CPU seconds all cores spent busy (user, system, interrupts) and stolen by the
    hypervisor, from /proc/stat: whatever else runs on the machine shows here too."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    busy = fields[0] + fields[1] + fields[2] + fields[5] + fields[6]
    steal = fields[7] if len(fields) > 7 else 0
    tick = os.sysconf("SC_CLK_TCK")
    return busy / tick, steal / tick


def wrk(
    url: str, threads: int, connections: int, seconds: float, script: Path, server_pid: int
) -> dict:
    """One wrk run: its figures, and the CPU seconds the server and wrk itself used."""
    seconds = max(1, round(seconds))  # wrk takes whole seconds
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    command += ["-s", str(script), url]
    server_before = tree_cpu_seconds(server_pid)
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy_before, steal_before = machine_busy_seconds()
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - started
    busy, steal = machine_busy_seconds()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next((x for x in done.stdout.splitlines() if x.startswith("ORT-BENCH ")), None)
    if done.returncode != 0 or line is None:
        raise SystemExit(f"FAIL: {' '.join(command)}\n{done.stdout}{done.stderr}")
    figures = json.loads(line.removeprefix("ORT-BENCH "))
    errors = {k: figures[k] for k in ("status", "connect", "read", "write", "timeout")}
    if any(errors.values()) or not figures["requests"]:
        raise SystemExit(
            f"FAIL: {url} answered with errors {errors} ('status' counts responses >= 400)\n"
            + done.stdout.partition("ORT-BENCH")[0]
        )
    figures["elapsed"] = elapsed
    figures["server_cpu"] = tree_cpu_seconds(server_pid) - server_before
    figures["wrk_cpu"] = (children.ru_utime + children.ru_stime) - (
        children_before.ru_utime + children_before.ru_stime
    )
    # The rest of the machine: this script, idle servers, and any work outside this bench;
    # CPU the hypervisor gave to other machines counts here too.
    other = busy - busy_before + steal - steal_before
    figures["other_cpu"] = max(0.0, other - figures["server_cpu"] - figures["wrk_cpu"])
    return figures


def merged(runs: list[dict]) -> dict[str, float]:
    """Requests per second over all runs, and percentiles (ms) of all their requests: each
    run's grid point stands for its share of that run's requests."""
    masses: list[tuple[int, float]] = []
    for run in runs:
        below = 0.0
        for fraction, value in zip(GRID, run["grid"], strict=True):
            masses.append((value, run["requests"] * (fraction - below)))
            below = fraction
        masses.append((run["max"], run["requests"] * (1 - below)))
    masses.sort()
    total = sum(mass for _, mass in masses)

    def percentile(fraction: float) -> float:
        seen = 0.0
        for value, mass in masses:
            seen += mass
            if seen >= fraction * total - 1e-9:
                return value / 1000
        return masses[-1][0] / 1000

    elapsed = sum(run["elapsed"] for run in runs)
    return {
        "req/s": sum(run["requests"] for run in runs) / sum(r["duration_us"] / 1e6 for r in runs),
        "p50 (ms)": percentile(0.5),
        "p99 (ms)": percentile(0.99),
        "p99.9 (ms)": percentile(0.999),
        "server CPU per request (us)": sum(run["server_cpu"] for run in runs)
        / sum(run["requests"] for run in runs)
        * 1e6,
        "server CPU (cores)": sum(run["server_cpu"] for run in runs) / elapsed,
        "wrk CPU (cores)": sum(run["wrk_cpu"] for run in runs) / elapsed,
        "other CPU (cores)": sum(run["other_cpu"] for run in runs) / elapsed,
    }


@dataclass
class Running:
    server: Server
    process: subprocess.Popen
    url: str
    loaded: list[dict] = field(default_factory=list)
    single: list[dict] = field(default_factory=list)


def measure(selected: list[Server], folder: Path, options: argparse.Namespace) -> dict:
    """Start every server, warm each up, then measure them in interleaved rounds (the order
    turns each round), so that drift in the machine's speed weighs on each alike."""
    script = folder / "report.lua"
    script.write_text(WRK_SCRIPT)
    many = (options.threads, options.connections)
    running: list[Running] = []
    try:
        for server in selected:
            print(f"starting {server.name}...", file=sys.stderr, flush=True)
            port = free_port()
            process = start(server, folder, port)
            running.append(Running(server, process, f"http://127.0.0.1:{port}/"))
            status, body = get(running[-1].url)
            if status != 200 or body != HELLO:
                raise SystemExit(f"FAIL: {server.name} answered {status} {body[:200]!r}")
            wrk(running[-1].url, *many, options.warmup, script, process.pid)
        rounds = options.rounds
        for index in range(rounds):
            print(f"round {index + 1} of {rounds}...", file=sys.stderr, flush=True)
            for one in running[index % len(running) :] + running[: index % len(running)]:
                pid = one.process.pid
                one.loaded.append(wrk(one.url, *many, options.duration / rounds, script, pid))
        for index in range(rounds):
            for one in running[index % len(running) :] + running[: index % len(running)]:
                pid = one.process.pid
                one.single.append(wrk(one.url, 1, 1, options.single_duration / rounds, script, pid))
    finally:
        for one in running:
            stop(one.process)
    rows = {}
    for one in running:
        single = merged(one.single)
        rows[one.server.name] = {
            **merged(one.loaded),
            "1 conn: req/s": single["req/s"],
            "1 conn: p50 (ms)": single["p50 (ms)"],
            "1 conn: p99 (ms)": single["p99 (ms)"],
        }
        rows[one.server.name]["rounds"] = [
            run["requests"] / (run["duration_us"] / 1e6) for run in one.loaded
        ]
    return rows


def print_table(rows: dict[str, dict[str, float]]) -> None:
    """Markdown, with each figure's ratio to functions-framework's in the same run."""
    reference = rows.get(REFERENCE)
    metrics = list(next(iter(rows.values())))
    print("| server | " + " | ".join(metrics) + " |")
    print("|---|" + "---|" * len(metrics))
    for name, row in rows.items():
        cells = []
        for metric in metrics:
            value = row[metric]
            text = f"{value:.0f}" if metric.endswith(("req/s", "(us)")) else f"{value:.2f}"
            if reference and reference[metric] and "(cores)" not in metric:
                text += f" ({value / reference[metric]:.2f}x)"
            cells.append(text)
        print(f"| {name} | " + " | ".join(cells) + " |")


def versions(functions_framework: str) -> str:
    ff_python = Path(functions_framework).parent / "python"
    names = ["functions-framework", "gunicorn", "flask"]
    code = "import importlib.metadata as m, sys; print(*(m.version(n) for n in sys.argv[1:]))"
    found = subprocess.run(
        [str(ff_python), "-c", code, *names], capture_output=True, text=True, check=False
    ).stdout.split()
    from importlib.metadata import version

    ours = {name: version(name) for name in ("ort-core", "uvicorn", "uvloop", "httptools")}
    node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False)
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    return ", ".join(
        [f"Python {platform.python_version()}"]
        + [f"{name} {value}" for name, value in zip(names, found, strict=False)]
        + [f"{name} {value}" for name, value in ours.items()]
        + [f"node {node.stdout.strip()}", " ".join(wrk_version.stdout.split()[:2])]
    )


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=12, help="measured, seconds per row")
    parser.add_argument("--rounds", type=int, default=6, help="interleaved blocks per row")
    parser.add_argument("--warmup", type=float, default=3, help="warm-up run, seconds")
    parser.add_argument("--single-duration", type=float, default=6, help="1 connection, seconds")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2, help="wrk's threads")
    parser.add_argument(
        "--functions-framework",
        default=str(Path(sys.prefix) / "ff" / "bin" / "functions-framework"),
        help="its command, in a virtualenv of its own (it pins cloudevents < 2, ORT needs 2)",
    )
    parser.add_argument("--only", help="rows whose name contains one of these, e.g. Node,ort")
    options = parser.parse_args()
    options.functions_framework = os.path.abspath(options.functions_framework)  # servers' cwd
    if shutil.which("wrk") is None:
        raise SystemExit("FAIL: wrk is missing: apt-get install wrk (make bench does)")
    if not Path(options.functions_framework).exists():
        raise SystemExit(f"FAIL: no {options.functions_framework}: make bench installs it")

    selected = servers(options.functions_framework)
    if options.only:
        wanted = options.only.split(",")
        selected = [s for s in selected if s.name == REFERENCE or any(w in s.name for w in wanted)]
    folder = Path(tempfile.mkdtemp(prefix="ort-bench-gateway-"))
    for name, text in FILES.items():
        (folder / name).write_text(text)
    try:
        rows = measure(selected, folder, options)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    per_round = {name: row.pop("rounds") for name, row in rows.items()}

    cores = os.cpu_count() or 1
    machine = f"{platform.machine()}, {cores} cores ({cpu_model()})"
    print(
        f"\n{time.strftime('%Y-%m-%d %H:%M')}, {machine}, "
        f"wrk -t{options.threads} -c{options.connections} for {options.duration:g} s per row "
        f"after {options.warmup:g} s of warm-up, then -t1 -c1 for {options.single_duration:g} s, "
        f"each in {options.rounds} interleaved rounds; wrk runs on the same {cores} cores as "
        "the servers\n"
    )
    print_table(rows)
    other = max(row["other CPU (cores)"] for row in rows.values())
    if other > 0.2:
        print(
            f"\nother work took up to {other:.2f} cores of the {cores} meanwhile (other CPU): "
            "the figures are lower and noisier than on a quiet machine"
        )
    print(
        f"\nfunctions-framework's defaults: gunicorn, 1 worker process, {cores * 4} threads "
        f"(4 x {cores} CPUs, gthread), timeout 0; ort serve: uvicorn (uvloop, httptools), "
        f"ORT_CONCURRENCY={cores} pipelines (the CPU count)\n"
        + versions(options.functions_framework)
    )
    if REFERENCE in rows and TARGET_ROW in rows:
        ratio = rows[TARGET_ROW]["req/s"] / rows[REFERENCE]["req/s"]
        verdict = "PASS" if ratio >= TARGET_RATIO else "FAIL"
        rounds = zip(per_round[TARGET_ROW], per_round[REFERENCE], strict=True)
        print("\nthe same ratio per round: " + ", ".join(f"{a / b:.2f}x" for a, b in rounds))
        print(
            f"ort serve (Python) throughput >= {TARGET_RATIO:g}x functions-framework: "
            f"{ratio:.2f}x {verdict}"
        )


if __name__ == "__main__":
    main()
