"""Start the language worker before ORT's own imports, so that the two start-ups overlap.

A language plugin publishes, besides its plugin, a cheap function in the entry-point group
``ort.workers`` that says how its worker starts (a :class:`WorkerSpec`, or None when the
handler is not for it). ``ort bootstrap`` calls it first thing and spawns the worker; when
the plugin's bridge starts later with the same spec, it adopts that process instead of
spawning one. Anything not adopted is stopped. Import nothing heavy here.
"""

from __future__ import annotations

import os
from collections import namedtuple

from ort_core.config import FunctionConfig
from ort_core.entry_points import entry_points, normalise

TYPE_CHECKING = False  # no typing (nor subprocess, socket, logging) before the worker starts
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import NamedTuple

LAUNCHERS_GROUP = "ort.workers"
# Functions ``(language, config, env) -> dict`` that add to a worker's environment when it is
# launched (an APM plugin's preloads: ``ORT_PRELOAD``...). An entry-point group rather than a
# pluggy hook: the worker starts before ORT loads its plugins, and this must be as cheap.
ENVIRONMENT_GROUP = "ort.worker_env"


if TYPE_CHECKING:

    class _Fields(NamedTuple):
        language: str
        command: tuple[str, ...] | Callable[[str], Sequence[str]]
        env: tuple[tuple[str, str], ...] = ()

else:
    _Fields = namedtuple("WorkerSpec", "language command env", defaults=((),))


class WorkerSpec(_Fields):
    """How a worker starts: its language, its command (arguments, or a function of the socket
    path that returns them), and the environment it adds. Equal specs start equal workers."""

    __slots__ = ()


_started: dict[tuple[WorkerSpec, FunctionConfig], object] = {}


class EarlyProcess:
    """A worker spawned first thing, before ORT imports subprocess, socket or logging (about
    15 ms of imports, which the worker's own start-up then overlaps): ``os.posix_spawn``, its
    output on pipes, ORT's end of the channel a bare listening socket. ``Worker`` adopts it,
    and uses it as a ``subprocess.Popen``: ``pid``, ``args``, ``returncode``, ``poll``,
    ``wait``, ``terminate``, ``kill``, ``send_signal``, ``stdout`` and ``stderr``."""

    def __init__(self, command: Sequence[str], env: Mapping[str, str], cwd: str | None) -> None:
        import _signal
        import _socket
        import _thread

        self.socket_path = _early_socket_path()
        self.args = list(command)
        self.listener = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            self.listener.bind(self.socket_path)
            os.chmod(self.socket_path, 0o600)
            self.listener.listen(1)
            stdout, stdout_child = os.pipe()
            stderr, stderr_child = os.pipe()
        except OSError:
            self.listener.close()
            raise
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, stdout_child, 1),
            (os.POSIX_SPAWN_DUP2, stderr_child, 2),
            *_inherited_descriptors(),  # closed, as Popen's close_fds does
        ]
        here = os.getcwd() if cwd is not None else None
        try:
            if cwd is not None:  # posix_spawn has no cwd: single-threaded yet, so chdir around it
                os.chdir(cwd)
            self.pid = os.posix_spawnp(
                self.args[0],
                self.args,
                {**env, "ORT_WORKER_SOCKET": self.socket_path},
                file_actions=actions,
                setsigdef=(_signal.SIGPIPE, _signal.SIGXFSZ),  # as Popen's restore_signals
            )
        except OSError:
            for fd in (stdout, stderr):
                os.close(fd)
            self._close_listener()
            raise
        finally:
            if here is not None:
                os.chdir(here)
            os.close(stdout_child)
            os.close(stderr_child)
        self.stdout_fd, self.stderr_fd = stdout, stderr
        self.stdin = None
        self.stdout = self.stderr = None  # file objects, made when adopted
        self.returncode: int | None = None
        self._lock = _thread.allocate_lock()

    def poll(self) -> int | None:
        with self._lock:
            if self.returncode is None:
                try:
                    pid, status = os.waitpid(self.pid, os.WNOHANG)
                except ChildProcessError:
                    pid, status = self.pid, 0
                if pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
            return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.0005
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                import subprocess

                raise subprocess.TimeoutExpired(self.args, timeout or 0)
            time.sleep(pause)
            pause = min(pause * 2, 0.05)
        return self.returncode  # type: ignore[return-value]

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, signum)
            except ProcessLookupError:
                pass

    def terminate(self) -> None:
        import _signal

        self.send_signal(_signal.SIGTERM)

    def kill(self) -> None:
        import _signal

        self.send_signal(_signal.SIGKILL)

    def _close_listener(self) -> None:
        self.listener.close()
        try:
            os.unlink(self.socket_path)
        except FileNotFoundError:
            pass


def _inherited_descriptors() -> list[tuple[int, int]]:
    """Close actions for the descriptors above 2 a child would inherit."""
    actions = []
    for name in os.listdir("/proc/self/fd") if os.path.isdir("/proc/self/fd") else ():
        fd = int(name)
        try:
            if fd > 2 and os.get_inheritable(fd):
                actions.append((os.POSIX_SPAWN_CLOSE, fd))
        except OSError:  # the listing's own descriptor, closed since
            continue
    return actions


def start_early(environ: Mapping[str, str]) -> None:
    """Spawn the worker the configuration asks for, if a launcher claims it; never raise.

    Whatever goes wrong here is left for the plugin's own start, which reports it properly.
    """
    config = FunctionConfig.from_environ(environ)
    if not config.handler:
        return
    allowed = environ.get("ORT_PLUGINS")
    blocked = {normalise(n) for n in environ.get("ORT_DISABLE_PLUGINS", "").split(",") if n}
    try:
        launchers = entry_points(
            LAUNCHERS_GROUP,
            None if allowed is None else [n.strip() for n in allowed.split(",") if n.strip()],
        )
        for launcher in launchers:
            if normalise(launcher.distribution) in blocked:
                continue
            if config.language and launcher.name != config.language:
                continue
            spec = launcher.load()(config)  # type: ignore[operator]
            if spec is not None:
                command = spec.command
                if callable(command):
                    command = command(_early_socket_path())
                _started[spec, config] = EarlyProcess(
                    command, worker_environment(spec, config), config.task_root
                )
                return
    except Exception:
        return


def _early_socket_path() -> str:
    from ort_core.workers.private import private_directory

    return os.path.join(private_directory(), "early.sock")


def adopt(spec: WorkerSpec, config: FunctionConfig, log_name: str | None = None) -> object | None:
    """The worker started early for exactly this spec and configuration, if any, as a
    ``Worker``."""
    early = _started.pop((spec, config), None)
    if early is None:
        return None
    from ort_core.workers.process import Worker

    return Worker.adopt(early, log_name or spec.language)  # type: ignore[arg-type]


def stop_unadopted() -> None:
    """Stop what was started early for a bridge that did not come (another plugin won)."""
    while _started:
        (spec, config), _ = next(iter(_started.items()))
        worker = adopt(spec, config)
        worker.stop()  # type: ignore[attr-defined]


def configured_or_on_path(variable: str, name: str) -> str | None:
    """The program ``$variable`` names, else ``name`` on PATH: how language plugins find their
    binary before any fallback of their own (cheaper than importing shutil for ``which``)."""
    configured = os.environ.get(variable)
    if configured:
        return configured
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        candidate = os.path.join(directory, name)
        if directory and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def worker_environment(spec: WorkerSpec, config: FunctionConfig) -> dict[str, str]:
    """The worker's environment: ORT's, the spec's, the handler's, then what each
    ``ort.worker_env`` function adds (it sees the environment so far, to append to lists)."""
    env = {
        **os.environ,
        **dict(spec.env),
        "_HANDLER": config.handler,
        "LAMBDA_TASK_ROOT": config.task_root,
    }
    allowed = os.environ.get("ORT_PLUGINS")
    names = None if allowed is None else [n.strip() for n in allowed.split(",") if n.strip()]
    blocked = {normalise(n) for n in os.environ.get("ORT_DISABLE_PLUGINS", "").split(",") if n}
    try:
        found = entry_points(ENVIRONMENT_GROUP, names)
    except LookupError:  # ORT_PLUGINS names a missing distribution: plugin loading says so
        found = []
    for entry in found:
        if normalise(entry.distribution) not in blocked:
            env.update(entry.load()(spec.language, config, dict(env)) or {})  # type: ignore[operator]
    return env
