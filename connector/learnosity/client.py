"""The Data API client: sign, send, classify, and retry each kind of failure its own way.

    rate limited  pause the shared budget for ``Retry-After`` or the 5-second window, with
                  jitter, so every thread using the client waits it out; always retried
    transient     exponential backoff with full jitter, capped; ``max_attempts`` bounds it
                  (None: forever, as ``run`` does; ``fetch`` gives up after a few)
    too large     20027, or a body past the transport's size bound: ask again with half
                  the ``limit``, and keep the smaller limit (for every thread)
    fatal         raised at once: retrying cannot fix credentials, clocks or parameters

One client serves many threads at once (each paging its own time slice): the transport's
connection pool, the request budget and the page-size ceiling are shared and thread-safe,
and nothing else a request uses outlives it. Waits go through ``stop`` so a shutdown
interrupts them (ShutdownRequested).
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
from connector.learnosity.transport import HttpTransport
from connector.models import Page
from connector.settings import Settings

log = logging.getLogger(__name__)

MAX_LIMIT = 50


class ApiObserver(Protocol):
    """What the client reports, for metrics; the client itself imports no metrics library.

    Called from every thread that uses the client: implementations must be thread-safe.
    """

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
class Credentials:
    consumer_key: str
    consumer_secret: SecretStr
    domain: str


class DataApiClient:
    """Fetches pages of ``/sessions/scores``. Thread-safe: share one between threads."""

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
        #: lowered after a 20027 (or a body past the transport's bound) and kept low: the
        #: same records would be too large again; every thread's pages follow it
        self.limit_ceiling = MAX_LIMIT
        self._ceiling_lock = threading.Lock()

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
                # a connection for each request in flight at once
                max_connections=settings.learnosity_max_concurrency,
                max_response_bytes=settings.learnosity_max_response_bytes,
            ),
            budget=RequestBudget(settings.learnosity_max_requests_per_second),
            observer=observer,
            stop=stop,
        )

    def __repr__(self) -> str:  # never the credentials
        return f"DataApiClient({self.endpoint_url!r})"

    def _signed(self, params: dict[str, Any], priority: bool) -> dict[str, str]:
        """The request's form, once the budget allows one more request."""
        waited = self._budget.acquire(priority, self._stop)
        if waited:
            self._observer.budget_waited(waited)
        creds = self._credentials
        return signed_form(creds.consumer_key, creds.consumer_secret, creds.domain, dict(params))

    def _lower_ceiling(self, limit: int) -> int:
        """After a too-large answer at ``limit``: half of it becomes everyone's ceiling
        (unless another thread lowered it further meanwhile); returns the ceiling."""
        with self._ceiling_lock:
            self.limit_ceiling = min(self.limit_ceiling, max(1, limit // 2))
            return self.limit_ceiling

    def fetch_once(self, params: dict[str, Any], *, priority: bool = False) -> Page:
        """One attempt: wait for the budget (``priority``: ahead of the others), sign,
        send, classify."""
        form = self._signed(params, priority)
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

    def fetch(
        self, params: dict[str, Any], *, priority: bool = False, max_attempts: int | None = None
    ) -> Page:
        """Fetch one page, retrying what can be retried. ``max_attempts`` bounds transients;
        ``priority`` (the live tail) goes ahead of other threads waiting for the budget."""
        limit = int(params.get("limit", MAX_LIMIT))
        transient_failures = 0
        while True:
            limit = min(limit, self.limit_ceiling)  # other threads may have lowered it
            try:
                page = self.fetch_once({**params, "limit": limit}, priority=priority)
            except RateLimitedError as exc:
                # the quota is the key's: every thread waits, in the budget's next acquire
                delay = rate_limit_delay(exc.retry_after, self._rng)
                self._budget.pause(delay)
                self._observer.retrying("rate_limited", delay)
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
                        "20027: a single record is too large for the Data API to return "
                        "(or larger than the transport's response size bound)",
                        20027,
                    ) from None
                smaller = self._lower_ceiling(limit)
                log.warning(
                    "Data API response too large; retrying the page with a smaller limit",
                    extra={"limit": limit, "new_limit": smaller},
                )
                self._observer.retrying("response_too_large", 0.0)
                limit = smaller
                continue
            return Page(page.records, page.next_token, page.server_time, limit, page.meta)

    def _wait(self, reason: str, seconds: float) -> None:
        self._observer.retrying(reason, seconds)
        if self._stop.wait(seconds):
            raise ShutdownRequested("shutdown requested while waiting to retry")

    def close(self) -> None:
        self._transport.close()
