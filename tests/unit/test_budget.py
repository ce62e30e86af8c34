"""The client-side request budget (token bucket) on a fake clock."""

from connector.learnosity.budget import RequestBudget


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_a_burst_then_the_rate() -> None:
    clock = FakeClock()
    budget = RequestBudget(10, burst=10, clock=clock, sleep=clock.sleep)
    waits = [budget.acquire() for _ in range(30)]
    assert waits[:10] == [0.0] * 10
    assert all(abs(w - 0.1) < 1e-9 for w in waits[10:])
    # 30 requests at 10/s with a burst of 10 take 2 s of waiting
    assert abs(clock.now - 2.0) < 1e-9


def test_idle_time_refills_but_not_past_the_burst() -> None:
    clock = FakeClock()
    budget = RequestBudget(5, burst=2, clock=clock, sleep=clock.sleep)
    budget.acquire()
    budget.acquire()
    clock.now += 100  # a long idle period saves up at most `burst` tokens
    assert budget.acquire() == 0.0
    assert budget.acquire() == 0.0
    assert budget.acquire() > 0.0


def test_sustained_rate_is_respected_over_time() -> None:
    clock = FakeClock()
    budget = RequestBudget(50, clock=clock, sleep=clock.sleep)
    for _ in range(550):
        budget.acquire()
    # 50 up front, then 500 more at 50/s
    assert abs(clock.now - 10.0) < 1e-6
