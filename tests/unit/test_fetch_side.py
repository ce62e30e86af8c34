"""The runner's side of the fetch process, without a process: what its reader thread
does with what arrives on the pipe."""

from __future__ import annotations

import pickle
import threading

from connector.catchup.crawl import CrawlStats, Fetched
from connector.catchup.lanes import TAIL_ID, Lane, Step
from connector.errors import FatalError
from connector.fetch_side import FetchPlan, FetchProcess
from connector.observability.metrics import Metrics
from connector.settings import Settings

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
    process = FetchProcess(FetchPlan(SETTINGS), (), observer=metrics, stop=threading.Event())
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


def test_the_childs_stats_reach_the_metrics() -> None:
    _, metrics = process_reading(pickle.dumps(("stats", CrawlStats(7, 12, 0.15))))
    rendered = metrics.render().decode()
    assert "learnosity_connector_api_requests_in_flight 7.0" in rendered
    assert "learnosity_connector_fetch_workers 12.0" in rendered


def test_items_of_an_older_generation_are_dropped() -> None:
    lane = Lane(TAIL_ID, token="t1", seq=1)
    process, _ = process_reading(
        pickle.dumps(("page", Fetched(0, (lane,), step=Step.MORE))),
        pickle.dumps(("page", Fetched(1, (lane,), step=Step.MORE))),
    )
    process._generation = 1  # as after one rewind
    item = process.get(timeout=1)
    assert item is not None and item.generation == 1
