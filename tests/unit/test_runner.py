"""The runner's ordering of side effects, with a scripted fetcher and a recording producer.

What matters here: the in-memory state and cursor move only after a commit; an abortable
failure aborts, rewinds the fetcher to the committed cursor and decides again against
the committed state; a record the schema cannot carry becomes a counted dead letter.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any

import pytest

from connector.changes.prepare import PagePreparer
from connector.changes.state import SessionState
from connector.errors import AbortableError, InvalidRecordError
from connector.kafka.state_topic import CURSOR_KEY, StoredCursor
from connector.learnosity.fetcher import Fetched
from connector.learnosity.paging import Step
from connector.models import Page, PreparedPage
from connector.observability.health import Health
from connector.observability.metrics import Metrics
from connector.runner import Runner
from connector.settings import Settings
from tests.support.records import documented_record

SETTINGS = Settings(
    learnosity_consumer_key="k",
    learnosity_consumer_secret="s3cret",  # type: ignore[arg-type]
    kafka_bootstrap_servers="unused:9092",
    kafka_commit_interval_ms=10,
)


class ScriptedFetcher:
    """Hands out prepared pages; records rewinds; sets ``stop`` when the script runs out."""

    def __init__(self, pages: list[Fetched[PreparedPage]], stop: threading.Event) -> None:
        self.pages = pages
        self.stop = stop
        self.generation = 0
        self.rewinds: list[str | None] = []

    def start(self) -> None:
        pass

    def get(self, timeout: float) -> Fetched[PreparedPage] | None:
        if not self.pages:
            self.stop.set()
            return None
        return self.pages.pop(0)

    def rewind(self, cursor: str | None) -> None:
        self.rewinds.append(cursor)

    def join(self, timeout: float) -> None:
        pass


class RecordingProducer:
    transactional = True

    def __init__(self, fail_commits: int = 0) -> None:
        self.open: list[tuple[str, bytes | None, bytes | None, Any]] = []
        self.committed: list[tuple[str, bytes | None, bytes | None, Any]] = []
        self.aborts = 0
        self.fail_commits = fail_commits

    def produce(
        self, topic: str, key: bytes | None, value: bytes | None, headers: Any = None
    ) -> None:
        self.open.append((topic, key, value, headers))

    def produce_many(self, topic: str, entries: Iterable[tuple[bytes, bytes | None]]) -> None:
        for key, value in entries:
            self.produce(topic, key, value)

    def commit(self) -> None:
        if self.fail_commits:
            self.fail_commits -= 1
            raise AbortableError("commit_transaction: broker said abort")
        self.committed.extend(self.open)
        self.open = []

    def abort(self) -> None:
        self.aborts += 1
        self.open = []

    def flush(self) -> None:
        pass


class Encoder:
    header = b""

    def register(self) -> None:
        pass


class Body:
    """Stands in for BodyEncoder: a body is the session id, assembled with the change."""

    def __init__(self, refuse_session: str | None = None) -> None:
        self.refuse_session = refuse_session

    def encode(self, fields: Mapping[str, Any]) -> tuple[bytes, ...]:
        if fields["session_id"] == self.refuse_session:
            raise InvalidRecordError("does not fit the schema", reason="not_serializable")
        return (fields["session_id"].encode(),)

    def assemble(self, header: bytes, segments: tuple[bytes, ...], *decided: Any) -> bytes:
        kind: str = decided[1]
        return header + segments[0] + b":" + kind.encode()


def page(token: str, *records: dict[str, Any], body: Body | None = None) -> Fetched[PreparedPage]:
    prepare = PagePreparer(include_responses=False, encode_body=(body or Body()).encode, source={})
    return Fetched(0, prepare(Page(tuple(records), token, limit=50)), Step.CAUGHT_UP, token)


def run(
    pages: list[Fetched[PreparedPage]],
    producer: RecordingProducer,
    state: SessionState | None = None,
) -> tuple[Runner, ScriptedFetcher, Metrics]:
    stop = threading.Event()
    fetcher = ScriptedFetcher(pages, stop)
    metrics = Metrics()
    runner = Runner(
        SETTINGS,
        producer=producer,  # type: ignore[arg-type]
        encoder=Encoder(),  # type: ignore[arg-type]
        state=state if state is not None else SessionState(),
        cursor=StoredCursor(next_token="t0"),
        make_fetcher=lambda cursor: fetcher,
        metrics=metrics,
        health=Health(),
        stop=stop,
        body=Body(),  # type: ignore[arg-type]
    )
    runner.run()
    return runner, fetcher, metrics


def topics(messages: list[tuple[str, bytes | None, bytes | None, Any]]) -> list[str]:
    return [topic for topic, *_ in messages]


def test_events_state_and_cursor_commit_together() -> None:
    producer = RecordingProducer()
    a = documented_record(session_id="a", user_id="ua")
    runner, _, metrics = run([page("t1", a), page("t2", a)], producer)
    events = [m for m in producer.committed if m[0] == SETTINGS.kafka_topic]
    assert [(key, value) for _, key, value, _ in events] == [(b"ua", b"a:created")]
    assert topics(producer.committed).count(SETTINGS.state_topic) == 3  # entry + 2 cursors
    cursor = [m for m in producer.committed if m[1] == CURSOR_KEY][-1]
    assert StoredCursor.decode(cursor[2] or b"").next_token == "t2"
    assert runner.committed_cursor == "t2" and "a" in runner.state
    assert metrics.repeats_dropped._value.get() == 1


def test_an_abortable_commit_rewinds_and_leaves_state_untouched() -> None:
    producer = RecordingProducer(fail_commits=1)
    a = documented_record(session_id="a", user_id="ua")
    runner, fetcher, metrics = run([page("t1", a), page("t1", a)], producer)
    assert producer.aborts == 1
    assert fetcher.rewinds == ["t0"]  # back to the committed cursor
    # the second delivery of the page is decided against the committed (empty) state,
    # so the event is produced again, in the transaction that commits
    events = [m for m in producer.committed if m[0] == SETTINGS.kafka_topic]
    assert [value for _, _, value, _ in events] == [b"a:created"]
    assert runner.committed_cursor == "t1"
    assert metrics.transactions.labels("aborted")._value.get() == 1


def test_a_record_the_schema_refuses_is_a_counted_dead_letter() -> None:
    producer = RecordingProducer()
    good = documented_record(session_id="good", user_id="u1")
    refused = documented_record(session_id="refused", user_id="u2")
    invalid = {"session_id": 5}
    _, _, metrics = run(
        [page("t1", good, refused, invalid, body=Body(refuse_session="refused"))], producer
    )
    dead = [m for m in producer.committed if m[0] == SETTINGS.kafka_dlq_topic]
    assert len(dead) == 2
    reasons = sorted(dict(headers)["error.reason"] for *_, headers in dead)
    assert b"not_serializable" in reasons  # the other is the invalid record's
    assert metrics.dead_letters.labels("not_serializable")._value.get() == 1
    assert (
        sum(
            metrics.changes_emitted.labels(k)._value.get()
            for k in ("created", "status_changed", "score_changed")
        )
        == 1
    )


@pytest.mark.parametrize("fail_commits", [0, 1])
def test_state_is_applied_only_after_a_commit(fail_commits: int) -> None:
    producer = RecordingProducer(fail_commits=fail_commits)
    state = SessionState()
    a = documented_record(session_id="a", user_id="ua")
    run([page("t1", a)], producer, state=state)
    assert ("a" in state) is (fail_commits == 0)
