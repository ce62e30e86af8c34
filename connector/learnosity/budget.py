"""A client-side request budget (token bucket), so one process never burns the key's quota.

The consumer key's quota (1000 requests per 5 s on ``/sessions/*``) is shared by every
process that uses the key; ``LEARNOSITY_MAX_REQUESTS_PER_SECOND`` keeps this one's share.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RequestBudget:
    """Token bucket: ``rate`` tokens per second, at most ``burst`` saved up."""

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = max(1.0, burst if burst is not None else rate)
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._updated = clock()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    def reserve(self) -> float:
        """Take one token; return how long the caller must wait before using it."""
        with self._lock:
            self._refill()
            self._tokens -= 1.0
            if self._tokens >= 0:
                return 0.0
            return -self._tokens / self.rate

    def acquire(self) -> float:
        """Block until a request may be sent; return the seconds spent waiting."""
        wait = self.reserve()
        if wait > 0:
            self._sleep(wait)
        return wait
