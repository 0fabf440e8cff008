"""Environment variables that change with every invocation, without leaking memory.

``os.environ[name] = value`` calls the C library's ``setenv``, and glibc keeps every value it
was ever given, since another thread may still hold the pointer ``getenv`` returned: a new
trace id per invocation (``_X_AMZN_TRACE_ID``, ``TRACEPARENT``) leaves about 110 bytes behind
each time, 112 MB over a million invocations in a sandbox that lives for hours. AWS's own
Python runtime client leaks the same way.

Here, once :meth:`InvocationVariable.own` has run, the variable's C string lives in a buffer
this object owns: ``putenv`` puts that pointer itself in the environment, each value is
written into the buffer, and ``os.environ``'s own mapping is updated to match. Child
processes, C code calling ``getenv`` and Python code reading ``os.environ`` all see the
value. Without ctypes (or ``putenv``), it stays with ``os.environ``.

Standard library only: ORT's Python worker imports it too, in whatever interpreter runs it.
"""

from __future__ import annotations

import os


class InvocationVariable:
    """One variable, set for an invocation and removed (``None``) when it has none."""

    __slots__ = (
        "_address",
        "_buffer",
        "_capacity",
        "_key",
        "_last",
        "_libc",
        "_memmove",
        "_retired",
        "_tried",
        "name",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self._key = os.environ.encodekey(name)  # type: ignore[attr-defined]
        self._buffer = None  # the C string "NAME=value\0", once owned
        self._address = 0  # where the value starts in it, after "NAME="
        self._capacity = 0  # bytes of value the buffer holds, its NUL excluded
        self._retired: list[object] = []  # outgrown buffers: getenv's callers may hold them
        self._last: bytes | None = None  # what os.environ holds while our pointer is in place
        self._libc = None
        self._memmove = None
        self._tried = False

    @property
    def owned(self) -> bool:
        return self._buffer is not None

    def own(self, capacity: int = 256) -> None:
        """Keep the variable in a buffer of ours from now on. Loading ctypes costs about 2
        ms, once: call it off the answer's latency (after the first answer, say)."""
        if (
            self._tried
            or os.name != "posix"
            or not isinstance(getattr(os.environ, "_data", None), dict)
        ):
            return
        self._tried = True
        try:
            import ctypes

            libc = ctypes.CDLL(None)
            libc.putenv.argtypes = [ctypes.c_void_p]
            libc.unsetenv.argtypes = [ctypes.c_char_p]
        except (ImportError, OSError, AttributeError):
            return  # os.environ it stays
        self._libc, self._memmove = libc, ctypes.memmove
        self._allocate(capacity)
        if self._key in os.environ._data:  # type: ignore[attr-defined]
            self.set(os.environ[self.name])  # the value set so far, now in our buffer

    def set(self, value: str | None) -> None:
        """The value for the invocation starting, or None to remove the variable."""
        if self._buffer is None:
            if value is None:
                os.environ.pop(self.name, None)
            else:
                os.environ[self.name] = value
            return
        data = os.environ._data  # type: ignore[attr-defined]
        if value is None:
            self._libc.unsetenv(self._key)  # removes the pointer; the buffer stays ours
            data.pop(self._key, None)
            self._last = None
            return
        encoded = os.environ.encodevalue(value)  # type: ignore[attr-defined]
        if b"\0" in encoded:
            raise ValueError("embedded null byte")  # as os.environ says
        if len(encoded) > self._capacity:
            self._allocate(2 * len(encoded))
            self._last = None  # a new buffer: its pointer is not in place yet
        self._memmove(self._address, encoded + b"\0", len(encoded) + 1)
        if self._last is None or data.get(self._key) is not self._last:
            # removed, or set by other code through os.environ since (which replaced our
            # pointer): put it back; putenv keeps the pointer, it allocates nothing
            self._libc.putenv(self._address - len(self._key) - 1)
        data[self._key] = self._last = encoded

    def _allocate(self, capacity: int) -> None:
        import ctypes  # loaded by own() already

        if self._buffer is not None:
            self._retired.append(self._buffer)
        self._buffer = ctypes.create_string_buffer(self._key + b"=", len(self._key) + capacity + 2)
        self._address = ctypes.addressof(self._buffer) + len(self._key) + 1
        self._capacity = capacity
