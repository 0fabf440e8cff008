"""The soak run (`make soak`): many invocations with about 1% injected faults, through the
emulator (`ort emulate`, the Lambda Runtime API loop) and the gateway (`ort serve`, under
concurrent load), in every bridge at once. Not collected by pytest.

It prints what was sent, answered and lost (an injected fault answered with its error is
answered; lost must be 0), and the process count, descriptors and resident memory of each
server's process tree after warming up and at the end. Exit status 1 if anything was lost.

    .venv/bin/python tests/soak.py [--scale 1.0] [--clients 3]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE / "faults")]

import httpx  # noqa: E402
from conftest import PYTHON, clean_environ, descendants  # noqa: E402
from harness import IN_PROCESS, limits, write_function  # noqa: E402

# Invocations per bridge, per front end, at --scale 1: slower bridges get fewer (a Deno
# process per event costs about 100 ms); 10,000 in all.
PER_BRIDGE = {
    "python-in-process": 1600,
    "python-subprocess": 1000,
    "node": 1000,
    "deno-persistent": 800,
    "deno-per-invocation": 100,
    "bash": 500,
}
PLAN = {"emulate": PER_BRIDGE, "serve": PER_BRIDGE}
FAULT_EVERY = 100  # one event in a hundred is a fault
INVOKE = "/2015-03-31/functions/function/invocations"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def tree(pid: int) -> tuple[int, int, int]:
    """(processes, open descriptors, resident kB) of ``pid`` and everything under it."""
    pids = {pid, *descendants(pid)}
    fds = rss = 0
    for each in pids:
        try:
            fds += len(os.listdir(f"/proc/{each}/fd"))
            for line in Path(f"/proc/{each}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss += int(line.split()[1])
        except OSError:
            pass
    return len(pids), fds, rss


def faults_for(front: str, bridge: str) -> list[tuple[str, bytes, set]]:
    """(name, body, what answers it): the faults this bridge gets through this front end."""
    error_of_raise = "Runtime.ExitError" if bridge == "bash" else None  # a script's failure
    if front == "emulate":
        faults = [
            ("raise", b'{"do": "raise"}', {error_of_raise or "ValueError", "Error"}),
            ("exit", b'{"do": "exit"}', {"Runtime.ExitError"}),
            ("big", b'{"do": "big"}', {"Function.ResponseSizeTooLarge"}),
            ("malformed", b'{"do": ', {"Runtime.UnmarshalError"}),
        ]
        return faults
    faults = [("raise", b"", {502 if bridge == "bash" else 500}), ("too-large", b"", {413})]
    if bridge != IN_PROCESS:  # exiting would end `ort serve` itself
        faults.append(("exit", b"", {502}))
    return faults


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.problems: list[str] = []

    def add(self, key: str, problem: str | None = None) -> None:
        with self.lock:
            self.counts[key] += 1
            if problem and len(self.problems) < 20:
                self.problems.append(problem)


def emulate_stream(port: int, bridge: str, count: int, tally: Tally) -> None:
    faults = faults_for("emulate", bridge)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
        for number in range(count):
            fault = (
                faults[number // FAULT_EVERY % len(faults)] if number % FAULT_EVERY == 50 else None
            )
            body = fault[1] if fault else json.dumps({"n": number}).encode()
            tally.add("sent")
            if fault:
                tally.add("faults")
            try:
                response = client.post(INVOKE, content=body)
                answer = response.json()
            except (httpx.HTTPError, ValueError) as exc:
                tally.add("lost", f"emulate {bridge} #{number}: {exc!r}")
                continue
            failed = response.headers.get("x-amz-function-error")
            if fault and failed and answer.get("errorType") in fault[2]:
                tally.add("answered")
            elif not fault and not failed and response.status_code == 200 and answer.get("ok"):
                tally.add("answered")
            else:
                tally.add(
                    "lost", f"emulate {bridge} #{number} {fault and fault[0]}: {answer!r:.300}"
                )


def serve_stream(
    port: int, bridge: str, count: int, start: int, step: int, tally: Tally, max_body: int
) -> None:
    faults = faults_for("serve", bridge)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
        for number in range(start, count, step):
            fault = (
                faults[number // FAULT_EVERY % len(faults)] if number % FAULT_EVERY == 50 else None
            )
            tally.add("sent")
            if fault:
                tally.add("faults")
            try:
                if fault and fault[0] == "too-large":
                    response = client.post("/", content=b"x" * (max_body + 1))
                elif fault:
                    response = client.post(f"/?do={fault[0]}", content=b"{}")
                else:
                    response = client.post(f"/?n={number}", content=b'{"n": 1}')
            except httpx.HTTPError as exc:
                tally.add("lost", f"serve {bridge} #{number}: {exc!r}")
                continue
            if fault and response.status_code in fault[2]:
                tally.add("answered")
            elif not fault and response.status_code == 200 and response.json().get("ok"):
                tally.add("answered")
            else:
                tally.add(
                    "lost",
                    f"serve {bridge} #{number} {fault and fault[0]}: "
                    f"{response.status_code} {response.text[:300]}",
                )


def start(front: str, bridge: str, work: Path, concurrency: int) -> tuple[subprocess.Popen, int]:
    folder = work / front / bridge
    env = write_function(folder, bridge)
    port = free_port()
    if front == "emulate":
        command = [PYTHON, "-m", "ort_core", "emulate", "--port", str(port)]
    else:
        command = [PYTHON, "-m", "ort_core", "serve", "--host", "127.0.0.1", "--port", str(port)]
        command += ["--concurrency", str(concurrency)]
    command += ["--handler", env["_HANDLER"]]
    process = subprocess.Popen(
        command,
        cwd=folder,
        env=clean_environ(SCW_PUBLIC="true", **env),  # raw events; a public function
        stdout=(work / f"{front}-{bridge}.log").open("wb"),
        stderr=subprocess.STDOUT,
        preexec_fn=limits(None),
    )
    return process, port


def wait_up(front: str, port: int, process: subprocess.Popen, log: Path) -> None:
    limit = time.monotonic() + 60
    while time.monotonic() < limit:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise SystemExit(f"{front} exited at start: {process.returncode}\n{tail}")
        try:
            if front == "serve":
                if httpx.get(f"http://127.0.0.1:{port}/_ort/ready").status_code == 200:
                    return
            else:
                httpx.post(f"http://127.0.0.1:{port}{INVOKE}", content=b"{}", timeout=60)
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit(f"{front} on port {port} never became ready")


def warm(front: str, port: int) -> None:
    """A few events first, so that the figures at start count warm workers and pools."""
    url = f"http://127.0.0.1:{port}" + (INVOKE if front == "emulate" else "/")
    for _ in range(20):
        httpx.post(url, content=b"{}", timeout=60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every count")
    parser.add_argument("--clients", type=int, default=3, help="client threads per gateway")
    parser.add_argument("--concurrency", type=int, default=2, help="pipelines per gateway")
    arguments = parser.parse_args()
    max_body = 6 * 1024 * 1024
    tally = Tally()
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ort-soak-") as temporary:
        work = Path(temporary)
        for front, plan in PLAN.items():
            servers = {bridge: start(front, bridge, work, arguments.concurrency) for bridge in plan}
            try:
                for bridge, (process, port) in servers.items():
                    wait_up(front, port, process, work / f"{front}-{bridge}.log")
                    warm(front, port)
                before = {bridge: tree(process.pid) for bridge, (process, _) in servers.items()}
                threads = []
                for bridge, (_, port) in servers.items():
                    count = max(1, int(plan[bridge] * arguments.scale))
                    if front == "emulate":
                        threads.append(
                            threading.Thread(
                                target=emulate_stream, args=(port, bridge, count, tally)
                            )
                        )
                    else:
                        clients = arguments.clients
                        threads += [
                            threading.Thread(
                                target=serve_stream,
                                args=(port, bridge, count, start, clients, tally, max_body),
                            )
                            for start in range(clients)
                        ]
                phase = time.monotonic()
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                after = {bridge: tree(process.pid) for bridge, (process, _) in servers.items()}
            finally:
                for process, _ in servers.values():
                    process.terminate()
                    try:
                        process.wait(timeout=15)
                    except subprocess.TimeoutExpired:
                        process.kill()
                        process.wait()
            print(f"\n{front}: {time.monotonic() - phase:.1f} s")
            print(f"  {'bridge':22} {'processes':>11} {'descriptors':>13} {'RSS MB':>15}")
            for bridge in plan:
                (p0, f0, r0), (p1, f1, r1) = before[bridge], after[bridge]
                print(
                    f"  {bridge:22} {p0:>4} -> {p1:<4} {f0:>5} -> {f1:<5} "
                    f"{r0 / 1024:>6.1f} -> {r1 / 1024:<6.1f}"
                )
    counts = tally.counts
    print(
        f"\nsent {counts['sent']}, answered {counts['answered']}, lost {counts['lost']} "
        f"(faults injected: {counts['faults']}); {time.monotonic() - began:.0f} s in all"
    )
    for problem in tally.problems:
        print("  lost:", problem)
    return 1 if counts["lost"] or counts["sent"] != counts["answered"] else 0


if __name__ == "__main__":
    sys.exit(main())
