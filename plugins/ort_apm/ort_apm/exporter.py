"""OTLP/HTTP export that never holds an invocation beyond its budget.

Each flush runs on the invocation's thread (Lambda freezes the sandbox once the answer is
posted, so spans must be out before it) within a budget of a few tens of milliseconds: every
socket operation, the name lookup and the TLS handshake included, ends at one deadline. A
failed export keeps the spans (up to ``OTEL_BSP_MAX_QUEUE_SIZE``, oldest dropped first) and
backs off: no export is tried for 1 s, then 2, 4... up to 60 s, so a dead collector costs one
budget per back-off period, not one per invocation.

HTTP/1.1 is spoken over a socket, as ORT's Runtime API client does: http.client would cost
its import (about 20 ms: the email package), and ort-apm instruments http.client in ORT's
own process, where its exports must not trace themselves.
"""

from __future__ import annotations

import logging
import select
import socket
import threading
import time

TYPE_CHECKING = False  # typing's own constant would import typing
if TYPE_CHECKING:
    from collections.abc import Callable

    from ort_apm.spans import Span

log = logging.getLogger("ort.apm")
RETRYABLE = frozenset({408, 429, 502, 503, 504})
MAX_BACKOFF_S = 60.0


class ExportError(Exception):
    """The collector could not be reached in time, or answered something unreadable."""


class Endpoint:
    """An OTLP/HTTP URL, parsed without urllib (a few ms of imports at cold start)."""

    __slots__ = ("host", "origin", "path", "port", "scheme", "url")

    def __init__(self, url: str) -> None:
        self.url = url
        scheme, sep, rest = url.partition("://")
        if not sep or scheme.lower() not in ("http", "https"):
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.scheme = scheme.lower()
        authority, slash, path = rest.partition("/")
        self.path = slash + path if slash else "/"
        authority = authority.rpartition("@")[2]  # no credentials in URLs: use headers
        if authority.startswith("["):  # [::1]:4318
            host, _, port = authority[1:].partition("]")
            port = port.removeprefix(":")
        else:
            host, _, port = authority.partition(":")
        if not host:
            raise ValueError(f"no host in {url!r}")
        self.host = host
        self.port = int(port) if port else (443 if self.scheme == "https" else 80)
        self.origin = (self.scheme, self.host, self.port)


class _Resolver:
    """Name lookups with a deadline: getaddrinfo cannot be interrupted, so a name that is not
    an address runs it on a thread and waits at most until the deadline; the answer is kept
    for the next flush."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, int], list] = {}
        self._pending: dict[tuple[str, int], threading.Thread] = {}

    def resolve(self, host: str, port: int, deadline: float) -> list:
        key = (host, port)
        found = self._cache.get(key)
        if found:
            return found
        if host == "localhost" or _is_address(host):
            return socket.getaddrinfo(host.encode(), port, type=socket.SOCK_STREAM)
        thread = self._pending.get(key)
        if thread is None:
            thread = threading.Thread(target=self._lookup, args=key, daemon=True)
            self._pending[key] = thread
            thread.start()
        thread.join(max(0.0, deadline - time.monotonic()))
        found = self._cache.get(key)
        if not found:
            raise ExportError(f"cannot resolve {host!r} in time")
        return found

    def forget(self, host: str, port: int) -> None:
        self._cache.pop((host, port), None)

    def _lookup(self, host: str, port: int) -> None:
        try:
            self._cache[host, port] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError:
            pass
        finally:
            self._pending.pop((host, port), None)


def _is_address(host: str) -> bool:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
            return True
        except OSError:
            continue
    return False


class Connection:
    """One kept-alive HTTP/1.1 connection to a collector's origin; every call ends by a
    deadline. ``send`` writes a request, ``receive`` reads the oldest answer not read yet;
    ``post`` does both.

    A plain connection is non-blocking and waits with poll only when it must: a write and a
    read are a system call each, which matters where system calls are dear (sandboxes); TLS
    connections use socket timeouts."""

    def __init__(self, endpoint: Endpoint, resolver: _Resolver | None = None) -> None:
        self.endpoint = endpoint
        self._resolver = resolver or _Resolver()
        self._socket: socket.socket | None = None
        self._tls = None
        self._used = 0.0  # when the connection last carried something (monotonic)
        self.outstanding = 0  # requests sent whose answer was not read yet
        self._buffer = b""  # read beyond the last answer (pipelined answers)
        host = endpoint.host if ":" not in endpoint.host else f"[{endpoint.host}]"
        self._host_header = f"Host: {host}:{endpoint.port}"

    def post(self, path: str, body: bytes, headers: dict[str, str], deadline: float) -> int:
        """Send and read the answer; returns its status. Raises ExportError past the
        deadline or when the collector cannot be reached. A kept-alive connection the
        collector closed meanwhile is reopened once."""
        for attempt in (1, 2):
            reused = self._socket is not None
            try:
                self.send(path, body, headers, deadline)
                return self.receive(deadline)
            except ExportError as exc:
                stale = isinstance(exc.__cause__, (_Stale, ConnectionError))
                if not (reused and attempt == 1 and stale):
                    raise
        raise AssertionError("unreachable")

    def send(self, path: str, body: bytes, headers: dict[str, str], deadline: float) -> None:
        head = [f"POST {path} HTTP/1.1", self._host_header]
        head += [f"{name}: {value}" for name, value in headers.items()]
        head.append(f"Content-Length: {len(body)}")
        message = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        if self._socket is not None and not self.outstanding and not self._open():
            self.close()  # the collector closed it while idle: do not write into a dead one
        try:
            if self._socket is None:
                self._socket = self._connect(deadline)
            self._write(message, deadline)
        except (OSError, ValueError) as exc:  # socket.timeout is an OSError
            self.close()
            raise ExportError(f"{type(exc).__name__}: {exc}") from exc
        self.outstanding += 1

    def receive(self, deadline: float) -> int:
        if self._socket is None or not self.outstanding:
            raise ExportError("no answer to wait for: the connection was closed")
        try:
            status, keep_alive, self._buffer = _read_response(self._read, deadline, self._buffer)
        except (OSError, ValueError, _Closed) as exc:
            stale = isinstance(exc, (_Closed, ConnectionError)) and self.outstanding == 1
            self.close()
            reason = "the collector closed the connection" if isinstance(exc, _Closed) else exc
            raise ExportError(f"{type(exc).__name__}: {reason}") from (_Stale() if stale else exc)
        self.outstanding -= 1
        self._used = time.monotonic()
        if not keep_alive:
            self.close()
        return status

    # -- I/O ---------------------------------------------------------------------------------

    def _write(self, data: bytes, deadline: float) -> None:
        connection = self._socket
        assert connection is not None
        if self._tls is not None:
            _settimeout(connection, deadline)
            connection.sendall(data)
            return
        view = memoryview(data)
        while view:
            try:
                view = view[connection.send(view) :]
            except BlockingIOError:
                pass
            if view:
                _wait(connection, select.POLLOUT, deadline)

    def _read(self, deadline: float) -> bytes:
        connection = self._socket
        assert connection is not None
        if self._tls is not None:
            _settimeout(connection, deadline)
            chunk = connection.recv(65536)
        else:
            while True:
                try:
                    chunk = connection.recv(65536)
                    break
                except BlockingIOError:
                    _wait(connection, select.POLLIN, deadline)
        if not chunk:
            raise _Closed()
        return chunk

    def _open(self) -> bool:
        """Whether the idle connection is still open: nothing to read, not even its end.
        One used in the last second is taken as open (collectors close idle ones later)."""
        connection = self._socket
        if connection is None:
            return False
        if self._tls is not None or time.monotonic() - self._used < 1.0:
            return True  # TLS may hold session tickets to read: trust it
        try:
            connection.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return True  # nothing to read: open, and idle
        except OSError:
            return False
        return False  # its end, or bytes nobody asked for

    def _connect(self, deadline: float) -> socket.socket:
        endpoint = self.endpoint
        error: Exception | None = None
        for family, kind, proto, _, address in self._resolver.resolve(
            endpoint.host, endpoint.port, deadline
        ):
            connection = socket.socket(family, kind, proto)
            try:
                _settimeout(connection, deadline)
                connection.connect(address)
                connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if endpoint.scheme == "https":
                    return self._wrap_tls(connection, deadline)
                connection.setblocking(False)
                return connection
            except OSError as exc:
                connection.close()
                error = exc
        self._resolver.forget(endpoint.host, endpoint.port)
        raise error or OSError(f"no address for {endpoint.host!r}")

    def _wrap_tls(self, connection: socket.socket, deadline: float) -> socket.socket:
        if self._tls is None:
            import ssl  # only https endpoints pay for it

            self._tls = ssl.create_default_context()
        wrapped = self._tls.wrap_socket(connection, server_hostname=self.endpoint.host)
        _settimeout(wrapped, deadline)
        return wrapped

    def close(self) -> None:
        self.outstanding = 0
        self._buffer = b""
        if self._socket is not None:
            try:
                self._socket.close()
            finally:
                self._socket = None


def _wait(connection: socket.socket, events: int, deadline: float) -> None:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("export budget spent")
    poller = select.poll()
    poller.register(connection, events)
    if not poller.poll(left * 1000):
        raise TimeoutError("export budget spent")


class _Closed(Exception):
    """The peer closed the connection before a whole answer came."""


class _Stale(Exception):
    """A kept-alive connection turned out closed: worth one more try on a fresh one."""


def _settimeout(connection: socket.socket, deadline: float) -> None:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("export budget spent")
    connection.settimeout(left)


def _read_response(
    read: Callable[[float], bytes], deadline: float, buffer: bytes
) -> tuple[int, bool, bytes]:
    """(status, whether the connection stays open, the bytes that follow the answer: the next
    answer's, when requests were pipelined). ``buffer`` is what was read before; the body is
    read and dropped."""
    while b"\r\n\r\n" not in buffer:
        buffer += read(deadline)
        if len(buffer) > 65536:
            raise ValueError("response headers too long")
    head, _, rest = buffer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(None, 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise ValueError(f"not an HTTP response: {lines[0][:80]!r}")
    status = int(parts[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip().lower()
    keep_alive = headers.get("connection") != "close" and parts[0] != "HTTP/1.0"
    if "content-length" in headers:
        end = int(headers["content-length"])
        while len(rest) < end:
            rest += read(deadline)
    elif "chunked" in headers.get("transfer-encoding", ""):
        while (end := _chunked_end(rest)) < 0:
            rest += read(deadline)
    else:
        end = 0
        if status not in (204, 304) and not 100 <= status < 200:
            keep_alive = False  # framed by closing: do not wait for it
    return status, keep_alive, rest[end:]


def _chunked_end(body: bytes) -> int:
    """Where a chunked body ends (after its last chunk and trailers), or -1: not there yet."""
    position = 0
    while True:
        line_end = body.find(b"\r\n", position)
        if line_end < 0:
            return -1
        size = int(body[position:line_end].split(b";")[0].strip() or b"0", 16)
        position = line_end + 2
        if size == 0:
            end = body.find(b"\r\n\r\n", position - 2)
            return -1 if end < 0 else end + 4
        position += size + 2
        if position > len(body):
            return -1


class _Link:
    """A collector origin: its connection and its back-off state."""

    def __init__(self, endpoint: Endpoint, first_backoff_s: float) -> None:
        self.connection = Connection(endpoint)
        self.first_backoff_s = first_backoff_s
        self.backoff_s = 0.0
        self.retry_at = 0.0
        self.failing_since: float | None = None
        # send mode: what was sent and not answered yet, in order; whether the last answer
        # was lost to a connection the collector had closed (resent once, not a failure)
        self.in_flight: list[tuple[str, Endpoint, list[Span] | None]] = []
        self.stale = False

    def ready(self, now: float) -> bool:
        return now >= self.retry_at

    def succeeded(self, what: str) -> None:
        self.stale = False
        if self.failing_since is not None:
            log.info("ort-apm: export to %s works again", self.connection.endpoint.url)
        self.backoff_s = 0.0
        self.retry_at = 0.0
        self.failing_since = None

    def failed(self, what: str, url: str, reason: str) -> None:
        now = time.monotonic()
        self.backoff_s = min(MAX_BACKOFF_S, self.backoff_s * 2 or self.first_backoff_s)
        self.retry_at = now + self.backoff_s
        if self.failing_since is None:  # once per streak of failures, not per attempt
            self.failing_since = now
            log.warning(
                "ort-apm: %s export to %s failed (%s); retrying in %.0f s and at growing "
                "intervals, keeping what is not sent in a bounded buffer",
                what,
                url,
                reason,
                self.backoff_s,
            )


class Exporter:
    """Buffers finished spans and sends them, and the metrics, within a flush's budget.

    ``wait=True`` (``ORT_APM_EXPORT_MODE=ack``, the default) reads the collector's answer
    before the flush returns: the spans are in the collector before the invocation's answer is
    posted. ``wait=False`` (``send``) only writes the request; the answers are read, all at
    once, when ``max_in_flight`` requests await theirs (HTTP/1.1 keeps them in order on the
    connection): a flush costs the encoding and one write; a batch whose answer asks for a
    retry, or never comes, is buffered again then.
    """

    def __init__(
        self,
        traces_url: str,
        metrics_url: str,
        traces_headers: dict[str, str],
        metrics_headers: dict[str, str],
        encode_traces: Callable[[list[Span]], bytes],
        encode_metrics: Callable[[], bytes],
        *,
        wait: bool = True,
        max_in_flight: int = 8,
        gzip: bool = False,
        max_queue: int = 2048,
        max_batch: int = 512,
        metrics_interval_s: float = 60.0,
        first_backoff_s: float = 1.0,
    ) -> None:
        traces, metrics = Endpoint(traces_url), Endpoint(metrics_url)
        self._traces_link = _Link(traces, first_backoff_s)
        self._metrics_link = (
            self._traces_link
            if metrics.origin == traces.origin
            else _Link(metrics, first_backoff_s)
        )
        self._traces = traces
        self._metrics = metrics
        self._encode_traces = encode_traces
        self._encode_metrics = encode_metrics
        self.wait = wait
        self.max_in_flight = 1 if wait else max(1, max_in_flight)
        self._gzip = gzip
        self._traces_headers = _with_defaults(traces_headers, gzip)
        self._metrics_headers = _with_defaults(metrics_headers, gzip)
        self.max_queue = max(1, max_queue)
        self.max_batch = max(1, max_batch)
        self.metrics_interval_s = metrics_interval_s
        self._metrics_at = 0.0  # the first flush sends them: init duration and the cold start
        self._spans: list[Span] = []
        self._buffer_lock = threading.Lock()
        self._send_lock = threading.Lock()
        self.dropped = 0
        self.sent = 0

    def add(self, spans: list[Span]) -> None:
        with self._buffer_lock:
            self._spans.extend(spans)
            self._trim()

    def buffered(self) -> int:
        with self._buffer_lock:
            return len(self._spans)

    def _trim(self) -> None:
        excess = len(self._spans) - self.max_queue
        if excess > 0:
            del self._spans[:excess]
            if not self.dropped:
                log.warning("ort-apm: span buffer full (%d): dropping the oldest", self.max_queue)
            self.dropped += excess

    def _requeue(self, batch: list[Span] | None) -> None:
        if batch:
            with self._buffer_lock:  # sent again later, before newer spans
                self._spans[:0] = batch
                self._trim()

    def idle(self) -> bool:
        """Nothing to send nor to read now: a flush would do nothing."""
        return (
            not self._spans
            and len(self._traces_link.in_flight) < self.max_in_flight
            and len(self._metrics_link.in_flight) < self.max_in_flight
            and time.monotonic() < self._metrics_at
        )

    def flush(self, budget_s: float, force_metrics: bool = False) -> None:
        """Send what is buffered, and the metrics when due, within ``budget_s``; never raise."""
        if budget_s <= 0:
            return
        deadline = time.monotonic() + budget_s
        if not self._send_lock.acquire(timeout=budget_s):
            return  # another thread is flushing (the watchdog's on_timeout): it sends ours too
        try:
            traces, metrics = self._traces_link, self._metrics_link
            # send mode: first the answers to what the last flush sent
            traces_ok = self._settle(traces, deadline)
            metrics_ok = traces_ok if metrics is traces else self._settle(metrics, deadline)
            if traces_ok:
                self._send_spans(deadline)
            now = time.monotonic()
            if (force_metrics or now >= self._metrics_at) and metrics_ok and metrics.ready(now):
                body = self._encode_metrics()
                self._exchange(
                    self._metrics_link,
                    self._metrics,
                    self._metrics_headers,
                    body,
                    deadline,
                    "metric",
                    None,
                )
        except Exception:  # never fail an invocation over telemetry
            log.exception("ort-apm: export failed")
        finally:
            self._send_lock.release()

    def _send_spans(self, deadline: float) -> None:
        link = self._traces_link
        while link.ready(time.monotonic()) and time.monotonic() < deadline:
            with self._buffer_lock:
                batch = self._spans[: self.max_batch]
                del self._spans[: self.max_batch]
            if not batch:
                return
            body = self._encode_traces(batch)
            if not self._exchange(
                link, self._traces, self._traces_headers, body, deadline, "trace", batch
            ):
                return

    def _exchange(
        self,
        link: _Link,
        endpoint: Endpoint,
        headers: dict[str, str],
        body: bytes,
        deadline: float,
        what: str,
        batch: list[Span] | None,
    ) -> bool:
        """Send one request (and, waiting, read its answer); False when the link failed."""
        if self._gzip:
            import zlib

            body = zlib.compress(body, wbits=31)  # gzip framing
        if self.wait:
            try:
                status = link.connection.post(endpoint.path, body, headers, deadline)
            except ExportError as exc:
                self._requeue(batch)
                link.failed(what, endpoint.url, str(exc))
                return False
            return self._answered(link, endpoint, what, batch, status)
        try:  # pipelined after what was sent before: a later flush reads the answers
            link.connection.send(endpoint.path, body, headers, deadline)
        except ExportError as exc:
            self._requeue_unanswered(link)  # their answers went with the connection
            self._requeue(batch)
            link.failed(what, endpoint.url, str(exc))
            return False
        link.in_flight.append((what, endpoint, batch))
        return True

    def _requeue_unanswered(self, link: _Link) -> None:
        for _, _, unanswered in reversed(link.in_flight):  # each goes to the front: in order
            self._requeue(unanswered)
        link.in_flight.clear()

    def _settle(self, link: _Link, deadline: float) -> bool:
        """``send`` mode: once ``max_in_flight`` requests await their answers, read them all
        (until then, a flush is a single write); False when the link failed or is backing
        off."""
        if len(link.in_flight) < self.max_in_flight:
            return link.ready(time.monotonic())
        while link.in_flight:
            what, endpoint, batch = link.in_flight[0]
            try:
                status = link.connection.receive(deadline)
            except ExportError as exc:
                self._requeue_unanswered(link)
                if isinstance(exc.__cause__, (_Stale, ConnectionError)) and not link.stale:
                    link.stale = True  # closed by the collector meanwhile: resend on a new one
                    return link.ready(time.monotonic())
                link.failed(what, endpoint.url, str(exc))
                return False
            link.in_flight.pop(0)
            self._answered(link, endpoint, what, batch, status)
        return link.ready(time.monotonic())

    def _answered(
        self, link: _Link, endpoint: Endpoint, what: str, batch: list[Span] | None, status: int
    ) -> bool:
        if 200 <= status < 300:
            link.succeeded(what)
            if batch:
                self.sent += len(batch)
            if what == "metric":
                self._metrics_at = time.monotonic() + self.metrics_interval_s
            return True
        if status in RETRYABLE:
            self._requeue(batch)
        # else: the collector refuses this data for good; it is dropped
        link.failed(what, endpoint.url, f"HTTP {status}")
        return False

    def close(self) -> None:
        self._traces_link.connection.close()
        self._metrics_link.connection.close()


def _with_defaults(headers: dict[str, str], gzip: bool) -> dict[str, str]:
    merged = {"Content-Type": "application/json", "User-Agent": "ort-apm/0.1.0"}
    if gzip:
        merged["Content-Encoding"] = "gzip"
    merged.update(headers)
    return merged
