"""The runtime's private directory for its sockets: ``$TMPDIR/ort-<pid>-<random>``, mode 0700.

/tmp is shared: a socket there under a name anyone can guess could be taken first (the worker
then fails to start) or, for a moment after ``bind``, be opened by another user. In a
directory that only ORT's user can enter, neither can happen. Cheap to import: it runs before
ORT's own imports when ``ort bootstrap`` starts a worker early.
"""

from __future__ import annotations

import os

_directory: str | None = None


def private_directory() -> str:
    """This process's directory, created on first use (``mkdir`` fails rather than reuse a
    name someone else made) and removed at exit once its sockets are gone."""
    global _directory
    if _directory is None or not os.path.isdir(_directory):
        parent = os.environ.get("TMPDIR") or "/tmp"
        while True:
            path = os.path.join(parent, f"ort-{os.getpid()}-{os.urandom(4).hex()}")
            try:
                os.mkdir(path, 0o700)
            except FileExistsError:
                continue
            break
        os.chmod(path, 0o700)  # whatever the umask
        import atexit

        atexit.register(_remove, path)
        _directory = path
    return _directory


def _remove(path: str) -> None:
    try:
        os.rmdir(path)
    except OSError:
        pass
