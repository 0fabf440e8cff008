"""How Deno runs: its binary, its cache (DENO_DIR) and its permissions.

Least privilege: Deno may read the task root, ORT's worker files and the preloads
(``ORT_PRELOAD``), read a short list of Lambda's variables, and, in persistent mode, use its
one Unix socket; nothing else unless ``ORT_DENO_PERMISSIONS`` says so.
"""

from __future__ import annotations

import _thread
import os

from ort_core.config import FunctionConfig
from ort_core.workers.prelaunch import WorkerSpec, configured_or_on_path, worker_environment

TYPE_CHECKING = False  # typing and collections.abc: not before the worker starts
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "worker.ts")
RUNNER = os.path.join(HERE, "runner.ts")
# The variables a handler may read by default: what Lambda says about the function, never
# its credentials (AWS_ACCESS_KEY_ID...). ORT_DENO_PERMISSIONS=--allow-env=NAME adds more.
ENV_NAMES = (
    "_HANDLER",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_LAMBDA_LOG_FORMAT",
    "AWS_LAMBDA_LOG_LEVEL",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "TZ",
    "LANG",
    "TRACEPARENT",  # the invocation's trace context, set by the worker while the handler runs
    "ORT_PRELOAD",  # read by the worker (docs/worker-protocol.md, "Preloads and spans")
)
# Deno's flags that take a list, and the short names of some of them.
LIST_FLAGS = frozenset(
    f"--{kind}-{what}"
    for kind in ("allow", "deny")
    for what in ("read", "write", "net", "env", "sys", "run", "ffi", "import")
)
SHORT_FLAGS = {"-R": "--allow-read", "-W": "--allow-write", "-N": "--allow-net"}
SHORT_FLAGS |= {"-E": "--allow-env", "-S": "--allow-sys", "-I": "--allow-import"}
SHORT_FLAGS |= {"-A": "--allow-all"}


class WorkerCommand:
    """``deno run FLAGS worker.ts``, whose permissions name the worker's socket and its
    preloads: ORT calls it with the socket's path for each worker it starts, and the preloads
    are those of the environment the worker gets. Equal commands compare equal."""

    __slots__ = ("config", "deno", "permissions")

    def __init__(self, deno: str, config: FunctionConfig, permissions: str = "") -> None:
        self.deno = deno
        self.config = config
        self.permissions = permissions

    def __call__(self, socket_path: str) -> list[str]:
        preloads = preload_files(self.config, environment(self.config))
        flags = run_flags(self.config, self.permissions, socket_path, preloads)
        return [self.deno, "run", *flags, WORKER]

    def _key(self) -> tuple[str, FunctionConfig, str]:
        return (self.deno, self.config, self.permissions)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WorkerCommand) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"WorkerCommand({self.deno!r}, handler={self.config.handler!r})"


# -- the binary and its environment -----------------------------------------------------------

# The deno package's lookup reads sysconfig, whose first use is not thread-safe, and `ort serve`
# starts its pipelines on parallel threads.
_finding_the_package_binary = _thread.allocate_lock()


def deno_binary() -> str:
    """``ORT_DENO_BINARY``, else ``deno`` on PATH, else the ``deno`` PyPI package's."""
    found = configured_or_on_path("ORT_DENO_BINARY", "deno")
    if found:
        return found
    from importlib.util import find_spec

    if find_spec("deno") is not None:
        import deno

        try:
            with _finding_the_package_binary:
                return deno.find_deno_bin()
        except FileNotFoundError:
            pass
    from ort_core.errors import FunctionError  # not before the worker starts

    raise FunctionError(
        "Runtime.InvalidEntrypoint",
        "no Deno binary: set ORT_DENO_BINARY, put deno on PATH, or `pip install ort-deno[deno]`",
    )


def deno_dir() -> str:
    """A writable DENO_DIR (Deno's cache), seeded from ``ORT_DENO_CACHE`` when it is empty.

    ``ORT_DENO_DIR``, else ``/tmp/ort-deno-<uid>``: on Lambda only /tmp is writable.
    """
    path = os.environ.get("ORT_DENO_DIR") or os.path.join("/tmp", f"ort-deno-{os.getuid()}")
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except OSError as exc:
        from ort_core.errors import FunctionError  # not before the worker starts

        raise FunctionError(
            "Runtime.InvalidEntrypoint", f"no DENO_DIR: cannot create {path!r}: {exc}"
        ) from None
    if not os.environ.get("ORT_DENO_DIR") and os.stat(path).st_uid != os.getuid():
        import tempfile  # someone else's directory: never share a cache with them

        path = tempfile.mkdtemp(prefix="ort-deno-")
    prepared = os.environ.get("ORT_DENO_CACHE")
    if prepared and os.path.isdir(prepared) and not os.listdir(path):
        seed_cache(prepared, path)
    return path


def seed_cache(prepared: str, path: str) -> None:
    """Copy a prepared (perhaps read-only) DENO_DIR into the empty ``path``, writable.

    The copy is made beside ``path`` and renamed onto it, so a concurrent cold start sees
    either nothing or the whole cache; a failed copy only makes the cold start slower.
    Plain ``os`` calls: shutil would import ``re``.
    """
    staging = f"{os.path.abspath(path)}.seed-{os.getpid()}"
    try:
        os.mkdir(staging, 0o700)
        for folder, directories, files in os.walk(prepared):
            target = os.path.join(staging, os.path.relpath(folder, prepared))
            for name in directories + files:
                source, copy = os.path.join(folder, name), os.path.join(target, name)
                if os.path.islink(source):
                    os.symlink(os.readlink(source), copy)
                elif name in directories:
                    os.mkdir(copy, 0o700)
                else:
                    copy_file(source, copy)
        os.rename(staging, path)  # replaces the empty directory
    except OSError as exc:  # a slower cold start, not a failed one
        import logging
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
        if not os.listdir(path):
            logging.getLogger("ort").warning("ORT_DENO_CACHE=%s not copied: %s", prepared, exc)


def copy_file(source: str, target: str) -> None:
    with open(source, "rb") as reader, open(target, "wb") as writer:
        while chunk := reader.read(1 << 20):
            writer.write(chunk)


def deno_environment(directory: str) -> dict[str, str]:
    """What the Deno process needs besides ORT's environment: its cache, and quiet logs."""
    env = {"DENO_DIR": directory}
    for name in ("NO_COLOR", "DENO_NO_UPDATE_CHECK"):
        if name not in os.environ:
            env[name] = "1"  # no ANSI codes in the function's log; no network at start
    return env


def environment(config: FunctionConfig, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The Deno process's whole environment: ORT's, ``env``, the handler's, and what the
    ``ort.worker_env`` entry points add (an APM plugin's ``ORT_PRELOAD``)."""
    return worker_environment(WorkerSpec("deno", (), tuple(sorted((env or {}).items()))), config)


def preload_files(config: FunctionConfig, env: Mapping[str, str]) -> list[str]:
    """The ``ORT_PRELOAD`` files of ``env``, relative ones from the task root, as Deno's
    worker finds them: its permissions must let it read them."""
    entries = env.get("ORT_PRELOAD", "").split(os.pathsep)
    return [os.path.join(config.task_root, entry) for entry in entries if entry]


# -- permissions --------------------------------------------------------------------------


def run_flags(
    config: FunctionConfig,
    permissions: str = "",
    socket_path: str | None = None,
    preloads: Sequence[str] = (),
) -> list[str]:
    """``deno run``'s flags: no prompt, the function's deno.json if any, the permissions, and
    the inspector when ``ORT_INSPECT`` (``ort emulate --inspect``) asks for it."""
    flags = permission_flags(config, permissions, socket_path, preloads)
    inspect = os.environ.get("ORT_INSPECT")
    return ["--no-prompt", config_flag(config), *flags] + (
        [f"--inspect={inspect}"] if inspect else []
    )


def config_flag(config: FunctionConfig) -> str:
    """The task root's deno.json (import map, compiler options), else ``--no-config``: Deno
    would otherwise look for one beside ORT's worker, not the function."""
    for name in ("deno.json", "deno.jsonc"):
        path = os.path.join(config.task_root, name)
        if os.path.isfile(path):
            return f"--config={path}"
    return "--no-config"


def permission_flags(
    config: FunctionConfig,
    permissions: str = "",
    socket_path: str | None = None,
    preloads: Sequence[str] = (),
) -> list[str]:
    """Least privilege, plus ``permissions`` (from ``ORT_DENO_PERMISSIONS``).

    By default Deno may read the task root, ORT's worker files and the ``preloads`` (each
    file, not its folder), read (and set) the variables in ``ENV_NAMES``, and, in persistent
    mode, use its one Unix socket. ``permissions``
    (flags separated by commas or spaces: ``--allow-net,--allow-env=TABLE,REGION``) adds to
    that: a list flag's values join the default's, a bare list flag allows everything of
    its kind, and any other flag is passed to ``deno run`` as it is.
    """
    for path in (config.task_root, HERE, socket_path or "", *preloads):
        if "," in path:
            from ort_core.errors import FunctionError  # not before the worker starts

            raise FunctionError(
                "Runtime.InvalidEntrypoint",
                f"Deno's permission flags cannot name a path with a comma: {path!r}",
            )
    lists: dict[str, list[str] | None] = {
        "--allow-read": [config.task_root, HERE, *preloads],
        "--allow-env": list(ENV_NAMES),
    }
    if socket_path is not None:
        lists["--allow-read"] = [*(lists["--allow-read"] or []), socket_path]
        lists["--allow-write"] = [socket_path]
        lists["--allow-net"] = [f"unix:{socket_path}"]
        lists["--allow-env"] = [*(lists["--allow-env"] or []), "ORT_WORKER_SOCKET"]
    others: list[str] = []
    for flag in parse_flags(permissions):
        name, equals, value = flag.partition("=")
        name = SHORT_FLAGS.get(name, name)
        if name not in LIST_FLAGS:
            others.append(name + equals + value)
        elif not equals:
            lists[name] = None  # everything of its kind
        elif name not in lists or lists[name] is not None:
            lists[name] = [*(lists.get(name) or []), *filter(None, value.split(","))]
    return [
        name if values is None else f"{name}={','.join(dict.fromkeys(values))}"
        for name, values in lists.items()
    ] + others


def parse_flags(value: str) -> list[str]:
    """``--allow-net,--allow-env=A,B --cached-only`` -> its three flags: a part that does not
    start with ``-`` continues the flag before it."""
    flags: list[str] = []
    for word in value.split():
        for part in word.split(","):
            if part.startswith("-") or not flags:
                if part:
                    flags.append(part)
            else:
                flags[-1] += "," + part
    return flags
