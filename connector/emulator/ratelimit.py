"""Per-consumer request quota in fixed windows (default 1000 requests per 5 s).

Fixed windows, aligned on the clock, are what "wait out the 5-second window" in
docs/data-api.md ("Rate limits") assumes; a client that waits one window always gets through.
"""

from __future__ import annotations


class RateLimiter:
    def __init__(self, limit: int = 1000, window_seconds: float = 5.0) -> None:
        #: 0 turns the limit off (benchmarks)
        self.limit = limit
        self.window_seconds = window_seconds
        self._counts: dict[str, tuple[int, int]] = {}

    def allow(self, consumer_key: str, now: float) -> bool:
        """Count one request; False when it is over the consumer's quota."""
        if self.limit <= 0:
            return True
        window = int(now // self.window_seconds)
        current, count = self._counts.get(consumer_key, (window, 0))
        if current != window:
            count = 0
        count += 1
        self._counts[consumer_key] = (window, count)
        return count <= self.limit

    def retry_after(self, now: float) -> float:
        """Seconds until the current window ends."""
        return self.window_seconds - (now % self.window_seconds)
