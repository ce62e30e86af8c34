"""The HTTP endpoints operators and Kubernetes probe: /metrics, /healthz, /readyz.

``/healthz`` (liveness) answers 200 while the main loop keeps beating: it beats at
least once a second when idle, so a loop stuck for ``liveness_timeout`` seconds is wedged
and a restart is the cure. Before the state is restored there is no loop yet: start-up
(topics, fencing, reading a state topic that may hold millions of entries) is live for
up to ``startup_timeout`` seconds, and restoring counts as the first beat.

``/readyz`` (readiness) answers 200 once state is restored and the Data API answered a
first poll, and 503 while Kafka has been unreachable for more than ``kafka_grace``
seconds (an outage shorter than that is ridden through).

The server answers them from one asyncio event loop in a thread of its own, so an idle or
slow connection costs a socket and a few hundred bytes, never a thread: a request's head
must arrive within ``read_timeout`` of the connection's opening (or of its first byte,
on a kept-alive connection), a kept-alive connection is closed after ``idle_timeout``
without a request, a response must be taken within ``write_timeout``. At most
``max_connections`` are open: a new one closes the one that has waited longest (for a
request, or for its client to take a response; the kubelet's probe is always the
newest), and only when an answer is being made on every one is the new one turned away
with 503. ``/healthz`` is answered on the loop itself
(it reads two numbers); ``/readyz`` and ``/metrics`` may wait on a Kafka probe, so they run
on a small pool of threads. HEAD is answered on every path, like GET without the body.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import urlsplit

from connector.errors import ConfigError
from connector.observability.metrics import CONTENT_TYPE, Metrics

log = logging.getLogger(__name__)


class Health:
    """What the probes report; the runner updates it, the HTTP handler reads it."""

    def __init__(
        self,
        *,
        liveness_timeout: float = 120.0,
        startup_timeout: float = 900.0,
        kafka_grace: float = 15.0,
        kafka_probe: Callable[[], bool] | None = None,
        probe_interval: float = 3.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.liveness_timeout = liveness_timeout
        self.startup_timeout = startup_timeout
        self.kafka_grace = kafka_grace
        self._clock = clock
        self._kafka_probe = kafka_probe
        self._probe_interval = probe_interval
        self._lock = threading.Lock()
        self._started = self._beat = clock()
        self._restored = False
        self.first_poll = False
        self._kafka_ok_at = clock()
        self._probed_at = -float("inf")

    @property
    def restored(self) -> bool:
        return self._restored

    @restored.setter
    def restored(self, value: bool) -> None:
        self._restored = value
        if value:  # the loop starts now: its heartbeat is judged from here
            self.beat()

    def beat(self) -> None:
        self._beat = self._clock()

    def kafka_ok(self) -> None:
        self._kafka_ok_at = self._clock()

    def set_kafka_probe(self, probe: Callable[[], bool]) -> None:
        self._kafka_probe = probe

    def live(self) -> tuple[bool, str]:
        if not self._restored:
            starting = self._clock() - self._started
            if starting > self.startup_timeout:
                return False, f"start-up not finished after {starting:.0f}s"
            return True, "starting"
        stale = self._clock() - self._beat
        if stale > self.liveness_timeout:
            return False, f"main loop silent for {stale:.0f}s"
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        if not self.restored:
            return False, "restoring state"
        if not self.first_poll:
            return False, "waiting for the first Data API poll"
        self._probe_kafka()
        down_for = self._clock() - self._kafka_ok_at
        if down_for > self.kafka_grace:
            return False, f"Kafka unreachable for {down_for:.0f}s"
        return True, "ok"

    def _probe_kafka(self) -> None:
        with self._lock:  # one probe at a time, at most every probe_interval
            now = self._clock()
            if self._kafka_probe is None or now - self._probed_at < self._probe_interval:
                return
            self._probed_at = now
            if self._kafka_probe():
                self._kafka_ok_at = self._clock()


#: seconds for a request's head to arrive (from the connection's opening, or from the first
#: byte of a request on a kept-alive connection); a slowloris client is cut off here
READ_TIMEOUT = 5.0
#: seconds a kept-alive connection may wait for its next request (Prometheus reconnects)
IDLE_TIMEOUT = 30.0
#: seconds for a client to take a response (/metrics is the large one)
WRITE_TIMEOUT = 10.0
#: open connections; the kubelet and Prometheus need a handful
MAX_CONNECTIONS = 64
#: threads for /readyz and /metrics, which may wait up to 2 s on a Kafka probe
HANDLER_THREADS = 4
#: bytes of request line and headers; more is answered 431
MAX_HEAD = 8192
#: seconds to read what a client still sends after a closing response, so the close is a
#: FIN and the response arrives (a close with unread data would reset the connection)
LINGER = 1.0
#: pending connections the kernel queues while the loop is busy
BACKLOG = 128
#: seconds between two warnings that the connection cap was reached
CAP_WARNING_INTERVAL = 60.0

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


@dataclass(frozen=True)
class _Response:
    status: int
    body: bytes
    content_type: str = "text/plain"
    close: bool = False
    headers: tuple[tuple[str, str], ...] = ()

    def encode(self, *, head_only: bool = False) -> bytes:
        lines = [
            f"HTTP/1.1 {self.status} {HTTPStatus(self.status).phrase}",
            f"Content-Type: {self.content_type}",
            f"Content-Length: {len(self.body)}",
            *(f"{name}: {value}" for name, value in self.headers),
        ]
        if self.close:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return head if head_only else head + self.body


def _error(status: int, message: str) -> _Response:
    return _Response(status, f"{message}\n".encode(), close=True)


_BUSY = _Response(
    503, b"too many connections\n", close=True, headers=(("Retry-After", "1"),)
).encode()


@dataclass(frozen=True)
class _Request:
    method: str
    path: str
    keep_alive: bool
    body_length: int


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _parse(head: bytes) -> _Request:
    """The request line and the few headers that matter (RFC 9112), strictly."""
    lines = head.lstrip(b"\r\n").split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]) or not parts[1]:
        raise _BadRequest(400, "malformed request line")
    method, target, version = (part.decode("latin-1") for part in parts)
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        if re.fullmatch(r"HTTP/\d(\.\d)?", version):
            raise _BadRequest(505, "HTTP/1.0 and 1.1 only")
        raise _BadRequest(400, "malformed request line")
    connection, body_length = _headers(lines[1:])
    if target.startswith(("http://", "https://")):  # absolute form
        path = urlsplit(target).path or "/"
    else:
        path = target.split("?", 1)[0]
    keep_alive = version == "HTTP/1.1" and "close" not in connection
    return _Request(method, path, keep_alive, body_length)


def _headers(lines: list[bytes]) -> tuple[set[str], int]:
    """The Connection tokens and the body's length; a body may not be chunked."""
    connection: set[str] = set()
    lengths: set[str] = set()
    for line in lines:
        if not line:
            continue
        name, colon, raw = line.partition(b":")
        if not colon or not _TOKEN.fullmatch(name):  # also refuses obsolete line folding
            raise _BadRequest(400, "malformed header")
        field, value = name.decode("latin-1").lower(), raw.decode("latin-1").strip(" \t")
        if field == "connection":
            connection.update(token.strip().lower() for token in value.split(","))
        elif field == "content-length":
            lengths.update(token.strip() for token in value.split(","))
        elif field == "transfer-encoding":
            raise _BadRequest(400, "no request body is accepted")
    if len(lengths) > 1 or any(not (n.isascii() and n.isdigit()) for n in lengths):
        raise _BadRequest(400, "malformed Content-Length")
    body_length = int(lengths.pop()) if lengths else 0
    if body_length > MAX_HEAD:
        raise _BadRequest(413, "request body too large")
    return connection, body_length


@dataclass(eq=False)
class _Connection:
    writer: asyncio.StreamWriter
    #: loop time it began to wait: for a request, or for the client to take a response
    since: float
    #: an answer is being made (a thread may be waiting on Kafka): never evicted then
    answering: bool = False


class HealthServer:
    """/metrics, /healthz and /readyz over HTTP/1.1; see the module docstring.

    Listens from construction (a port in use or an address not of this host is a
    ``ConfigError`` here), serves from ``start()`` until ``stop()``.
    """

    def __init__(
        self,
        port: int,
        metrics: Metrics,
        health: Health,
        bind_address: str = "0.0.0.0",  # noqa: S104 - probes and Prometheus reach the pod's IP
        *,
        read_timeout: float = READ_TIMEOUT,
        idle_timeout: float = IDLE_TIMEOUT,
        write_timeout: float = WRITE_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
        handler_threads: int = HANDLER_THREADS,
    ) -> None:
        self.metrics = metrics
        self.health = health
        self.read_timeout = read_timeout
        self.idle_timeout = idle_timeout
        self.write_timeout = write_timeout
        self.max_connections = max_connections
        self._sock = _listen(bind_address, port)
        host, bound_port = self._sock.getsockname()[:2]
        self.address: str = str(host)  # what it listens on, and the port (0 picks one)
        self.port: int = int(bound_port)
        # evaluated at every scrape, so the gauge is right even when nothing probes /readyz
        metrics.ready.set_function(lambda: 1.0 if health.ready()[0] else 0.0)
        self._pool = ThreadPoolExecutor(handler_threads, thread_name_prefix="http-handler")
        self._connections: set[_Connection] = set()
        self._thread = threading.Thread(target=self._run, name="http", daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._serving = threading.Event()
        self._failed: BaseException | None = None
        self._stopped = False
        self._warned_at = -float("inf")
        self._turning_away = 0

    @property
    def connections(self) -> int:
        """Connections open now (read from any thread)."""
        return len(self._connections)

    def start(self) -> HealthServer:
        self._thread.start()
        self._serving.wait()
        if self._failed is not None:
            raise self._failed
        log.info(
            "serving /metrics, /healthz, /readyz",
            extra={"address": self.address, "port": self.port},
        )
        return self

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and self._thread.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop has just ended
                loop.call_soon_threadsafe(stopping.set)
            self._thread.join(WRITE_TIMEOUT)
        self._sock.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    # --- the loop's thread -----------------------------------------------------------

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # noqa: BLE001 - start() raises it in the caller
            self._failed = exc
        finally:
            self._serving.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        server = await asyncio.start_server(
            self._accept, sock=self._sock, limit=MAX_HEAD, backlog=BACKLOG
        )
        self._serving.set()
        async with server:
            await self._stopping.wait()
            server.close()
            for connection in list(self._connections):
                connection.writer.close()  # each one's task sees its end and returns

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        if len(self._connections) >= self.max_connections and not self._evict():
            await self._turn_away(reader, writer)
            return
        connection = _Connection(writer, since=loop.time())
        self._connections.add(connection)
        try:
            await self._serve(reader, connection)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away
        except asyncio.CancelledError:
            pass  # the server stops; this task is nobody's to wait for
        except Exception:
            log.exception("health server: a connection failed")
        finally:
            self._connections.discard(connection)
            writer.close()

    def _evict(self) -> bool:
        """Close the connection that has waited longest, to make room; False if none waits.

        It waits for a request (its task then reads the end of the stream and returns) or
        for its client to take a response (that one is reset: the client does not read).
        """
        waiting = [c for c in self._connections if not c.answering]
        if not waiting:
            return False
        oldest = min(waiting, key=lambda c: c.since)
        self._connections.discard(oldest)
        if oldest.writer.transport.get_write_buffer_size():
            oldest.writer.transport.abort()
        else:
            oldest.writer.close()
        now = time.monotonic()
        if now - self._warned_at >= CAP_WARNING_INTERVAL:
            self._warned_at = now
            log.warning(
                "health server at its connection cap: closing the longest-waiting connections",
                extra={"max_connections": self.max_connections},
            )
        return True

    async def _turn_away(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """503: an answer is being made on every connection. Read what the client sends
        meanwhile (so it gets the 503, not a reset), for at most as many as the cap."""
        writer.write(_BUSY)
        if self._turning_away >= self.max_connections:
            writer.close()
            return
        self._turning_away += 1
        try:
            await self._linger(reader, writer)
        except ConnectionError:
            pass
        finally:
            self._turning_away -= 1
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, connection: _Connection) -> None:
        loop = asyncio.get_running_loop()
        writer = connection.writer
        first = True
        while True:
            connection.since = loop.time()
            deadline = loop.time() + (self.read_timeout if first else self.idle_timeout)
            try:
                async with asyncio.timeout_at(deadline):
                    start = await reader.read(1)
            except TimeoutError:
                return  # idle: nothing was asked, so nothing to answer
            if not start:
                return
            if not first:
                deadline = loop.time() + self.read_timeout
            first = False
            try:
                async with asyncio.timeout_at(deadline):
                    request = _parse(start + await reader.readuntil(b"\r\n\r\n"))
                    if request.body_length:
                        await reader.readexactly(request.body_length)
            except TimeoutError:
                await self._send(reader, writer, _error(408, "request timeout"))
                return
            except asyncio.LimitOverrunError:
                await self._send(reader, writer, _error(431, "request head too large"))
                return
            except _BadRequest as exc:
                await self._send(reader, writer, _error(exc.status, str(exc)))
                return
            connection.answering = True
            response = await self._answer(request)
            connection.answering, connection.since = False, loop.time()
            if not await self._send(reader, writer, response, head_only=request.method == "HEAD"):
                return

    async def _answer(self, request: _Request) -> _Response:
        close = not request.keep_alive
        if request.method not in ("GET", "HEAD"):
            headers = (("Allow", "GET, HEAD"),)
            return _Response(405, b"method not allowed\n", close=close, headers=headers)
        if request.path == "/healthz":
            return self._probe(self.health.live, close)  # no lock, no I/O: on the loop
        if request.path == "/readyz":
            return await self._in_thread(lambda: self._probe(self.health.ready, close))
        if request.path == "/metrics":
            return await self._in_thread(
                lambda: _Response(200, self.metrics.render(), CONTENT_TYPE, close)
            )
        return _Response(404, b"not found\n", close=close)

    @staticmethod
    def _probe(check: Callable[[], tuple[bool, str]], close: bool) -> _Response:
        ok, reason = check()
        body = json.dumps({"status": "ok" if ok else "unavailable", "reason": reason})
        return _Response(200 if ok else 503, body.encode(), "application/json", close)

    async def _in_thread(self, answer: Callable[[], _Response]) -> _Response:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, answer)
        except Exception:
            log.exception("health server: answering a request failed")
            return _error(500, "internal error")

    async def _send(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        response: _Response,
        *,
        head_only: bool = False,
    ) -> bool:
        """Write ``response``; True when the connection stays open for another request."""
        writer.write(response.encode(head_only=head_only))
        try:
            async with asyncio.timeout(self.write_timeout):
                await writer.drain()
        except TimeoutError:
            writer.transport.abort()  # the client does not read
            return False
        if response.close:
            await self._linger(reader, writer)
        return not response.close

    @staticmethod
    async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """End our side, then read until the client ends its own (at most ``LINGER``)."""
        if writer.can_write_eof():
            writer.write_eof()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(LINGER):
                while await reader.read(MAX_HEAD):
                    pass


def _listen(address: str, port: int) -> socket.socket:
    try:
        family = socket.getaddrinfo(
            address or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0][0]
        dualstack = family == socket.AF_INET6 and address in ("", "::")
        return socket.create_server(
            (address, port),
            family=family,
            backlog=BACKLOG,
            dualstack_ipv6=dualstack and socket.has_dualstack_ipv6(),
        )
    except OSError as exc:
        raise ConfigError(
            [f"HTTP_BIND_ADDRESS {address!r}, HTTP_PORT {port}: cannot listen: {exc}"]
        ) from None
