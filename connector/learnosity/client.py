"""The Data API client: sign, send, classify, and retry each kind of failure its own way.

    rate limited  wait ``Retry-After`` or the 5-second window, with jitter; always retried
    transient     exponential backoff with full jitter, capped; ``max_attempts`` bounds it
                  (None: forever, as ``run`` does; ``fetch`` gives up after a few)
    too large     20027: ask again with half the ``limit``, and keep the smaller limit
    fatal         raised at once: retrying cannot fix credentials, clocks or parameters

Waits go through ``stop.wait`` so a shutdown interrupts them (ShutdownRequested).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import SecretStr

from connector.errors import (
    ConnectorError,
    RateLimitedError,
    ResponseTooLargeError,
    ShutdownRequested,
    SourceFatalError,
    TransientError,
)
from connector.learnosity.backoff import Backoff, rate_limit_delay
from connector.learnosity.budget import RequestBudget
from connector.learnosity.responses import parse_response
from connector.learnosity.signing import sdk_headers, signed_form
from connector.learnosity.transport import HttpTransport, InFlight
from connector.models import Page
from connector.settings import Settings

log = logging.getLogger(__name__)

MAX_LIMIT = 50


class ApiObserver(Protocol):
    """What the client reports, for metrics; the client itself imports no metrics library."""

    def request_finished(self, outcome: str, seconds: float) -> None: ...

    def retrying(self, reason: str, delay_seconds: float) -> None: ...

    def budget_waited(self, seconds: float) -> None: ...


class _NoObserver:
    def request_finished(self, outcome: str, seconds: float) -> None:
        pass

    def retrying(self, reason: str, delay_seconds: float) -> None:
        pass

    def budget_waited(self, seconds: float) -> None:
        pass


@dataclass(frozen=True)
class PendingPage:
    """A request sent ahead (``DataApiClient.begin``) whose page is not read yet."""

    params: dict[str, Any]
    started: float
    sent: InFlight


@dataclass(frozen=True)
class Credentials:
    consumer_key: str
    consumer_secret: SecretStr
    domain: str


class DataApiClient:
    """Fetches pages of ``/sessions/scores``. Thread-compatible, not thread-safe."""

    def __init__(
        self,
        endpoint_url: str,
        credentials: Credentials,
        *,
        transport: HttpTransport,
        budget: RequestBudget,
        backoff: Backoff | None = None,
        observer: ApiObserver | None = None,
        stop: threading.Event | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.endpoint_url = endpoint_url
        self._credentials = credentials
        self._transport = transport
        self._budget = budget
        self._backoff = backoff or Backoff()
        self._observer: ApiObserver = observer or _NoObserver()
        self._stop = stop or threading.Event()
        self._rng = rng or random.Random()
        self._clock = clock
        self._headers = sdk_headers(credentials.consumer_key, endpoint_url)
        #: lowered after a 20027 and kept low: the same records would be too large again
        self.limit_ceiling = MAX_LIMIT

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        observer: ApiObserver | None = None,
        stop: threading.Event | None = None,
    ) -> DataApiClient:
        return cls(
            settings.endpoint_url,
            Credentials(
                settings.learnosity_consumer_key,
                settings.learnosity_consumer_secret,
                settings.learnosity_domain,
            ),
            transport=HttpTransport(
                settings.learnosity_connect_timeout_seconds,
                settings.learnosity_read_timeout_seconds,
            ),
            budget=RequestBudget(settings.learnosity_max_requests_per_second),
            observer=observer,
            stop=stop,
        )

    def __repr__(self) -> str:  # never the credentials
        return f"DataApiClient({self.endpoint_url!r})"

    def _signed(self, params: dict[str, Any]) -> dict[str, str]:
        """The request's form, once the budget allows one more request."""
        waited = self._budget.acquire()
        if waited:
            self._observer.budget_waited(waited)
        creds = self._credentials
        return signed_form(creds.consumer_key, creds.consumer_secret, creds.domain, dict(params))

    def _limit(self, params: dict[str, Any]) -> int:
        """The page size to ask for: the caller's, within what the service accepted."""
        return min(int(params.get("limit", MAX_LIMIT)), self.limit_ceiling)

    def fetch_once(self, params: dict[str, Any]) -> Page:
        """One attempt: wait for the budget, sign, send, classify."""
        form = self._signed(params)
        started = self._clock()
        outcome = "transient"
        try:
            raw = self._transport.post_form(self.endpoint_url, form, self._headers)
            page = parse_response(raw.status, raw.headers, raw.body)
            outcome = "ok"
            return page
        except RateLimitedError:
            outcome = "rate_limited"
            raise
        except SourceFatalError:
            outcome = "fatal"
            raise
        finally:
            self._observer.request_finished(outcome, self._clock() - started)

    # --- pipelining: ask for the next page while this one is processed -----------------
    def begin(self, params: dict[str, Any]) -> PendingPage | None:
        """Send the request for ``params`` now; ``finish`` returns its page. None where
        the transport cannot pipeline (then ``fetch`` as usual)."""
        params = {**params, "limit": self._limit(params)}
        form = self._signed(params)
        started = self._clock()
        sent = self._transport.send_form(self.endpoint_url, form, self._headers)
        return PendingPage(params, started, sent) if sent is not None else None

    def finish(self, pending: PendingPage) -> Page:
        """The page ``begin`` asked for. Anything but a good answer goes the way of
        ``fetch`` from the start (retried, classified), as if nothing had been sent."""
        outcome = "transient"
        try:
            raw = self._transport.receive(pending.sent)
            page = parse_response(raw.status, raw.headers, raw.body)
            outcome = "ok"
        except RateLimitedError:
            outcome = "rate_limited"
        except SourceFatalError:
            outcome = "fatal"
        except ConnectorError:
            pass  # transient, too large: fetch() knows what to do
        finally:
            self._observer.request_finished(outcome, self._clock() - pending.started)
        if outcome != "ok":
            return self.fetch(pending.params)
        limit = pending.params["limit"]
        return Page(page.records, page.next_token, page.server_time, limit, page.meta)

    def abandon(self, pending: PendingPage) -> None:
        """Never read ``pending``'s answer (rewound meanwhile)."""
        self._transport.abandon(pending.sent)

    def fetch(self, params: dict[str, Any], *, max_attempts: int | None = None) -> Page:
        """Fetch one page, retrying what can be retried. ``max_attempts`` bounds transients."""
        limit = self._limit(params)
        transient_failures = 0
        while True:
            try:
                page = self.fetch_once({**params, "limit": limit})
            except RateLimitedError as exc:
                self._wait("rate_limited", rate_limit_delay(exc.retry_after, self._rng))
                continue
            except TransientError as exc:
                transient_failures += 1
                if max_attempts is not None and transient_failures >= max_attempts:
                    raise
                delay = self._backoff.delay(transient_failures, self._rng)
                log.warning(
                    "Data API request failed, retrying",
                    extra={"reason": exc.reason, "error": str(exc), "retry_in_s": round(delay, 2)},
                )
                self._wait(exc.reason, delay)
                continue
            except ResponseTooLargeError:
                if limit <= 1:
                    raise SourceFatalError(
                        "20027: a single record is too large for the Data API to return",
                        20027,
                    ) from None
                smaller = max(1, limit // 2)
                log.warning(
                    "Data API response too large (20027); retrying the page with a smaller limit",
                    extra={"limit": limit, "new_limit": smaller},
                )
                self._observer.retrying("response_too_large", 0.0)
                limit = self.limit_ceiling = smaller
                continue
            return Page(page.records, page.next_token, page.server_time, limit, page.meta)

    def _wait(self, reason: str, seconds: float) -> None:
        self._observer.retrying(reason, seconds)
        if self._stop.wait(seconds):
            raise ShutdownRequested("shutdown requested while waiting to retry")

    def close(self) -> None:
        self._transport.close()
