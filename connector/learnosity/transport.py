"""HTTP for the Data API (the only module importing httpx).

One pooled keep-alive connection, connect and read timeouts, and every httpx failure
translated into the project's TransientError at this boundary.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from connector import __version__
from connector.errors import TransientError


@dataclass(frozen=True, slots=True)
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes


class HttpTransport:
    """POSTs forms; returns the raw response or raises TransientError."""

    def __init__(
        self,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._client = httpx.Client(
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
            limits=httpx.Limits(max_connections=4, max_keepalive_connections=2),
            headers={"User-Agent": f"learnosity-kafka-connector/{__version__}"},
            transport=transport,
        )

    def post_form(self, url: str, form: dict[str, str], headers: dict[str, str]) -> RawResponse:
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
        self._client.close()

    def __enter__(self) -> HttpTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
