"""Executable middlewares (``SLSMIDDLEWARES``): programs in any language around every handler.

``SLSMIDDLEWARES=a,b`` (or ``ORT_MIDDLEWARES``) names executables in ``/opt/middlewares``
(``ORT_MIDDLEWARE_DIR``). Their ``before`` runs in listed order after the in-process
``before_event`` hooks, their ``after`` in reverse order before the ``after_response`` hooks.
A middleware runs once per event (:mod:`.per_event`), or stays running when its file says
``ort-middleware: persistent`` (:mod:`.persistent`). docs/middlewares.md is the contract.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from ort_core.errors import FunctionError

if TYPE_CHECKING:
    from ort_core.context import Context

DEFAULT_DIRECTORY = "/opt/middlewares"  # where Lambda unpacks a layer's middlewares/
PERSISTENT_MARKER = b"ort-middleware: persistent"
MARKER_WINDOW = 4096  # bytes at the head of the file searched for the marker
ERROR_TYPE = "Runtime.MiddlewareError"
UNCHANGED: Any = object()  # a middleware's empty answer: keep the payload as it was


class Middleware(Protocol):
    """One configured middleware; ``before`` and ``after`` return the replacement payload,
    or the one they were given when the middleware left it unchanged."""

    name: str
    step_names: tuple[str, str]  # how ``context.steps`` names its before and after

    def before(self, event: Any, context: Context) -> Any: ...

    def after(self, response: Any, context: Context) -> Any: ...

    def cancel(self) -> bool: ...

    def close(self) -> None: ...


def configured_names(environ: Mapping[str, str]) -> list[str]:
    """The names in ``ORT_MIDDLEWARES`` or ``SLSMIDDLEWARES``; both set and different is an
    init error, since either order could be meant."""
    ort = _split(environ.get("ORT_MIDDLEWARES"))
    sls = _split(environ.get("SLSMIDDLEWARES"))
    if ort and sls and ort != sls:
        raise FunctionError(
            ERROR_TYPE,
            f"ORT_MIDDLEWARES={','.join(ort)} and SLSMIDDLEWARES={','.join(sls)} disagree: "
            "set one of them",
        )
    return ort or sls


def load_middlewares(environ: Mapping[str, str]) -> list[Middleware]:
    """Check every configured middleware and start the persistent ones; any problem is an
    init error, and nothing outside the middleware directory is ever run."""
    names = configured_names(environ)
    if not names:
        return []
    directory = environ.get("ORT_MIDDLEWARE_DIR") or DEFAULT_DIRECTORY
    loaded: list[Middleware] = []
    try:
        for name in names:
            path = resolve(directory, name)
            if is_persistent(path):
                from ort_core.middleware.persistent import PersistentMiddleware

                loaded.append(PersistentMiddleware(name, path))
            else:
                from ort_core.middleware.per_event import PerEventMiddleware

                loaded.append(PerEventMiddleware(name, path))
    except FunctionError:
        for middleware in loaded:
            middleware.close()
        raise
    return loaded


def resolve(directory: str, name: str) -> str:
    """The middleware's file, which must be an executable inside ``directory`` once symbolic
    links are followed; a name with ``/`` or ``..`` is refused before any lookup."""
    if not name or "/" in name or "\\" in name or ".." in name or "\0" in name:
        raise FunctionError(
            ERROR_TYPE,
            f"middleware name {name!r} is refused: a name is a file in the middleware "
            "directory, without '/' or '..'",
        )
    root = os.path.realpath(directory)
    path = os.path.realpath(os.path.join(root, name))
    if os.path.commonpath([root, path]) != root:
        raise FunctionError(
            ERROR_TYPE, f"middleware {name!r} links outside {directory}: {path} is refused"
        )
    if not os.path.isfile(path):
        raise FunctionError(
            ERROR_TYPE,
            f"middleware {name!r} not found: no file {os.path.join(directory, name)} "
            "(set ORT_MIDDLEWARE_DIR to use another directory)",
        )
    if not os.access(path, os.X_OK):
        raise FunctionError(
            ERROR_TYPE, f"middleware {name!r}: {path} is not executable (chmod +x it)"
        )
    return path


def is_persistent(path: str) -> bool:
    """Whether the file opts in to stay running: the marker among its first bytes (a comment
    in a script; a binary is wrapped by a two-line script that says it)."""
    with open(path, "rb") as file:
        return PERSISTENT_MARKER in file.read(MARKER_WINDOW)


def failure(name: str, hook: str, what: str, stderr_tail: str = "") -> FunctionError:
    """The error an invocation gets when middleware ``name`` fails in ``hook``."""
    tail = stderr_tail.rstrip("\n")[-1000:]
    return FunctionError(
        ERROR_TYPE,
        f"middleware {name!r} failed in {hook!r}: {what}"
        + (f"; its stderr ends with:\n{tail}" if tail else ""),
    )


def parse_output(name: str, hook: str, output: bytes, stderr_tail: str = "") -> Any:
    """A middleware's answer: JSON replaces the payload, empty (or blank) output keeps it
    (returned as ``UNCHANGED``), anything else is this invocation's error."""
    if not output.strip():
        return UNCHANGED
    try:
        return json.loads(output)
    except ValueError:  # UnicodeDecodeError too
        excerpt = output[:200].decode(errors="replace")
        raise failure(name, hook, f"its output is not JSON: {excerpt!r}", stderr_tail) from None


def _split(value: str | None) -> list[str]:
    return [name.strip() for name in (value or "").split(",") if name.strip()]
