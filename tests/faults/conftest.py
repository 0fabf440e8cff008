"""One runtime per bridge for a whole fault module: the point of most faults is that the same
runtime answers the next event, so they share it (and the suite stays fast)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from faults.harness import Runtime


@pytest.fixture(scope="module")
def runtime_for(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Runtime]]:
    """``runtime_for(bridge)``: that bridge's runtime, started on first use and again when a
    test has ended it on purpose."""
    started: dict[str, Runtime] = {}
    every: list[Runtime] = []

    def get(bridge: str) -> Runtime:
        runtime = started.get(bridge)
        if runtime is None or runtime.process.poll() is not None:
            folder: Path = tmp_path_factory.mktemp(bridge)
            runtime = Runtime(bridge, folder / "function", folder / "runtime.log")
            started[bridge] = runtime
            every.append(runtime)
        return runtime

    yield get
    for runtime in every:
        runtime.stop()
