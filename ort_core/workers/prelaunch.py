"""Start the language worker before ORT's own imports, so that the two start-ups overlap.

A language plugin publishes, besides its plugin, a cheap function in the entry-point group
``ort.workers`` that says how its worker starts (a :class:`WorkerSpec`, or None when the
handler is not for it). ``ort bootstrap`` calls it first thing and spawns the worker; when
the plugin's bridge starts later with the same spec, it adopts that process instead of
spawning one. Anything not adopted is stopped. Import nothing heavy here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

from ort_core.config import FunctionConfig
from ort_core.entry_points import entry_points, normalise

LAUNCHERS_GROUP = "ort.workers"
# Functions ``(language, config, env) -> dict`` that add to a worker's environment when it is
# launched (an APM plugin's preloads: ``ORT_PRELOAD``...). An entry-point group rather than a
# pluggy hook: the worker starts before ORT loads its plugins, and this must be as cheap.
ENVIRONMENT_GROUP = "ort.worker_env"


class WorkerSpec(NamedTuple):
    """How a worker starts: its language, its command (arguments, or a function of the socket
    path that returns them), and the environment it adds. Equal specs start equal workers."""

    language: str
    command: tuple[str, ...] | Callable[[str], Sequence[str]]
    env: tuple[tuple[str, str], ...] = ()


_started: dict[tuple[WorkerSpec, FunctionConfig], object] = {}


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
                from ort_core.workers.process import Worker

                _started[spec, config] = Worker(
                    spec.command, worker_environment(spec, config), config.task_root, spec.language
                )
                return
    except Exception:
        return


def adopt(spec: WorkerSpec, config: FunctionConfig) -> object | None:
    """The worker started early for exactly this spec and configuration, if any."""
    return _started.pop((spec, config), None)


def stop_unadopted() -> None:
    """Stop what was started early for a bridge that did not come (another plugin won)."""
    while _started:
        _, worker = _started.popitem()
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
