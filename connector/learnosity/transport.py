"""HTTP for the Data API: the only module importing an HTTP library (httpx2).

One ``httpx2.Client`` serves every thread of the process (its connection pool is
thread-safe): up to ``max_connections`` kept-alive connections, as many as the caller
runs requests at once. ``bench/bench_http.py`` chose httpx2 over httpx (less CPU per
request at 40 threads, and confluent-kafka's schema registry client installs it anyway;
``bench/RESULTS.md``, "HTTP client at concurrency").

- Timeouts: connecting, and each read of the answer (``read_timeout`` between bytes).
- TLS verified against ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` when set, else certifi's
  bundle; proxies from the environment (``HTTPS_PROXY``, ``NO_PROXY`` & co.).
- gzip and deflate answers are decoded by the library; the decoded body is read as it
  arrives and refused past ``max_response_bytes`` (ResponseTooLargeError: the client asks
  again for a smaller page, as for the API's own 20027).
- Every transport failure becomes the project's TransientError, reason ``timeout`` or
  ``connection``, whose message names the URL (without credentials or query) and the
  library's error type: never the form, which holds the signed request.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

import certifi
import httpx2

from connector import __version__
from connector.errors import ResponseTooLargeError, TransientError

USER_AGENT = f"learnosity-kafka-connector/{__version__}"
DEFAULT_MAX_CONNECTIONS = 64
DEFAULT_MAX_RESPONSE_BYTES = 64 * 2**20
#: an idle kept-alive connection older than this is closed rather than reused
KEEPALIVE_EXPIRY_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes


def tls_context() -> ssl.SSLContext:
    """Verifying context: ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` when set, else certifi."""
    cafile, capath = os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")
    if cafile or capath:
        return ssl.create_default_context(cafile=cafile or None, capath=capath or None)
    return ssl.create_default_context(cafile=certifi.where())


def _where(url: str) -> str:
    """``url`` fit for an error message: no user info, no query."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}{parts.path}"


class HttpTransport:
    """POSTs forms; returns the raw response or raises TransientError. Thread-safe."""

    def __init__(
        self,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        *,
        transport: httpx2.BaseTransport | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self._max_response_bytes = max_response_bytes
        self._client = httpx2.Client(
            # waiting for a free connection (more callers than connections) is bounded
            # like a read
            timeout=httpx2.Timeout(read_timeout, connect=connect_timeout),
            limits=httpx2.Limits(
                max_connections=max_connections,
                max_keepalive_connections=max_connections,
                keepalive_expiry=KEEPALIVE_EXPIRY_SECONDS,
            ),
            headers={"User-Agent": USER_AGENT},
            verify=tls_context(),
            trust_env=True,  # proxies from the environment
            transport=transport,  # unit tests inject httpx2.MockTransport
        )

    def post_form(self, url: str, form: dict[str, str], headers: dict[str, str]) -> RawResponse:
        try:
            with self._client.stream("POST", url, data=form, headers=headers) as response:
                body = self._read(response)
                return RawResponse(response.status_code, dict(response.headers), body)
        except httpx2.TimeoutException as exc:  # connect, read, write, or a pool wait
            raise TransientError(
                f"timed out talking to {_where(url)}: {type(exc).__name__}", "timeout"
            ) from exc
        except httpx2.RequestError as exc:  # refused, reset, TLS, truncated, bad gzip
            raise TransientError(
                f"connection problem with {_where(url)}: {type(exc).__name__}", "connection"
            ) from exc

    def _read(self, response: httpx2.Response) -> bytes:
        """The decoded body, refused once it grows past ``max_response_bytes``."""
        limit = self._max_response_bytes
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > limit:
                # leaving the stream unread closes the connection: it cannot be reused
                raise ResponseTooLargeError(f"the response is larger than {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HttpTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
