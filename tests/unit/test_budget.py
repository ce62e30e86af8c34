"""The client-side request budget: rate, burst, the 5-s window, priority, pause and stop.

Threads are real; time is a fake clock (``tests.support.clock``) except in the stop
tests, which only ever wait for the stop.
"""

from __future__ import annotations

import threading
import time

import pytest

from connector.errors import ShutdownRequested
from connector.learnosity.budget import RequestBudget
from tests.support.clock import TIMEOUT, FakeClock, until_waiting


def budget_on(clock: FakeClock, rate: float, burst: float | None = 1.0) -> RequestBudget:
    """A budget on the fake clock; one token of burst unless told (None: the default)."""
    return RequestBudget(rate, burst, clock=clock, sleep=clock.sleep)


def test_starts_are_spaced_by_the_rate_after_one_token() -> None:
    clock = FakeClock()
    budget = budget_on(clock, 10)
    waits = [budget.acquire() for _ in range(5)]
    assert waits[0] == 0.0
    assert waits[1:] == pytest.approx([0.1] * 4, abs=1e-6)
    assert clock() == pytest.approx(0.4, abs=1e-6)


def test_the_default_burst_makes_up_for_a_late_start_within_the_window() -> None:
    """A thread woken late (the GIL, a busy core) loses no budget: at 190/s the default
    burst saves 19 starts, and the 5-s window still holds at most 95 % of 950."""
    clock = FakeClock()
    budget = budget_on(clock, 190, burst=None)
    assert budget.burst == pytest.approx(19)
    assert [budget.acquire() for _ in range(19)] == [0.0] * 19  # saved up: at once
    assert budget.acquire() > 0.0  # then the rate
    clock.advance(0.05)  # a caller late by 9 intervals: they are made up at once
    assert [budget.acquire() for _ in range(9)] == pytest.approx([0.0] * 9, abs=1e-6)


def test_a_burst_then_the_rate() -> None:
    clock = FakeClock()
    budget = budget_on(clock, 10, burst=10)
    waits = [budget.acquire() for _ in range(30)]
    assert waits[:10] == [0.0] * 10
    assert waits[10:] == pytest.approx([0.1] * 20, abs=1e-6)
    # 30 requests at 10/s with a burst of 10 take 2 s of waiting
    assert clock() == pytest.approx(2.0, abs=1e-6)


def test_idle_time_refills_but_not_past_the_burst() -> None:
    clock = FakeClock()
    budget = budget_on(clock, 5, burst=2)
    budget.acquire()
    budget.acquire()
    clock.advance(100)  # a long idle period saves up at most `burst` tokens
    assert budget.acquire() == 0.0
    assert budget.acquire() == 0.0
    assert budget.acquire() > 0.0


def test_64_threads_never_start_more_than_5_times_the_rate_in_any_5_s() -> None:
    clock = FakeClock()
    budget = budget_on(clock, 190, burst=None)  # the default burst: the window holds
    starts: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(40):
            budget.acquire()
            with lock:
                starts.append(clock.last())

    threads = [threading.Thread(target=worker) for _ in range(64)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    assert len(starts) == 64 * 40
    starts.sort()
    # the quota is 1000 per 5 s: with rate 190, no half-open 5-s window holds more
    # than 95 % of 950, the margin for requests that reach the server bunched
    limit = 902
    assert all(later >= first + 5.0 for first, later in zip(starts, starts[limit:], strict=False))
    # and the budget is used: those starts take (just under) 5 s, not more
    assert starts[limit - 1] - starts[0] <= 5.0


def acquire_in_thread(
    budget: RequestBudget,
    clock: FakeClock,
    name: str,
    log: list[tuple[float, str]],
    priority: bool = False,
) -> threading.Thread:
    """Start a thread that acquires once and logs (start time, name); return once it waits."""
    queued = budget.waiting + 1

    def run() -> None:
        budget.acquire(priority)
        log.append((clock.last(), name))

    thread = threading.Thread(target=run)
    thread.start()
    until_waiting(budget, queued)
    return thread


def test_priority_callers_go_ahead_of_waiting_ones_first_come_first_served() -> None:
    clock = FakeClock(gate=threading.Event())  # a waiter's sleep holds until the gate opens
    budget = budget_on(clock, 10)
    budget.acquire()  # the token: everyone after this waits
    log: list[tuple[float, str]] = []
    threads = [acquire_in_thread(budget, clock, name, log) for name in ("a1", "a2", "a3")]
    threads += [acquire_in_thread(budget, clock, name, log, True) for name in ("p1", "p2")]
    assert clock.gate is not None
    clock.gate.set()
    for thread in threads:
        thread.join(TIMEOUT)
    assert [name for _, name in sorted(log)] == ["p1", "p2", "a1", "a2", "a3"]
    assert sorted(t for t, _ in log) == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5], abs=1e-6)


def test_pause_holds_every_waiter_and_only_extends() -> None:
    clock = FakeClock(gate=threading.Event())
    budget = budget_on(clock, 10)
    budget.acquire()
    log: list[tuple[float, str]] = []
    threads = [acquire_in_thread(budget, clock, name, log) for name in ("a", "b")]
    budget.pause(5.0)  # as after a 429 in some other thread
    budget.pause(1.0)  # a shorter pause after it changes nothing
    assert clock.gate is not None
    clock.gate.set()
    for thread in threads:
        thread.join(TIMEOUT)
    assert [name for _, name in sorted(log)] == ["a", "b"]
    assert sorted(t for t, _ in log) == pytest.approx([5.0, 5.1], abs=1e-6)
    # and a newcomer after the pause waits for the rate only
    assert budget.acquire() == pytest.approx(0.1, abs=1e-6)


def test_a_pause_makes_the_next_acquire_wait() -> None:
    clock = FakeClock()
    budget = budget_on(clock, 1000)
    budget.pause(2.5)
    assert budget.acquire() == pytest.approx(2.5, abs=1e-6)


def test_stop_interrupts_every_waiter_at_once() -> None:
    budget = RequestBudget(0.001)  # real clock: after the first, a request every 1000 s
    budget.acquire()
    stop = threading.Event()
    outcomes: list[BaseException | float] = []

    def run() -> None:
        try:
            outcomes.append(budget.acquire(stop=stop))
        except ShutdownRequested as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for count, thread in enumerate(threads, 1):
        thread.start()
        until_waiting(budget, count)
    started = time.monotonic()
    stop.set()
    for thread in threads:
        thread.join(TIMEOUT)
    assert time.monotonic() - started < 5.0
    assert len(outcomes) == 3
    assert all(isinstance(outcome, ShutdownRequested) for outcome in outcomes)
    assert budget.waiting == 0


def test_stop_already_set_does_not_prevent_a_request_that_need_not_wait() -> None:
    stop = threading.Event()
    stop.set()
    budget = RequestBudget(10, burst=1)
    assert budget.acquire(stop=stop) == 0.0
    with pytest.raises(ShutdownRequested):
        budget.acquire(stop=stop)


def test_rate_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        RequestBudget(0)
