"""The Data API client against httpx2's MockTransport: every outcome class, no secret leaks,
and one client shared by many threads."""

import json
import logging
import random
import threading
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs

import httpx2
import pytest
from pydantic import SecretStr

from connector.errors import (
    RateLimitedError,
    ShutdownRequested,
    SourceFatalError,
    TransientError,
)
from connector.learnosity.budget import RequestBudget
from connector.learnosity.client import Credentials, DataApiClient
from connector.learnosity.transport import HttpTransport
from connector.models import Page
from tests.support.clock import FakeClock, until_waiting

URL = "http://emulator.test/v2025.2.LTS/sessions/scores"
SECRET = "very-secret-value-1234"


class RecordingStop(threading.Event):
    """A stop event whose waits return at once and are remembered."""

    def __init__(self, stop_after: int | None = None) -> None:
        super().__init__()
        self.waits: list[float] = []
        self._stop_after = stop_after

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout or 0.0)
        return self._stop_after is not None and len(self.waits) >= self._stop_after


class Observer:
    def __init__(self) -> None:
        self.outcomes: list[str] = []
        self.retries: list[str] = []

    def request_finished(self, outcome: str, seconds: float) -> None:
        self.outcomes.append(outcome)

    def retrying(self, reason: str, delay_seconds: float) -> None:
        self.retries.append(reason)

    def budget_waited(self, seconds: float) -> None:
        pass


def ok(records: list[dict[str, Any]], token: str = "t1") -> httpx2.Response:
    return httpx2.Response(200, json={"meta": {"status": True, "next": token}, "data": records})


def error(
    http: int, code: int, message: str = "m", headers: dict[str, str] | None = None
) -> httpx2.Response:
    meta = {"status": False, "code": code, "message": message}
    return httpx2.Response(http, json={"meta": meta, "data": None}, headers=headers)


Handler = Callable[[httpx2.Request], httpx2.Response]


def scripted(*responses: httpx2.Response | Exception) -> tuple[Handler, list[httpx2.Request]]:
    seen: list[httpx2.Request] = []
    queue: Iterator[httpx2.Response | Exception] = iter(responses)

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        item = next(queue)
        if isinstance(item, Exception):
            raise item
        return item

    return handler, seen


def make_client(
    handler: Handler,
    stop: threading.Event | None = None,
    observer: Observer | None = None,
    budget: RequestBudget | None = None,
) -> DataApiClient:
    return DataApiClient(
        URL,
        Credentials("consumer", SecretStr(SECRET), "localhost"),
        transport=HttpTransport(transport=httpx2.MockTransport(handler)),
        budget=budget or RequestBudget(1e9),
        stop=stop or RecordingStop(),
        observer=observer,
        rng=random.Random(1),
    )


def form_of(request: httpx2.Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.content.decode()).items()}


def test_a_page_is_fetched_with_a_signed_form_and_sdk_headers() -> None:
    handler, seen = scripted(ok([{"session_id": "a"}]))
    page = make_client(handler).fetch({"sort": "asc", "limit": 50})
    assert page.records == ({"session_id": "a"},)
    form = form_of(seen[0])
    assert set(form) == {"security", "request", "action"}
    assert json.loads(form["request"])["sort"] == "asc"
    assert json.loads(form["security"])["signature"].startswith("$02$")
    assert seen[0].headers["X-Learnosity-Action"] == "get_/sessions/scores"
    assert seen[0].headers["content-type"] == "application/x-www-form-urlencoded"


def test_transient_failures_are_retried_with_growing_capped_backoff() -> None:
    stop = RecordingStop()
    observer = Observer()
    handler, seen = scripted(
        httpx2.Response(503),
        httpx2.ConnectError("refused"),
        httpx2.ReadTimeout("slow"),
        httpx2.Response(200, content=b'{"meta": {"status": tr'),
        httpx2.RemoteProtocolError("peer closed connection without sending complete body"),
        ok([]),
    )
    page = make_client(handler, stop, observer).fetch({"limit": 50})
    assert page.is_empty
    assert len(seen) == 6
    assert len(stop.waits) == 5
    assert all(0 <= w <= 30 for w in stop.waits)
    assert observer.retries == ["http_5xx", "connection", "timeout", "invalid_json", "connection"]
    assert observer.outcomes == ["transient"] * 5 + ["ok"]


def test_fetch_gives_up_after_max_attempts() -> None:
    handler, seen = scripted(*[httpx2.Response(500)] * 3)
    with pytest.raises(TransientError):
        make_client(handler).fetch({}, max_attempts=3)
    assert len(seen) == 3


def test_rate_limit_pauses_the_budget_for_retry_after_or_the_window() -> None:
    stop = RecordingStop()
    clock = FakeClock()
    observer = Observer()
    handler, _ = scripted(
        error(429, 42000, headers={"Retry-After": "2"}),
        error(200, 42000),
        ok([{"session_id": "a"}]),
    )
    budget = RequestBudget(1e9, clock=clock, sleep=clock.sleep)
    make_client(handler, stop, observer, budget).fetch({})
    assert 2.0 <= clock.slept[0] <= 3.0  # Retry-After plus jitter
    assert 5.0 <= clock.slept[1] <= 6.0  # no hint: the 5-second window plus jitter
    assert stop.waits == []  # waited in the budget, where every thread waits
    assert observer.retries == ["rate_limited", "rate_limited"]


def test_rate_limits_are_retried_even_past_max_attempts() -> None:
    clock = FakeClock()
    handler, seen = scripted(*[error(429, 42000)] * 5, ok([]))
    budget = RequestBudget(1e9, clock=clock, sleep=clock.sleep)
    make_client(handler, budget=budget).fetch({}, max_attempts=1)
    assert len(seen) == 6
    assert len(clock.slept) == 5


def test_too_large_halves_the_limit_and_keeps_it(caplog: pytest.LogCaptureFixture) -> None:
    handler, seen = scripted(error(200, 20027), error(200, 20027), ok([{"a": 1}]), ok([]))
    client = make_client(handler)
    with caplog.at_level(logging.WARNING):
        page = client.fetch({"limit": 50})
    limits = [json.loads(form_of(r)["request"])["limit"] for r in seen]
    assert limits == [50, 25, 12]
    assert page.limit == 12
    assert "smaller limit" in caplog.text
    client.fetch({"limit": 50})
    assert json.loads(form_of(seen[-1])["request"])["limit"] == 12


@pytest.mark.parametrize(
    ("response", "cause"),
    [
        (error(403, 41002), "LEARNOSITY_CONSUMER_KEY"),
        (error(403, 41003), "LEARNOSITY_CONSUMER_SECRET"),
        (error(403, 41004), "clock"),
        (error(403, 41005), "LEARNOSITY_DOMAIN"),
        (error(400, 43000), "LEARNOSITY_API_VERSION"),
        (error(400, 20000), "parameter"),
    ],
)
def test_fatal_errors_are_not_retried(response: httpx2.Response, cause: str) -> None:
    stop = RecordingStop()
    handler, seen = scripted(response)
    with pytest.raises(SourceFatalError, match=cause):
        make_client(handler, stop).fetch({})
    assert len(seen) == 1 and stop.waits == []


def test_shutdown_interrupts_a_retry_wait() -> None:
    handler, _ = scripted(httpx2.Response(500), httpx2.Response(500))
    with pytest.raises(ShutdownRequested):
        make_client(handler, RecordingStop(stop_after=1)).fetch({})


def test_the_secret_never_leaks(caplog: pytest.LogCaptureFixture) -> None:
    failures: list[Exception] = []
    handler, _ = scripted(
        httpx2.Response(500, text=SECRET),  # even if a server echoed it back
        httpx2.ConnectError("refused"),
        error(403, 41003, message="bad signature"),
    )
    client = make_client(handler)
    with caplog.at_level(logging.DEBUG):
        try:
            client.fetch({})
        except SourceFatalError as exc:
            failures.append(exc)
    for failure in failures:
        assert SECRET not in str(failure) and SECRET not in repr(failure)
    assert SECRET not in repr(client)
    assert SECRET not in caplog.text
    assert SECRET not in repr(Credentials("k", SecretStr(SECRET), "d"))


def test_rate_limited_error_keeps_the_hint() -> None:
    assert RateLimitedError("x", 1.5).retry_after == 1.5


# --- one client, many threads ----------------------------------------------------------
def test_a_rate_limit_in_one_thread_pauses_the_others() -> None:
    clock = FakeClock(gate=threading.Event())  # waits for the clock hold until the gate opens
    budget = RequestBudget(1e9, clock=clock, sleep=clock.sleep)
    sent_at: list[float] = []
    lock = threading.Lock()

    def handler(request: httpx2.Request) -> httpx2.Response:
        with lock:
            sent_at.append(clock())
            first = len(sent_at) == 1
        return error(429, 42000, headers={"Retry-After": "3"}) if first else ok([])

    class PauseSeen(Observer):
        paused = threading.Event()

        def retrying(self, reason: str, delay_seconds: float) -> None:
            super().retrying(reason, delay_seconds)
            self.paused.set()

    observer = PauseSeen()
    client = make_client(handler, observer=observer, budget=budget)
    limited = threading.Thread(target=client.fetch, args=({},))
    limited.start()
    assert observer.paused.wait(10)  # its 429 is in; it waits in the budget now
    other = threading.Thread(target=client.fetch, args=({},))
    other.start()
    until_waiting(budget, 2)  # the other thread queued behind the pause too
    assert clock.gate is not None
    clock.gate.set()
    limited.join(10)
    other.join(10)
    assert len(sent_at) == 3
    assert sent_at[0] == 0.0
    assert all(3.0 <= t <= 4.0 for t in sent_at[1:])  # Retry-After plus jitter, for both


def test_the_page_size_ceiling_only_falls_when_threads_shrink_it_at_once() -> None:
    ceilings: list[int] = []
    client: DataApiClient

    def handler(request: httpx2.Request) -> httpx2.Response:
        ceilings.append(client.limit_ceiling)
        limit = json.loads(form_of(request)["request"])["limit"]
        return error(200, 20027) if limit > 6 else ok([{"limit": limit}])

    client = make_client(handler)
    start = threading.Barrier(16)
    pages: list[Page] = []

    def fetch() -> None:
        start.wait(10)
        pages.append(client.fetch({"limit": 50}))

    threads = [threading.Thread(target=fetch) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(pages) == 16
    assert all(page.limit <= 6 for page in pages)
    assert client.limit_ceiling == 6
    assert ceilings == sorted(ceilings, reverse=True)  # never raised back by a late thread


def test_a_body_past_the_transports_bound_halves_the_limit() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        limit = json.loads(form_of(request)["request"])["limit"]
        return ok([{"session_id": "x" * 100}] * limit)

    client = DataApiClient(
        URL,
        Credentials("consumer", SecretStr(SECRET), "localhost"),
        transport=HttpTransport(transport=httpx2.MockTransport(handler), max_response_bytes=2000),
        budget=RequestBudget(1e9),
    )
    page = client.fetch({"limit": 50})
    assert page.limit == 12 and len(page.records) == 12
    assert client.limit_ceiling == 12


def test_priority_reaches_the_budget() -> None:
    class Recording(RequestBudget):
        def __init__(self) -> None:
            super().__init__(1e9)
            self.asked: list[bool] = []

        def acquire(self, priority: bool = False, stop: threading.Event | None = None) -> float:
            self.asked.append(priority)
            return super().acquire(priority, stop)

    budget = Recording()
    handler, _ = scripted(ok([]), ok([]), ok([]))
    client = make_client(handler, budget=budget)
    client.fetch({}, priority=True)
    client.fetch({})
    client.fetch_once({}, priority=True)
    assert budget.asked == [True, False, True]
