"""Fixtures shared by the core's tests: function folders, clean environments, the peer API."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from runtime_api_peer import Peer, start_peer

PYTHON = sys.executable


def clean_environ(**extra: str) -> dict[str, str]:
    """os.environ without Lambda's and ORT's variables, plus ``extra``.

    ``ORT_SIGNATURE=raw`` unless ``extra`` says otherwise: most tests are about Lambda's own
    events, as AWS's runtime clients pass them (an empty value means ORT's default).
    """
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AWS_", "ORT_", "_HANDLER", "LAMBDA_", "_X_AMZN", "PYTHONUNBUF"))
    }
    env["ORT_SIGNATURE"] = "raw"
    env.update(extra)
    return {name: value for name, value in env.items() if value != "" or name != "ORT_SIGNATURE"}


@contextmanager
def bootstrap_on_its_own_peer(folder: Path, **env: str) -> Iterator[Peer]:
    """``ort bootstrap`` serving ``app.handler`` from ``folder`` on a Runtime API of its own (a
    killed runtime's /next must not take another's event); both end with the block."""
    peer = start_peer()
    process = subprocess.Popen(
        [PYTHON, "-m", "ort_core", "bootstrap"],
        env=clean_environ(
            AWS_LAMBDA_RUNTIME_API=peer.address,
            _HANDLER="app.handler",
            LAMBDA_TASK_ROOT=str(folder),
            **env,
        ),
    )
    try:
        yield peer
    finally:
        process.kill()
        process.wait()
        peer.close()


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (from /proc), zombies included."""
    found: set[int] = set()
    frontier = [pid]
    while frontier:
        for task in Path(f"/proc/{frontier.pop()}/task").glob("*"):
            try:
                kids = {int(child) for child in (task / "children").read_text().split()}
            except OSError:
                continue
            found |= kids
            frontier.extend(kids)
    return found


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for its reaper does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


@pytest.fixture
def function_dir(tmp_path: Path):
    """Write handler files: ``function_dir({"app.py": source})`` returns the folder."""

    def write(files: dict[str, str]) -> Path:
        for name, source in files.items():
            path = tmp_path / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(source))
        return tmp_path

    return write


def fake_distribution(folder: Path, name: str, module: str, source: str) -> Path:
    """Install-like files for a plugin distribution: importlib.metadata finds them on sys.path."""
    dist_info = folder / f"{name.replace('-', '_')}-1.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text(f"[ort]\n{module} = {module}\n")
    (folder / f"{module}.py").write_text(textwrap.dedent(source))
    return folder


@pytest.fixture
def peer() -> Iterator[Peer]:
    server = start_peer()
    yield server
    server.close()
