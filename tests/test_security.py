"""The defences docs/security.md names that no other test file proves: no shell command strings,
private sockets, and secrets that never reach the log."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import time
from pathlib import Path

import pytest
from conftest import PYTHON, clean_environ, descendants
from faults.harness import Runtime, settled

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [ROOT / "ort_core", *sorted((ROOT / "plugins").glob("ort_*/ort_*"))]
# Ways to hand a string to a shell, in Python and in the bridges' JavaScript.
SHELL = re.compile(
    r"shell\s*=\s*True|os\.system\(|os\.popen\(|subprocess\.getoutput|getstatusoutput"
    r"|child_process|execSync|Deno\.Command\(\s*['\"](?:ba)?sh['\"]"
)


def source_files() -> list[Path]:
    files = [
        path
        for folder in SOURCES
        for pattern in ("*.py", "*.cjs", "*.js", "*.mjs", "*.ts")
        for path in folder.rglob(pattern)
        if "build" not in path.parts and "__pycache__" not in path.parts
    ]
    assert len(files) > 30, files  # the scan found the sources
    return files


def test_no_shell_command_strings_anywhere_in_ort_or_its_plugins():
    """Every process ORT starts gets an argument list: no event, header or name ever reaches
    a shell's parser."""
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in source_files()
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if SHELL.search(line) and not line.lstrip().startswith(("#", "//", "*"))
    ]
    assert found == []


def mode(path: str) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def worker_socket(pid: int) -> str:
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    for entry in environ:
        if entry.startswith(b"ORT_WORKER_SOCKET="):
            return entry.partition(b"=")[2].decode()
    raise AssertionError("no ORT_WORKER_SOCKET in the worker's environment")


@pytest.mark.parametrize("bridge", ["node", "python-subprocess"])
def test_worker_sockets_are_in_a_directory_only_the_runtimes_user_can_enter(bridge, tmp_path):
    """The first worker (started early by ``ort bootstrap``) and its replacement after a
    crash: each socket is 0600 in a 0700 directory of ORT's user, never loose in /tmp."""
    shared = tmp_path / "shared-tmp"
    shared.mkdir(mode=0o777)
    shared.chmod(0o1777)  # like /tmp
    runtime = Runtime(bridge, tmp_path / "function", tmp_path / "runtime.log", TMPDIR=str(shared))
    try:
        sockets = []
        for _ in range(2):
            runtime.ok()
            (worker,) = descendants(runtime.pid)
            path = worker_socket(worker)
            directory = os.path.dirname(path)
            assert os.path.dirname(directory) == str(shared)
            assert mode(directory) == 0o700
            assert os.lstat(directory).st_uid == os.getuid()
            assert stat.S_ISDIR(os.lstat(directory).st_mode)  # not a link
            assert list(shared.iterdir()) == [Path(directory)], "one directory per runtime"
            sockets.append(path)
            runtime.error({"do": "exit"})  # the next event starts another worker
        assert sockets[0] != sockets[1]
    finally:
        runtime.stop()


def test_the_deno_cache_directory_is_private(tmp_path, monkeypatch):
    from ort_deno import sandbox

    monkeypatch.delenv("ORT_DENO_DIR", raising=False)
    monkeypatch.delenv("ORT_DENO_CACHE", raising=False)
    path = sandbox.deno_dir()
    assert mode(path) == 0o700
    assert os.stat(path).st_uid == os.getuid()


SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEY0001"
SESSION_TOKEN = "IQoJb3JpZ2luX2VjEXAMPLESESSIONTOKEN0002+Zz/Yy=="


@pytest.mark.parametrize("bridge", ["python-in-process", "node", "bash"])
def test_aws_credentials_never_reach_the_log(bridge, tmp_path):
    """ORT logs errors, stacks, refused posts and timeouts; none of them quotes the
    environment, so Lambda's credentials stay out of CloudWatch whatever fails."""
    runtime = Runtime(
        bridge,
        tmp_path / "function",
        tmp_path / "runtime.log",
        AWS_ACCESS_KEY_ID="AKIAEXAMPLEKEY000003",
        AWS_SECRET_ACCESS_KEY=SECRET_KEY,
        AWS_SESSION_TOKEN=SESSION_TOKEN,
    )
    try:
        runtime.ok()
        for fault in ("raise", "oom", "big"):
            runtime.error({"do": fault})
        runtime.error(b"{not json")
        if bridge != "python-in-process":
            runtime.error({"do": "exit"})
            runtime.error({"do": "hang"}, deadline_ms=1500)
        request_id = runtime.api.send({}, fault="post-500")
        settled(lambda: request_id in runtime.log, True)
        runtime.ok()
    finally:
        runtime.stop()
    log = runtime.log
    assert ("Runtime API refused" in log and "Traceback" in log) or bridge != "python-in-process"
    for secret in (SECRET_KEY, SESSION_TOKEN, "AKIAEXAMPLEKEY000003"):
        assert secret not in log


def test_a_jwt_and_aws_credentials_never_reach_the_gateways_log(tmp_path):
    """``ort serve`` for a private function, with Lambda-style credentials in its environment:
    accepted, refused and failing requests log neither the token nor the credentials."""
    import httpx
    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    now = int(time.time())
    claims = {"exp": now + 600, "application_claim": [{"namespace_id": "ns-1"}]}
    good = jwt.encode(claims, key, algorithm="RS256")
    expired = jwt.encode({**claims, "exp": now - 60}, key, algorithm="RS256")
    folder = tmp_path / "function"
    folder.mkdir()
    (folder / "app.py").write_text(
        "def handler(event, context):\n"
        "    if event['path'] == '/fail':\n"
        "        raise RuntimeError('failing on purpose')\n"
        "    return {'headers': sorted(event['headers'])}\n"
    )
    with socket_port() as port:
        pass
    log = tmp_path / "serve.log"
    server = subprocess.Popen(
        [
            *(PYTHON, "-m", "ort_core", "serve", "--handler", "app.handler"),
            *("--host", "127.0.0.1", "--port", str(port), "--concurrency", "1"),
        ],
        cwd=folder,
        env=clean_environ(
            ORT_SIGNATURE="",
            SCW_PUBLIC_KEY=pem,
            SCW_NAMESPACE_ID="ns-1",
            AWS_SECRET_ACCESS_KEY=SECRET_KEY,
            AWS_SESSION_TOKEN=SESSION_TOKEN,
            LAMBDA_TASK_ROOT=str(folder),
        ),
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=30) as client:
            wait_ready(client, server)
            assert client.get("/", headers={"SCW-Functions-Token": good}).status_code == 200
            assert client.get("/fail", headers={"SCW-Functions-Token": good}).status_code == 500
            assert client.get("/", headers={"SCW-Functions-Token": expired}).status_code == 401
            assert client.get("/", headers={"SCW_FUNCTIONS_TOKEN": "x.y.z"}).status_code == 401
    finally:
        server.terminate()
        server.wait(timeout=15)
    text = log.read_text()
    assert "failing on purpose" in text  # the log was written
    for secret in (good, expired, good.rpartition(".")[2], SECRET_KEY, SESSION_TOKEN):
        assert secret not in text


class socket_port:
    """A free port on 127.0.0.1 (released at once, for the server to take)."""

    def __enter__(self) -> int:
        import socket

        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        return self.socket.getsockname()[1]

    def __exit__(self, *exc: object) -> None:
        self.socket.close()


def wait_ready(client, server: subprocess.Popen, within: float = 30) -> None:
    import httpx

    limit = time.monotonic() + within
    while time.monotonic() < limit:
        assert server.poll() is None, "the server exited"
        try:
            if client.get("/_ort/ready").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError("the server never became ready")
