"""What executable middlewares cost per invocation: none, one and five, per event and persistent.

One in-process Python handler (an echo) behind ``SLSMIDDLEWARES``, from the same minimal
Runtime API on 127.0.0.1. Every middleware passes the payload through: per event, bash's
``cat >/dev/null`` and a Python script that reads stdin, both printing nothing; persistent, a
bash and a Python loop answering ``{}`` to each line. Each is called twice per invocation
(``before`` and ``after``). Rows are compared with the handler alone; a persistent row's added
cost is compared with the per-event row of its language and count.

    python bench/middlewares.py [--invocations 300] [--rounds 6]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from harness import ROOT, Runtime, base_environment, interleaved_warm_latencies, percentile

HANDLER = "def handler(event, context):\n    return event\n"
EVENT = {"name": "x" * 40}

# The pass-through middlewares. Python ones name this interpreter in their shebang: a
# `/usr/bin/env python3` found through a shim (pyenv's is a bash script) would add its own cost.
MIDDLEWARES = {
    ("per-event", "bash"): "#!/bin/bash\ncat >/dev/null\n",
    ("per-event", "python"): f"#!{sys.executable}\nimport sys\n\nsys.stdin.buffer.read()\n",
    ("persistent", "bash"): (
        "#!/bin/bash\n# ort-middleware: persistent\nwhile IFS= read -r request; do\n"
        "  echo '{}'\ndone\n"
    ),
    ("persistent", "python"): (
        f"#!{sys.executable}\n# ort-middleware: persistent\nimport sys\n\n"
        "for request in sys.stdin:\n    sys.stdout.write('{}\\n')\n    sys.stdout.flush()\n"
    ),
}
COUNTS = (1, 5)
REFERENCE = "no middleware"


def write_middlewares(folder: Path) -> None:
    """Five copies of each, ``per-event-bash-1`` to ``-5``: five distinct middlewares."""
    for (kind, language), source in MIDDLEWARES.items():
        for number in range(1, max(COUNTS) + 1):
            path = folder / f"{kind}-{language}-{number}"
            path.write_text(source)
            path.chmod(0o755)


def runtimes(folder: str, middleware_dir: str) -> dict[str, tuple[Runtime, int]]:
    """Each row's runtime and how many middlewares it runs."""
    env = base_environment(
        _HANDLER="app.handler",
        LAMBDA_TASK_ROOT=folder,
        ORT_PYTHON=sys.executable,
        ORT_LANGUAGE="python",
        ORT_PLUGINS="ort-python",
        ORT_MIDDLEWARE_DIR=middleware_dir,
    )
    bootstrap = [str(ROOT / "bin" / "bootstrap")]
    rows = {REFERENCE: (Runtime(REFERENCE, bootstrap, env, folder), 0)}
    for count in COUNTS:
        for language in ("bash", "python"):
            for kind in ("per-event", "persistent"):
                name = f"{count} {kind} {language}"
                names = ",".join(f"{kind}-{language}-{n}" for n in range(1, count + 1))
                runtime = Runtime(name, bootstrap, {**env, "SLSMIDDLEWARES": names}, folder)
                rows[name] = (runtime, count)
    return rows


def print_rows(rows: dict[str, dict[str, float]]) -> None:
    """p50 and p99 with their ratio to the handler alone; the added p50 (minus the handler
    alone's), per middleware, and a persistent row's against the per-event row's."""
    reference = rows[REFERENCE]
    print(
        "| middlewares | warm p50 (ms) | warm p99 (ms) | added p50 (ms) "
        "| added per middleware (ms) | added vs per-event |"
    )
    print("|---|---|---|---|---|---|")
    for name, row in rows.items():
        p50 = f"{row['p50']:.2f} ({row['p50'] / reference['p50']:.2f}x)"
        p99 = f"{row['p99']:.2f} ({row['p99'] / reference['p99']:.2f}x)"
        if name == REFERENCE:
            print(f"| {name} | {p50} | {p99} | | | |")
            continue
        added = row["p50"] - reference["p50"]
        per_event = rows[name.replace("persistent", "per-event")]
        versus = added / (per_event["p50"] - reference["p50"])
        print(
            f"| {name} | {p50} | {p99} | {added:.2f} | {added / row['count']:.2f} | {versus:.3f}x |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invocations", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=6)
    options = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="ort-bench-"))
    (folder / "app.py").write_text(HANDLER)
    (folder / "middlewares").mkdir()
    write_middlewares(folder / "middlewares")
    selected = runtimes(str(folder), str(folder / "middlewares"))
    # Five per-event Python middlewares start ten interpreters per invocation: fewer of those.
    slow = max(30, options.invocations // 5)
    invocations = {
        name: slow if count > 1 and "per-event" in name else options.invocations
        for name, (_, count) in selected.items()
    }
    latencies = interleaved_warm_latencies(
        [runtime for runtime, _ in selected.values()], EVENT, invocations, options.rounds
    )
    rows = {
        name: {
            "p50": percentile(latencies[name], 0.5),
            "p99": percentile(latencies[name], 0.99),
            "count": count,
        }
        for name, (_, count) in selected.items()
    }
    print_rows(rows)

    reference = rows[REFERENCE]["p50"]
    checks = []
    for language in ("bash", "python"):
        persistent = rows[f"1 persistent {language}"]["p50"] - reference
        per_event = rows[f"1 per-event {language}"]["p50"] - reference
        checks.append((language, persistent, per_event, persistent < per_event / 10))
    mark = "x" if all(passed for *_, passed in checks) else " "
    print(
        f"\n- [{mark}] a persistent middleware costs under a tenth of an executable one: "
        + "; ".join(
            f"{language} {persistent:.2f} ms against {per_event:.2f} ms "
            f"({persistent / per_event:.3f}x{'' if passed else ', FAILED'})"
            for language, persistent, per_event, passed in checks
        )
    )
    print(
        f"\n{options.invocations} warm invocations per row ({slow} for five per-event "
        f"middlewares) in {options.rounds} interleaved blocks; added cost = p50 minus the "
        f"handler alone's; python "
        f"{sys.version.split()[0]}"
    )
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
