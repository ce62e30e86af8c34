"""A fake clock for the request budget, safe to share between threads; a wait for its queue."""

from __future__ import annotations

import threading
import time
from typing import Protocol

TIMEOUT = 10.0  # seconds a test may wait for a thread: never reached when all is well


class _Queue(Protocol):
    @property
    def waiting(self) -> int: ...


class FakeClock:
    """Time moves only when a thread sleeps on it: ``sleep(s)`` moves it to the sleeper's
    last reading plus ``s`` (never back), at once, or once ``gate`` is set when given.

    ``last()`` is the time this clock last told the calling thread: right after
    ``RequestBudget.acquire`` returns, when the budget let that request start.
    """

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.gate = gate
        self.slept: list[float] = []
        self._now = 0.0
        self._lock = threading.Lock()
        self._seen = threading.local()

    def __call__(self) -> float:
        with self._lock:
            now = self._now
        self._seen.last = now
        return now

    def last(self) -> float:
        value: float = self._seen.last
        return value

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds

    def sleep(self, seconds: float) -> None:
        if self.gate is not None:
            assert self.gate.wait(10), "the test never opened the gate"
        with self._lock:
            self.slept.append(seconds)
            self._now = max(self._now, self._seen.last + seconds)


def until_waiting(budget: _Queue, count: int) -> None:
    """Wait until ``count`` callers wait in ``budget`` (its queue offers nothing to wait on)."""
    deadline = time.monotonic() + TIMEOUT
    while budget.waiting != count:
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)
