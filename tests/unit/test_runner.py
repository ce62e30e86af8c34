"""The runner's ordering of side effects, with a scripted fetcher and a recording producer.

What matters here: the checkpoint (session states and lanes) moves only after a commit;
an abortable failure aborts, rewinds the fetcher to the committed lanes and decides again
against the committed state; a record the schema cannot carry becomes a counted dead
letter; a finished slice leaves a tombstone. Every event carries its CloudEvents headers;
with a table topic, each event goes there too, keyed by its session.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any

import pytest

from connector.catchup.crawl import Fetched
from connector.catchup.lanes import TAIL_ID, TAIL_KEY, Lane, Step
from connector.changes.prepare import PagePreparer
from connector.checkpoint import CATCHUP_KEY, Checkpoint
from connector.errors import AbortableError, InvalidRecordError
from connector.models import ChangeKind, Page
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

    def __init__(self, pages: list[Fetched], stop: threading.Event) -> None:
        self.pages = pages
        self.stop = stop
        self.rewinds: list[tuple[Lane, ...]] = []

    def start(self) -> None:
        pass

    def get(self, timeout: float) -> Fetched | None:
        if not self.pages:
            self.stop.set()
            return None
        return self.pages.pop(0)

    def rewind(self, lanes: tuple[Lane, ...]) -> None:
        self.rewinds.append(lanes)

    def join(self, timeout: float) -> None:
        pass


class RecordingProducer:
    transactional = True
    max_message_bytes = 1_000_000

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

    def produce_with_headers(
        self, topic: str, entries: Iterable[tuple[bytes, bytes | None, Any]]
    ) -> None:
        for key, value, headers in entries:
            self.produce(topic, key, value, headers)

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
        #: every assemble call's decided values (event_id, change, previous_status,
        #: previous_score, previous_max_score: ``serde.DECIDED_FIELDS``)
        self.decided: list[tuple[Any, ...]] = []

    def encode(self, fields: Mapping[str, Any]) -> tuple[bytes, ...]:
        if fields["session_id"] == self.refuse_session:
            raise InvalidRecordError("does not fit the schema", reason="not_serializable")
        return (fields["session_id"].encode(),)

    def assemble(self, header: bytes, segments: tuple[bytes, ...], *decided: Any) -> bytes:
        assert len(decided) == 5, decided
        self.decided.append(decided)
        kind: str = decided[1]
        return header + segments[0] + b":" + kind.encode()


START = Lane(TAIL_ID, token="t0", seq=1)


def page(
    token: str,
    *records: dict[str, Any],
    body: Body | None = None,
    lane: Lane | None = None,
    step: Step = Step.CAUGHT_UP,
) -> Fetched:
    """A prepared page of ``lane`` (the tail by default), which moved to ``token``."""
    prepare = PagePreparer(include_responses=False, encode_body=(body or Body()).encode, source={})
    base = lane or START
    moved = Lane(base.id, lo=base.lo, hi=base.hi, end=base.end, token=token, seq=int(token[1:]) + 1)
    if step is Step.DONE:
        moved = Lane(moved.id, token=token, seq=moved.seq, done=True)
    return Fetched(0, (moved,), prepare(Page(tuple(records), token, limit=50)), step)


def run(
    pages: list[Fetched],
    producer: RecordingProducer,
    checkpoint: Checkpoint | None = None,
    settings: Settings = SETTINGS,
    body: Body | None = None,
) -> tuple[Runner, ScriptedFetcher, Metrics]:
    stop = threading.Event()
    fetcher = ScriptedFetcher(pages, stop)
    metrics = Metrics()
    runner = Runner(
        settings,
        producer=producer,  # type: ignore[arg-type]
        encoder=Encoder(),  # type: ignore[arg-type]
        checkpoint=checkpoint if checkpoint is not None else Checkpoint(),
        start=START,
        make_fetcher=lambda lanes: fetcher,
        metrics=metrics,
        health=Health(),
        stop=stop,
        body=body or Body(),  # type: ignore[arg-type]
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
    # the session entry, the tail twice, a commit entry per transaction
    assert topics(producer.committed).count(SETTINGS.state_topic) == 5
    cursor = [m for m in producer.committed if m[1] == TAIL_KEY][-1]
    assert Lane.decode(TAIL_KEY, cursor[2] or b"").token == "t2"
    tail = runner.checkpoint.tail
    assert tail is not None and tail.token == "t2" and "a" in runner.checkpoint.sessions
    assert metrics.repeats_dropped._value.get() == 1


def test_a_finished_slice_is_a_tombstone_committed_with_its_events() -> None:
    producer = RecordingProducer()
    slice_lane = Lane("s1", lo=100, hi=201, end=200, token="t0", seq=1)
    checkpoint = Checkpoint()
    checkpoint.lanes["s1"] = slice_lane
    a = documented_record(session_id="a", user_id="ua")
    runner, _, metrics = run([page("t1", a, lane=slice_lane, step=Step.DONE)], producer, checkpoint)
    state_entries = {
        key: value for topic, key, value, _ in producer.committed if topic == SETTINGS.state_topic
    }
    assert state_entries[b"slice:s1"] is None  # done: a tombstone
    assert CATCHUP_KEY in state_entries
    assert "s1" not in runner.checkpoint.lanes and runner.checkpoint.slices_done == 1
    assert metrics.slices.labels("done")._value.get() == 1


def test_an_abortable_commit_rewinds_and_leaves_state_untouched() -> None:
    producer = RecordingProducer(fail_commits=1)
    a = documented_record(session_id="a", user_id="ua")
    runner, fetcher, metrics = run([page("t1", a), page("t1", a)], producer)
    assert producer.aborts == 1
    assert fetcher.rewinds == [(START,)]  # back to the committed lanes
    # the second delivery of the page is decided against the committed (empty) state,
    # so the event is produced again, in the transaction that commits
    events = [m for m in producer.committed if m[0] == SETTINGS.kafka_topic]
    assert [value for _, _, value, _ in events] == [b"a:created"]
    tail = runner.checkpoint.tail
    assert tail is not None and tail.token == "t1"
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
    checkpoint = Checkpoint()
    a = documented_record(session_id="a", user_id="ua")
    run([page("t1", a)], producer, checkpoint)
    assert ("a" in checkpoint.sessions) is (fail_commits == 0)


# --- what every event carries, and the table topic ----------------------------------------------
Message = tuple[str, bytes | None, bytes | None, Any]


def headers_of(message: Message) -> dict[str, bytes]:
    headers = message[3]
    assert isinstance(headers, list)
    as_dict = dict(headers)
    assert len(as_dict) == len(headers), "a header twice"
    return as_dict


def test_the_decided_fields_reach_the_body_in_order() -> None:
    producer, body = RecordingProducer(), Body()
    a1 = documented_record(session_id="a", user_id="ua", status="Incomplete", score=3)
    a2 = documented_record(session_id="a", user_id="ua", status="Completed", score=5)
    run([page("t1", a1), page("t2", a2)], producer, body=body)
    (created_id, *created), (changed_id, *changed) = body.decided
    assert created == [ChangeKind.CREATED, None, None, None]
    assert changed == [ChangeKind.STATUS_CHANGED, "Incomplete", 3.0, 40.0]
    assert created_id != changed_id


def test_every_event_carries_cloudevents_headers() -> None:
    producer, body = RecordingProducer(), Body()
    a = documented_record(session_id="a", user_id="ua", dt_updated="2025-03-04T05:06:07.8Z")
    b = documented_record(session_id="b", user_id="ub")
    run([page("t1", a, b), page("t2", {**a, "score": 1})], producer, body=body)
    events = [m for m in producer.committed if m[0] == SETTINGS.kafka_topic]
    assert len(events) == 3
    source = f"/learnosity-kafka-connector/{SETTINGS.connector_name}".encode()
    for message, (event_id, kind, *_) in zip(events, body.decided, strict=True):
        headers = headers_of(message)
        assert headers["ce_id"] == event_id.encode()
        assert headers["ce_type"] == f"learnosity.scores.session.{kind}".encode()
        assert headers["ce_subject"] == (message[2] or b"").split(b":")[0]  # the session id
        assert headers["ce_specversion"] == b"1.0"
        assert headers["content-type"] == b"application/avro"
        assert headers["ce_source"] == source
    times = [headers_of(m).get("ce_time") for m in events]
    assert times == [b"2025-03-04T05:06:07.800Z", None, b"2025-03-04T05:06:07.800Z"]


def test_without_a_table_topic_only_the_events_topic_gets_events() -> None:
    producer = RecordingProducer()
    run([page("t1", documented_record(session_id="a", user_id="ua"))], producer)
    assert SETTINGS.kafka_table_topic == ""
    assert set(topics(producer.committed)) == {SETTINGS.kafka_topic, SETTINGS.state_topic}


def test_the_table_topic_gets_each_event_keyed_by_session_in_the_same_transaction() -> None:
    settings = SETTINGS.model_copy(update={"kafka_table_topic": "scores.table"})
    producer = RecordingProducer(fail_commits=1)
    a = documented_record(session_id="a", user_id="ua", score=1)
    b = documented_record(session_id="b", user_id="ua", score=1)
    pages = [page("t1", a, b), page("t1", a, b), page("t2", {**a, "score": 2})]
    run(pages, producer, settings=settings)
    assert producer.aborts == 1  # the first transaction's table messages went with it
    events = [m for m in producer.committed if m[0] == SETTINGS.kafka_topic]
    table = [m for m in producer.committed if m[0] == "scores.table"]
    assert [m[1] for m in events] == [b"ua", b"ua", b"ua"]  # by user
    assert [m[1] for m in table] == [b"a", b"b", b"a"]  # by session
    assert [m[2] for m in table] == [m[2] for m in events]  # the same values
    assert [headers_of(m) for m in table] == [headers_of(m) for m in events]
    latest = {m[1]: m[2] for m in table}
    assert latest == {b"a": b"a:score_changed", b"b": b"b:created"}
