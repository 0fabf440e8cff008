"""Fixtures for ort-deno's tests: a task root, functions started through ORT's entry point
in either mode, real Deno processes, and a check that none outlives its test."""

from __future__ import annotations

import json
import os
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ort_core import Context, FunctionConfig, FunctionError
from ort_core.pipeline import Pipeline
from ort_core.startup import start_function

ENVIRON = {"ORT_PLUGINS": "ort-deno"}
MODES = ("persistent", "per-invocation")


class Function:
    """A task root in tmp_path: write handler files, start them, invoke them."""

    def __init__(self, root: Path, mode: str) -> None:
        self.root = root
        self.mode = mode
        self.pipelines: list[Pipeline] = []

    def write(self, name: str, source: str) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
        return path

    def config(self, handler: str, language: str | None = "deno") -> FunctionConfig:
        return FunctionConfig(
            handler=handler,
            task_root=str(self.root),
            language=language,
            function_name="fn",
            function_version="$LATEST",
            memory_limit_in_mb="128",
        )

    def start(self, handler: str, language: str | None = "deno") -> Pipeline:
        pipeline = start_function(self.config(handler, language), environ=ENVIRON)
        self.pipelines.append(pipeline)
        return pipeline

    def start_error(self, handler: str, language: str | None = "deno") -> FunctionError:
        with pytest.raises(FunctionError) as raised:
            self.start(handler, language)
        return raised.value

    @staticmethod
    def invoke(
        pipeline: Pipeline, event: object, request_id: str = "req-1", timeout: float = 0
    ) -> bytes:
        body = event if isinstance(event, bytes) else json.dumps(event).encode()
        deadline = int((time.time() + timeout) * 1000) if timeout else 0
        return pipeline.invoke(body, Context(request_id, deadline, pipeline.bridge.config))

    @staticmethod
    def invoke_error(pipeline: Pipeline, event: object, timeout: float = 0) -> FunctionError:
        with pytest.raises(FunctionError) as raised:
            Function.invoke(pipeline, event, timeout=timeout)
        return raised.value


def child_pids() -> set[int]:
    """This process's children, from /proc (empty where there is no /proc)."""
    pids: set[int] = set()
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return pids
    for task in tasks:
        try:
            with open(f"/proc/self/task/{task}/children") as children:
                pids.update(int(pid) for pid in children.read().split())
        except OSError:
            pass
    return pids


@pytest.fixture(autouse=True)
def deno_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ORT_DENO_* setting of the caller's leaks into a test."""
    for name in list(os.environ):
        if name.startswith("ORT_DENO_") or name in ("ORT_LANGUAGE", "_HANDLER"):
            monkeypatch.delenv(name)


def _function(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str) -> Iterator[Function]:
    monkeypatch.setenv("ORT_DENO_MODE", mode)
    before = child_pids()
    fn = Function(tmp_path / "task", mode)
    fn.root.mkdir()
    yield fn
    for pipeline in fn.pipelines:
        pipeline.close()
    deadline = time.monotonic() + 5
    while child_pids() - before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not child_pids() - before, "a Deno process outlived its test"


@pytest.fixture(params=MODES)
def function(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Function]:
    """A task root, in each mode in turn."""
    yield from _function(tmp_path, monkeypatch, request.param)


@pytest.fixture
def persistent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Function]:
    yield from _function(tmp_path, monkeypatch, "persistent")


@pytest.fixture
def per_invocation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Function]:
    yield from _function(tmp_path, monkeypatch, "per-invocation")
