"""The ``ort.worker_env`` entry point: the preload each language worker loads before the handler.

ORT calls :func:`worker_env` whenever it launches a worker, the early-started one included,
before it has loaded its plugins: keep this module free of imports.
"""

from __future__ import annotations

import os

from ort_apm import enabled

PRELOAD_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "preload")
PRELOADS = {"node": "node.cjs", "deno": "deno.ts", "python": "python.py"}

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ort_core import FunctionConfig


def preload_path(language: str) -> str | None:
    """The preload file for a worker language, when ort-apm ships one."""
    name = PRELOADS.get(language)
    if name is None:
        return None
    path = os.path.join(PRELOAD_DIR, name)
    return path if os.path.isfile(path) else None


def worker_env(language: str, config: FunctionConfig, env: dict[str, str]) -> dict[str, str]:
    """``{"ORT_PRELOAD": ...}`` with this language's preload appended, when ort-apm is enabled
    (in the worker's environment) and has a preload for the language; else nothing."""
    if not enabled(env):
        return {}
    path = preload_path(language)
    if path is None:
        return {}
    existing = [entry for entry in env.get("ORT_PRELOAD", "").split(os.pathsep) if entry]
    if path in existing:
        return {}
    return {"ORT_PRELOAD": os.pathsep.join([*existing, path])}
