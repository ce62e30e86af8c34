"""A client-side request budget shared by every thread, so the process never burns the
key's quota.

The consumer key's quota (1000 requests per 5 s on ``/sessions/*``) is shared by every
process that uses the key; ``LEARNOSITY_MAX_REQUESTS_PER_SECOND`` keeps this one's share.

``RequestBudget`` is a token bucket kept as the time the next request may start (GCRA):
a request may start at ``next - (burst - 1) / rate`` at the earliest, and each start
sets ``next`` to ``max(next, now) + 1 / rate``. The default burst is a tenth of a
second's worth: a thread woken late (the GIL, a busy core) is made up for, where a
burst of one token would lose that time for good (measured: 135 requests/s of a 190
budget at 150 ms latency). A window of the last ``WINDOW_SECONDS`` keeps the starts in
it to 95 % of ``WINDOW_SECONDS * rate`` (902 at 190/s): requests reach the server a
little after their start, bunched, and the server's count in any 5 s must stay within
``5 * rate`` (950, under the key's quota of 1000 per 5 s). Times are counted in whole
nanoseconds, the interval rounded up, so float rounding cannot squeeze in one more.

Callers wait in one queue, ``priority`` ones (the live tail) ahead of the others, first
come first served within each class. Only the head of the queue waits for the clock
(``stop.wait`` on the time left, so a stop interrupts it at once); the others wait on a
condition of their own, notified when they become the head: one wake-up per request,
however many threads wait. ``pause`` (after a 429) pushes the earliest start of every
request, waiting or to come, to ``now + seconds``; the head notices when its wait ends
(a pause only ever extends). A waiter whose ``stop`` is set raises ShutdownRequested;
one behind others notices when the one ahead leaves, so callers sharing one stop event
(as a client's threads do) all leave at once.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import math
import threading
import time
from collections.abc import Callable

from connector.errors import ShutdownRequested

_NS = 1_000_000_000
#: the quota's window: no more than ``rate`` times this many starts within any of them
WINDOW_SECONDS = 5.0
#: the default burst, in seconds of requests
BURST_SECONDS = 0.1
#: the share of ``WINDOW_SECONDS * rate`` that may start in any window
WINDOW_SHARE = 0.95


class _Waiter:
    __slots__ = ("key", "turn")

    def __init__(self, priority: bool, seq: int, lock: threading.Lock) -> None:
        self.key = (0 if priority else 1, seq)
        self.turn = threading.Condition(lock)  # notified when this waiter becomes the head

    def __lt__(self, other: _Waiter) -> bool:
        return self.key < other.key


class RequestBudget:
    """Token bucket: ``rate`` requests per second, at most ``burst`` saved up. Thread-safe.

    ``sleep`` replaces the head's wait for the clock (tests pass a fake clock's, which
    returns at once); by default the head waits on the caller's ``stop`` event.
    """

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] | None = None,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = max(1.0, burst if burst is not None else rate * BURST_SECONDS)
        self._interval = math.ceil(_NS / rate)  # ns between starts, rounded up
        self._tolerance = int((self.burst - 1.0) * self._interval)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next: int | None = None  # ns: the next start's theoretical time
        self._paused_until: int | None = None  # ns
        self._queue: list[_Waiter] = []  # a heap: priority first, then arrival
        self._seq = itertools.count()
        self._never = threading.Event()  # the head's wait when the caller has no stop
        self._window = int(WINDOW_SECONDS * _NS)
        # a margin in the window's share: a request reaches the server a moment after
        # its start (signing, the GIL, the server's own queue), so starts spread evenly
        # here arrive bunched there (the emulator counted 29 over 931 in one window)
        self._window_limit = max(1, math.floor(WINDOW_SECONDS * rate * WINDOW_SHARE))
        self._starts: collections.deque[int] = collections.deque()  # ns, the last window's

    def _now(self) -> int:
        return int(self._clock() * _NS)

    def _ready_at(self, now: int) -> int | None:
        """The earliest start of the next request (ns), or None: now."""
        earliest = None if self._next is None else self._next - self._tolerance
        if self._paused_until is not None and (earliest is None or self._paused_until > earliest):
            earliest = self._paused_until
        starts = self._starts
        while starts and starts[0] < now - self._window:  # 1 ns to spare for rounding
            starts.popleft()
        if len(starts) >= self._window_limit:  # the window is full: when its oldest leaves
            leaves = starts[0] + self._window + 1
            earliest = leaves if earliest is None else max(earliest, leaves)
        return earliest

    @property
    def waiting(self) -> int:
        """Callers waiting for their turn now."""
        with self._lock:
            return len(self._queue)

    def pause(self, seconds: float) -> None:
        """No request starts before ``now + seconds`` (a later pause extends, never shortens)."""
        with self._lock:
            until = self._now() + math.ceil(max(0.0, seconds) * _NS)
            if self._paused_until is None or until > self._paused_until:
                self._paused_until = until

    def acquire(self, priority: bool = False, stop: threading.Event | None = None) -> float:
        """Block until a request may start; return the seconds spent waiting.

        ``priority`` callers go ahead of every other waiter. ShutdownRequested when
        ``stop`` is set while waiting.
        """
        with self._lock:
            arrived = now = self._now()
            me = _Waiter(priority, next(self._seq), self._lock)
            heapq.heappush(self._queue, me)
            try:
                while True:
                    if self._queue[0] is me:
                        ready = self._ready_at(now)
                        if ready is None or now >= ready:
                            base = now if self._next is None else max(self._next, now)
                            self._next = base + self._interval
                            self._starts.append(now)
                            return (now - arrived) / _NS
                        if stop is not None and stop.is_set():
                            raise ShutdownRequested("shutdown requested while waiting to send")
                        self._lock.release()
                        try:
                            self._wait_for_clock((ready - now) / _NS, stop)
                        finally:
                            self._lock.acquire()
                    else:
                        if stop is not None and stop.is_set():
                            raise ShutdownRequested("shutdown requested while waiting to send")
                        me.turn.wait()
                    now = self._now()
            finally:
                self._leave(me)

    def _wait_for_clock(self, seconds: float, stop: threading.Event | None) -> None:
        if self._sleep is not None:
            self._sleep(seconds)
        else:
            (stop or self._never).wait(seconds)

    def _leave(self, me: _Waiter) -> None:
        """Take ``me`` out of the queue (lock held) and wake the new head."""
        if self._queue[0] is not me:  # stopped behind others: the head stays the head
            self._queue.remove(me)
            heapq.heapify(self._queue)
            return
        heapq.heappop(self._queue)
        if self._queue:
            self._queue[0].turn.notify()
