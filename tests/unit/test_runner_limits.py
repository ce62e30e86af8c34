"""An event larger than a Kafka message may be is a dead letter, and the pipeline goes on."""

from __future__ import annotations

import threading

from connector.checkpoint import Checkpoint
from connector.observability.health import Health
from connector.observability.metrics import Metrics
from connector.runner import MESSAGE_HEADROOM, Runner
from tests.support.records import documented_record
from tests.unit.test_runner import (
    SETTINGS,
    START,
    Body,
    Encoder,
    RecordingProducer,
    ScriptedFetcher,
    page,
)


class SmallProducer(RecordingProducer):
    """A producer whose messages may hold 200 bytes beyond the headroom."""

    max_message_bytes = MESSAGE_HEADROOM + 200


class WideBody(Body):
    """A body as long as the session id says (``"big"``: 5,000 bytes)."""

    def encode(self, fields: dict[str, object]) -> tuple[bytes, ...]:  # type: ignore[override]
        sid = str(fields["session_id"])
        return ((sid * (5000 // len(sid) + 1)).encode()[:5000] if sid == "big" else sid.encode(),)


def test_an_event_too_large_for_a_message_is_a_dead_letter_cut_to_fit() -> None:
    producer = SmallProducer()
    stop = threading.Event()
    records = [documented_record(session_id=s, user_id="u") for s in ("a", "big", "b")]
    fetcher = ScriptedFetcher([page("t1", *records, body=WideBody())], stop)
    metrics = Metrics()
    checkpoint = Checkpoint()
    Runner(
        SETTINGS,
        producer=producer,  # type: ignore[arg-type]
        encoder=Encoder(),  # type: ignore[arg-type]
        checkpoint=checkpoint,
        start=START,
        make_fetcher=lambda lanes: fetcher,
        metrics=metrics,
        health=Health(),
        stop=stop,
        body=WideBody(),  # type: ignore[arg-type]
    ).run()
    events = [m for m in producer.committed if m[0] == SETTINGS.kafka_topic]
    assert sorted(value or b"" for _, _, value, _ in events) == [b"a:created", b"b:created"]
    dead = [m for m in producer.committed if m[0] == SETTINGS.kafka_dlq_topic]
    assert len(dead) == 1
    _, key, value, headers = dead[0]
    assert key == b"big" and value is not None and len(value) == 200
    assert dict(headers)["error.reason"] == b"too_large"
    assert b"5008 bytes" in dict(headers)["error.message"]
    assert metrics.dead_letters.labels("too_large")._value.get() == 1
    assert "big" in checkpoint.sessions  # a repeat of it is not sent again
