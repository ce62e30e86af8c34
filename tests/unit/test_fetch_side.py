"""The runner's side of the fetch process, without a process: what its reader thread
does with what arrives on the pipe."""

from __future__ import annotations

import pickle
import threading
from typing import Any

from connector import fastjson
from connector.errors import FatalError
from connector.fetch_side import FetchPlan, FetchProcess, RawPage, _SharedPreparing
from connector.learnosity.fetcher import Fetched
from connector.learnosity.paging import Step
from connector.models import Page, PreparedPage
from connector.observability.metrics import Metrics
from connector.settings import Settings, StartFrom
from tests.support.records import documented_record

SETTINGS = Settings(
    learnosity_consumer_key="k",
    learnosity_consumer_secret="s3cret",  # type: ignore[arg-type]
    kafka_bootstrap_servers="unused:9092",
)


class ScriptedPipe:
    """Hands out the given messages, then the end of the pipe."""

    def __init__(self, *messages: bytes) -> None:
        self.messages = list(messages)

    def recv_bytes(self) -> bytes:
        if not self.messages:
            raise EOFError
        return self.messages.pop(0)


def process_reading(*messages: bytes) -> tuple[FetchProcess, Metrics]:
    metrics = Metrics()
    process = FetchProcess(
        FetchPlan(SETTINGS, StartFrom("earliest")), None, observer=metrics, stop=threading.Event()
    )
    process._conn = ScriptedPipe(*messages)  # type: ignore[assignment]
    process._read()  # the reader thread's loop, run here until the pipe ends
    return process, metrics


def test_observer_calls_reach_the_metrics_and_nothing_else_is_called() -> None:
    _, metrics = process_reading(
        pickle.dumps(("api", ("request_finished", ("ok", 0.25)))),
        pickle.dumps(("api", ("render", ()))),  # not an observer call: ignored
    )
    rendered = metrics.render().decode()
    assert 'learnosity_connector_api_requests_total{outcome="ok"} 1.0' in rendered


def test_a_message_the_reader_cannot_take_stops_the_runner_with_one_clear_error() -> None:
    process, _ = process_reading(b"not a pickle")
    item = process.get(timeout=1)
    assert item is not None and isinstance(item.error, FatalError)
    assert "reading from the fetch process failed" in str(item.error)


RECORDS: list[Any] = [
    documented_record(session_id="s-1"),
    documented_record(session_id="s-2", score=3.5, status="Completed"),
    {"session_id": "s-3"},  # invalid: a dead letter, either side
]


def summary(page: PreparedPage) -> tuple[Any, ...]:
    """What a prepared page says, but for the time it was prepared at (in the bodies)."""
    records = [(r.session_id, r.user_id, r.status, r.fingerprint) for r in page.records]
    return records, page.dead_letters, page.fetched, page.position


def page_message(page: Any, cursor: str) -> bytes:
    return pickle.dumps(("page", Fetched(0, page, Step.MORE, cursor)))


def test_a_page_handed_over_raw_is_prepared_in_the_runner_as_the_child_would() -> None:
    prepare = FetchPlan(SETTINGS, StartFrom("earliest")).preparer()
    in_child = prepare(Page(tuple(RECORDS), "c1"))
    process, _ = process_reading(
        page_message(RawPage(fastjson.dumps(RECORDS)), "c1"), page_message(in_child, "c2")
    )
    raw, prepared = process.get(timeout=1), process.get(timeout=1)
    assert raw is not None and prepared is not None
    assert isinstance(raw.page, PreparedPage) and raw.cursor == "c1"
    assert summary(raw.page) == summary(in_child) and len(raw.page.dead_letters) == 1
    assert prepared.page == in_child and prepared.cursor == "c2"


def test_the_backlog_the_child_reads_follows_the_runners_queue() -> None:
    pages = [page_message(RawPage(b"[]"), f"c{n}") for n in range(3)]
    process, _ = process_reading(*pages)
    assert process._backlog.value == 4  # the pages and the end of the pipe
    process.get(timeout=1)
    assert process._backlog.value == 3


def test_the_child_hands_pages_over_raw_only_while_the_runner_waits() -> None:
    waiting = [True]
    shared = _SharedPreparing(
        FetchPlan(SETTINGS, StartFrom("earliest")).preparer(), lambda: waiting[0]
    )
    page = Page(tuple(RECORDS), "c1")
    raw = shared(page)
    assert isinstance(raw, RawPage) and raw.page().records == page.records
    waiting[0] = False
    assert isinstance(shared(page), PreparedPage)
    # what JSON cannot carry exactly (an int beyond 64 bits) is prepared in the child
    waiting[0] = True
    huge = Page((documented_record(score=2**70),), "c1")
    assert isinstance(shared(huge), PreparedPage)
