"""Least privilege, ORT_DENO_PERMISSIONS, DENO_DIR, the prepared cache and the binary."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from ort_deno import launch, plugin, sandbox

from ort_core import FunctionConfig

if TYPE_CHECKING:
    from conftest import Function

READER = """
export const handler = (event: { path: string }) => Deno.readTextFileSync(event.path);
export const env = (event: { name: string }) => Deno.env.get(event.name) ?? null;
export const net = async () => (await Deno.connect({ hostname: "127.0.0.1", port: 8080 })).close();
export const write = (event: { path: string }) => Deno.writeTextFileSync(event.path, "x");
"""


def test_a_file_in_the_task_root_can_be_read(function: Function) -> None:
    function.write("reader.ts", READER)
    data = function.write("data/greeting.txt", "hello from the task root\n")
    pipeline = function.start("reader.handler")

    assert json.loads(function.invoke(pipeline, {"path": str(data)})) == str(data.read_text())
    assert json.loads(function.invoke(pipeline, {"path": "data/greeting.txt"})).startswith("hello")


def test_reading_outside_the_task_root_is_denied(function: Function) -> None:
    function.write("reader.ts", READER)
    pipeline = function.start("reader.handler")

    error = function.invoke_error(pipeline, {"path": "/etc/passwd"})

    assert error.error_type in ("NotCapable", "PermissionDenied")
    assert "/etc/passwd" in error.message


def test_writing_network_and_other_variables_are_denied(function: Function) -> None:
    function.write("reader.ts", READER)
    write = function.invoke_error(function.start("reader.write"), {"path": "out.txt"})
    net = function.invoke_error(function.start("reader.net"), {})
    env = function.start("reader.env")
    home = function.invoke_error(env, {"name": "HOME"})

    for error in (write, net, home):
        assert error.error_type in ("NotCapable", "PermissionDenied"), error
    assert not (function.root / "out.txt").exists()
    assert json.loads(function.invoke(env, {"name": "_HANDLER"})) == "reader.env"
    assert json.loads(function.invoke(env, {"name": "LAMBDA_TASK_ROOT"})) == str(function.root)


def test_ort_deno_permissions_adds_to_the_defaults(
    function: Function, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    function.write("reader.ts", READER)
    elsewhere = tmp_path / "shared"
    elsewhere.mkdir()
    (elsewhere / "config.txt").write_text("shared config")
    monkeypatch.setenv(
        "ORT_DENO_PERMISSIONS", f"--allow-env=ORT_TEST_COLOUR,--allow-read={elsewhere}"
    )
    monkeypatch.setenv("ORT_TEST_COLOUR", "teal")
    reader = function.start("reader.handler")
    env = function.start("reader.env")

    assert json.loads(function.invoke(env, {"name": "ORT_TEST_COLOUR"})) == "teal"
    assert json.loads(function.invoke(env, {"name": "AWS_REGION"})) is None  # still allowed
    assert json.loads(function.invoke(reader, {"path": str(elsewhere / "config.txt")})) == (
        "shared config"
    )
    assert function.invoke(reader, {"path": str(function.write("own.txt", "own"))}) == b'"own"'


def test_permission_flags_merge_lists_and_pass_other_flags() -> None:
    config = FunctionConfig(handler="app.handler", task_root="/var/task")

    flags = sandbox.permission_flags(
        config, "--allow-net,--allow-env=A,B -R=/data,/more --cached-only", "/tmp/w.sock"
    )

    assert flags == [
        f"--allow-read=/var/task,{sandbox.HERE},/tmp/w.sock,/data,/more",
        f"--allow-env={','.join(sandbox.ENV_NAMES)},ORT_WORKER_SOCKET,A,B",
        "--allow-write=/tmp/w.sock",
        "--allow-net",
        "--cached-only",
    ]
    assert sandbox.permission_flags(config, "--allow-read --allow-read=/x")[0] == "--allow-read"
    assert sandbox.permission_flags(config) == [
        f"--allow-read=/var/task,{sandbox.HERE}",
        f"--allow-env={','.join(sandbox.ENV_NAMES)}",
    ]


def test_typescript_is_claimed_without_a_language_but_javascript_stays_node(
    tmp_path: Path,
) -> None:
    for name in ("a.ts", "b.tsx", "c.mts", "d.js", "e.mjs"):
        (tmp_path / name).write_text("export const handler = () => 1;\n")

    def claims(handler: str, language: str | None = None) -> bool:
        config = FunctionConfig(handler=handler, task_root=str(tmp_path), language=language)
        return (
            launch.handler_file(
                config, launch.CLAIMED_EXTENSIONS if language is None else launch.EXTENSIONS
            )
            is not None
        )

    assert [claims(f"{m}.handler") for m in "abcde"] == [True, True, True, False, False]
    assert claims("d.handler", "deno") and claims("e.handler", "deno")
    config = FunctionConfig(handler="d.handler", task_root=str(tmp_path), language="node")
    assert plugin.launch_language(config) is None
    assert plugin.launch_language(config._replace(language=None)) is None


# -- DENO_DIR -----------------------------------------------------------------------------


def deno_dir_of(pipeline: object) -> str:
    bridge = pipeline.bridge  # type: ignore[attr-defined]
    env = bridge.env if hasattr(bridge, "env") else dict(bridge.spec.env)
    return env["DENO_DIR"]


def test_deno_dir_is_under_tmp_by_default_and_holds_the_compiled_handler(
    function: Function,
) -> None:
    function.write("hello.ts", "export const handler = (): string => 'hi';\n")
    pipeline = function.start("hello.handler")

    directory = deno_dir_of(pipeline)

    assert directory.startswith("/tmp/")
    assert os.access(directory, os.W_OK)
    compiled = Path(directory, "gen", "file", *function.root.parts[1:], "hello.ts.js")
    assert compiled.is_file()


def test_ort_deno_dir_sets_the_cache(
    function: Function, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ORT_DENO_DIR", str(tmp_path / "cache"))
    function.write("hello.ts", "export const handler = (): string => 'hi';\n")
    pipeline = function.start("hello.handler")

    assert function.invoke(pipeline, {}) == b'"hi"'
    assert deno_dir_of(pipeline) == str(tmp_path / "cache")
    assert (tmp_path / "cache" / "gen").is_dir()


def test_a_prepared_cache_seeds_an_empty_deno_dir(
    function: Function, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    function.write("hello.ts", "export const handler = (): string => 'prepared';\n")
    prepared = tmp_path / "prepared"
    subprocess.run(
        [sys.executable, "-m", "ort_deno", "cache", str(prepared), "--handler", "hello.handler"],
        cwd=function.root,
        check=True,
        capture_output=True,
    )
    compiled = Path(prepared, "gen", "file", *function.root.parts[1:], "hello.ts.js")
    assert compiled.is_file()
    for ort_file in (sandbox.WORKER, sandbox.RUNNER):
        assert Path(prepared, "gen", "file", *Path(ort_file + ".js").parts[1:]).is_file()
    for path in [*prepared.rglob("*"), prepared]:  # read-only, as in a Lambda layer
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    monkeypatch.setenv("ORT_DENO_CACHE", str(prepared))
    monkeypatch.setenv("ORT_DENO_DIR", str(tmp_path / "tmp-cache"))
    try:
        pipeline = function.start("hello.handler")

        seeded = tmp_path / "tmp-cache"
        compiled = Path(seeded, "gen", "file", *function.root.parts[1:], "hello.ts.js")
        assert compiled.is_file() and os.access(compiled, os.W_OK)
        assert os.access(seeded, os.W_OK)
        assert function.invoke(pipeline, {}) == b'"prepared"'
    finally:
        for path in [prepared, *prepared.rglob("*")]:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)


def test_a_deno_dir_in_use_is_not_overwritten(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    prepared = tmp_path / "prepared"
    (prepared / "gen").mkdir(parents=True)
    (prepared / "gen" / "stale").write_text("prepared")
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "mine").write_text("mine")
    monkeypatch.setenv("ORT_DENO_CACHE", str(prepared))
    monkeypatch.setenv("ORT_DENO_DIR", str(tmp_path / "cache"))

    assert sandbox.deno_dir() == str(tmp_path / "cache")
    assert sorted(os.listdir(tmp_path / "cache")) == ["mine"]


# -- the binary ---------------------------------------------------------------------------


def test_the_binary_is_ort_deno_binary_else_path_else_the_pypi_package(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import deno

    monkeypatch.setenv("PATH", str(tmp_path))
    assert sandbox.deno_binary() == deno.find_deno_bin()
    on_path = tmp_path / "deno"
    on_path.write_text("#!/bin/sh\n")
    on_path.chmod(0o755)
    assert sandbox.deno_binary() == str(on_path)
    monkeypatch.setenv("ORT_DENO_BINARY", "/opt/deno/bin/deno")
    assert sandbox.deno_binary() == "/opt/deno/bin/deno"


THREADS_FINDING_THE_BINARY = """
import threading
from ort_deno.sandbox import deno_binary

barrier = threading.Barrier(8)
found = []

def find():
    barrier.wait()
    try:
        found.append(deno_binary())
    except Exception as exc:
        found.append(repr(exc))

threads = [threading.Thread(target=find) for _ in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(sorted(set(found)))
"""


def test_pipelines_starting_at_once_all_find_the_pypi_binary(tmp_path: Path) -> None:
    """`ort serve` starts its pipelines on parallel threads; the deno package's lookup reads
    sysconfig, whose first use is not thread-safe (a TypeError in 18 runs of 20)."""
    import deno

    expected = [deno.find_deno_bin()]
    for _ in range(5):  # each in a fresh interpreter: sysconfig not yet initialised
        result = subprocess.run(
            [sys.executable, "-c", THREADS_FINDING_THE_BINARY],
            env={"PATH": str(tmp_path)},  # no deno on PATH: the PyPI package's
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.stdout == f"{expected}\n", result.stdout + result.stderr


def test_a_missing_binary_is_an_init_error(
    function: Function, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    function.write("hello.ts", "export const handler = () => 1;\n")
    monkeypatch.setenv("ORT_DENO_BINARY", str(tmp_path / "no-deno-here"))

    error = function.start_error("hello.handler")

    assert error.error_type == "Runtime.InvalidEntrypoint"
    assert "no-deno-here" in error.message
