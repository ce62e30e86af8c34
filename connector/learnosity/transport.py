"""HTTP for the Data API (the only module importing an HTTP library).

One keep-alive connection, connect and read timeouts, and every failure translated into
the project's TransientError at this boundary.

Two ways to send, with the same contract (``post_form`` → ``RawResponse`` or
TransientError):
- direct: ``http.client`` on one kept-alive connection. A page request is sequential
  (each needs the last page's ``next``), so the client's per-request time is on the
  critical path of a backfill: http.client costs a fraction of httpx's per request, and
  sends the head and the body in one write. A connection the server closed while idle
  is noticed before reuse (readable with nothing asked), and a request that fails on a
  reused connection is sent once more on a fresh one (every Data API read is
  idempotent; the retry is at this level only, before anything was received).
- httpx: when a transport is injected (unit tests use ``httpx.MockTransport``) or the
  environment names a proxy for the URL (httpx honours ``HTTPS_PROXY`` & co.).
TLS verifies against ``SSL_CERT_FILE`` when set, else certifi's bundle, as httpx does.
"""

from __future__ import annotations

import http.client
import os
import select
import socket
import ssl
import urllib.request
import zlib
from dataclasses import dataclass
from functools import cache
from urllib.parse import urlencode, urlsplit

import certifi
import httpx

from connector import __version__
from connector.errors import TransientError

USER_AGENT = f"learnosity-kafka-connector/{__version__}"


@dataclass(frozen=True, slots=True)
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class InFlight:
    """A request sent on the kept-alive connection whose answer is not read yet."""

    conn: http.client.HTTPConnection
    url: str


@dataclass(frozen=True, slots=True)
class _Target:
    scheme: str
    host: str
    port: int
    path: str  # with the query, as sent in the request line


_DIRECT_HEADERS = {
    "User-Agent": USER_AGENT,
    "Content-Type": "application/x-www-form-urlencoded",
    "Accept": "*/*",
    "Accept-Encoding": "gzip, deflate",
}


@cache
def _target(url: str) -> _Target:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return _Target(parts.scheme, parts.hostname, port, path)


@cache  # the environment is read once per URL, as httpx reads it once per client
def _proxied(url: str) -> bool:
    """Whether the environment names a proxy for ``url`` (then httpx sends it)."""
    proxies = urllib.request.getproxies_environment()
    scheme = urlsplit(url).scheme
    if not (proxies.get(scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass(urlsplit(url).hostname or "")


def _transient(url: str, exc: BaseException) -> TransientError:
    if isinstance(exc, TimeoutError):
        return TransientError(f"timed out talking to {url}: {type(exc).__name__}", "timeout")
    # refused or reset connections, TLS failures, truncated bodies, garbled heads
    return TransientError(f"connection problem with {url}: {type(exc).__name__}", "connection")


def _tls_context() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=os.environ.get("SSL_CERT_FILE") or certifi.where())


class HttpTransport:
    """POSTs forms; returns the raw response or raises TransientError."""

    def __init__(
        self,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._injected = transport
        self._client: httpx.Client | None = None
        self._conn: http.client.HTTPConnection | None = None
        self._conn_target: _Target | None = None
        self._tls: ssl.SSLContext | None = None

    def post_form(self, url: str, form: dict[str, str], headers: dict[str, str]) -> RawResponse:
        if self._injected is not None or _proxied(url):
            return self._post_httpx(url, form, headers)
        target = _target(url)
        body = urlencode(form).encode("ascii")
        head = {**headers, **_DIRECT_HEADERS}
        reused = self._conn is not None and self._conn_target == target and self._usable()
        try:
            return self._exchange(target, body, head)
        except (OSError, http.client.HTTPException) as exc:
            self._drop()
            if not reused or isinstance(exc, TimeoutError):
                raise _transient(url, exc) from exc
        # the server may have closed the kept-alive connection meanwhile: once more, fresh
        try:
            return self._exchange(target, body, head)
        except (OSError, http.client.HTTPException) as exc:
            self._drop()
            raise _transient(url, exc) from exc

    # --- pipelining: send now, read the answer later ---------------------------------
    def send_form(self, url: str, form: dict[str, str], headers: dict[str, str]) -> InFlight | None:
        """Send the request and return at once; ``receive`` reads the answer. None where
        this does not apply (httpx paths) or the send failed: use ``post_form`` then."""
        if self._injected is not None or _proxied(url):
            return None
        target = _target(url)
        body = urlencode(form).encode("ascii")
        try:
            conn = self._connection(target)
            conn.request("POST", target.path, body, {**headers, **_DIRECT_HEADERS})
        except (OSError, http.client.HTTPException):
            self._drop()
            return None
        return InFlight(conn, url)

    def receive(self, sent: InFlight) -> RawResponse:
        """The answer to ``send_form``'s request, or TransientError."""
        try:
            if sent.conn is not self._conn:
                raise http.client.HTTPException("the connection was closed meanwhile")
            return self._read(sent.conn)
        except (OSError, http.client.HTTPException) as exc:
            self._drop()
            raise _transient(sent.url, exc) from exc

    def abandon(self, sent: InFlight) -> None:
        """Give up on an answer not read yet: the connection cannot be reused."""
        if sent.conn is self._conn:
            self._drop()

    # --- direct (http.client) ---------------------------------------------------------
    def _exchange(self, target: _Target, body: bytes, head: dict[str, str]) -> RawResponse:
        conn = self._connection(target)
        conn.request("POST", target.path, body, head)
        return self._read(conn)

    def _read(self, conn: http.client.HTTPConnection) -> RawResponse:
        response = conn.getresponse()
        data = response.read()
        headers = {k.lower(): v for k, v in response.getheaders()}
        encoding = headers.get("content-encoding", "").strip().lower()
        if encoding in ("gzip", "deflate"):
            data = self._decompress(data, encoding)
        if response.will_close:
            self._drop()
        return RawResponse(response.status, headers, data)

    def _decompress(self, data: bytes, encoding: str) -> bytes:
        try:
            if encoding == "gzip":
                return zlib.decompress(data, 16 + zlib.MAX_WBITS)
            try:
                return zlib.decompress(data)
            except zlib.error:  # "deflate" sent raw, without the zlib wrapper
                return zlib.decompress(data, -zlib.MAX_WBITS)
        except zlib.error as exc:
            self._drop()
            raise http.client.IncompleteRead(data) from exc

    def _connection(self, target: _Target) -> http.client.HTTPConnection:
        if self._conn is not None and (self._conn_target != target or not self._usable()):
            self._drop()
        if self._conn is None:
            conn: http.client.HTTPConnection
            if target.scheme == "https":
                if self._tls is None:
                    self._tls = _tls_context()
                conn = http.client.HTTPSConnection(
                    target.host, target.port, timeout=self._connect_timeout, context=self._tls
                )
            else:
                conn = http.client.HTTPConnection(
                    target.host, target.port, timeout=self._connect_timeout
                )
            conn.connect()
            assert conn.sock is not None
            conn.sock.settimeout(self._read_timeout)
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._conn, self._conn_target = conn, target
        return self._conn

    def _usable(self) -> bool:
        """An idle kept-alive connection is usable unless the server closed it (readable)."""
        sock = self._conn.sock if self._conn is not None else None
        if sock is None:
            return False
        try:
            readable, _, _ = select.select([sock], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = self._conn_target = None

    # --- httpx (injected transport, or a proxy) -----------------------------------------
    def _post_httpx(self, url: str, form: dict[str, str], headers: dict[str, str]) -> RawResponse:
        if self._client is None:
            self._client = httpx.Client(
                timeout=httpx.Timeout(self._read_timeout, connect=self._connect_timeout),
                limits=httpx.Limits(max_connections=4, max_keepalive_connections=2),
                headers={"User-Agent": USER_AGENT},
                transport=self._injected,
            )
        try:
            response = self._client.post(url, data=form, headers=headers)
            return RawResponse(response.status_code, dict(response.headers), response.content)
        except httpx.TimeoutException as exc:
            raise TransientError(
                f"timed out talking to {url}: {type(exc).__name__}", "timeout"
            ) from exc
        except httpx.TransportError as exc:  # connect errors, resets, truncated bodies
            raise TransientError(
                f"connection problem with {url}: {type(exc).__name__}", "connection"
            ) from exc

    def close(self) -> None:
        self._drop()
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> HttpTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
