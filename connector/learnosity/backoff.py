"""How long to wait before the next attempt, by the kind of failure."""

from __future__ import annotations

import random
from dataclasses import dataclass

#: Learnosity counts requests in 5-second windows; a 429 without a hint waits one out.
RATE_LIMIT_WINDOW_SECONDS = 5.0


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter (AWS architecture blog), capped."""

    base_seconds: float = 0.5
    cap_seconds: float = 30.0

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Delay before retry number ``attempt`` (1 for the first retry)."""
        ceiling = min(self.cap_seconds, self.base_seconds * (2 ** max(0, attempt - 1)))
        return (rng or random).uniform(0, ceiling)


def rate_limit_delay(retry_after: float | None, rng: random.Random | None = None) -> float:
    """Honour the server's ``Retry-After`` if it sent one, else wait out the window.

    Jitter spreads out processes that share the key, so they do not all retry at once.
    """
    jitter = (rng or random).uniform(0, 1.0)
    if retry_after is not None and retry_after >= 0:
        return retry_after + jitter
    return RATE_LIMIT_WINDOW_SECONDS + jitter
