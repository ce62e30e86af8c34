"""Helpers for end-to-end tests: an emulator, a connector process, and what landed in Kafka."""

from __future__ import annotations

import io
import itertools
import json
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastavro import parse_schema, schemaless_reader

from connector.emulator.service import Emulator
from connector.kafka.reader import Received, read_topic
from tests.support.connector_proc import ConnectorProcess, wait_for
from tests.support.murmur2 import java_partition

AVRO_DIR = Path(__file__).resolve().parents[2] / "avro"


def current_value_schema() -> dict[str, Any]:
    """The newest value schema file in avro/, parsed independently of connector.kafka."""
    files = sorted(AVRO_DIR.glob("*.v*.avsc"), key=lambda p: int(p.stem.rsplit(".v", 1)[1]))
    value_files = [p for p in files if "key" not in p.name]
    schema: dict[str, Any] = json.loads(value_files[-1].read_text())
    return schema


def decode_single_object(data: bytes, schema: dict[str, Any]) -> dict[str, Any]:
    """The Avro spec's single-object encoding, read with fastavro and the schema file only."""
    assert data[:2] == b"\xc3\x01", f"not single-object encoded: {data[:2].hex()}"
    event = schemaless_reader(io.BytesIO(data[10:]), parse_schema(schema), None)
    assert isinstance(event, dict)
    return event


def content(record: dict[str, Any]) -> tuple[Any, ...]:
    """What a change is about (status and scores), comparable between the API and events."""

    def num(value: Any) -> float | None:
        return None if value is None else float(value)

    subscores = tuple(
        (s.get("id"), num(s.get("score")), num(s.get("max_score")))
        for s in (record.get("subscores") or [])
    )
    return (record.get("status"), num(record.get("score")), num(record.get("max_score")), subscores)


@dataclass
class Landed:
    """What a read_committed consumer sees of the output topic."""

    messages: list[Received] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    def by_session(self) -> dict[str, list[dict[str, Any]]]:
        grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for event in self.events:  # per partition order is kept by read_topic
            grouped[event["session_id"]].append(event)
        return grouped


def duplicate_deliveries(landed: Landed) -> list[tuple[str, str]]:
    """Events that landed twice: the same transition of the same record version.

    ``event_id`` names a transition (session, new content, previous content), so a session
    that really cycles (reopened and submitted again with the same scores) repeats an id
    legitimately; a redelivery also repeats the record's ``dt_updated``.
    """
    seen: set[tuple[str, str]] = set()
    duplicates = []
    for event in landed.events:
        delivery = (event["event_id"], event["dt_updated"])
        if delivery in seen:
            duplicates.append(delivery)
        seen.add(delivery)
    return duplicates


def assert_stream_is_clean(landed: Landed, partitions: int = 4) -> None:
    """No duplicate, no repeat, in order per session, keyed and partitioned like Java."""
    assert duplicate_deliveries(landed) == [], "an event was delivered twice"
    for events in landed.by_session().values():
        for before, after in itertools.pairwise(events):
            assert content(before) != content(after), "two consecutive identical events"
            assert before["dt_updated"] <= after["dt_updated"], "events out of order"
    for message, event in zip(landed.messages, landed.events, strict=True):
        assert message.key == event["user_id"].encode()
        assert message.partition == java_partition(event["user_id"].encode(), partitions)


def read_events(client_config: dict[str, str], topic: str, idle: float = 1.5) -> Landed:
    schema = current_value_schema()
    landed = Landed()
    for message in read_topic(client_config, topic, idle_timeout=idle):
        landed.messages.append(message)
        landed.events.append(decode_single_object(message.value or b"", schema))
    return landed


def count_messages(client_config: dict[str, str], topic: str, idle: float = 1.0) -> int:
    return sum(1 for _ in read_topic(client_config, topic, idle_timeout=idle))


def mismatched_sessions(emulator: Emulator, landed: Landed) -> list[str]:
    """Sessions whose last event differs from the emulator's current state."""
    last = {sid: events[-1] for sid, events in landed.by_session().items()}
    return [
        s["session_id"]
        for s in emulator.sessions()
        if s["session_id"] not in last or content(last[s["session_id"]]) != content(s)
    ]


def await_convergence(
    emulator: Emulator, client_config: dict[str, str], topic: str, timeout: float = 120
) -> Landed:
    """Wait until, for every session, the last event equals the emulator's state."""
    box: list[Landed] = []

    def converged() -> bool:
        box[:] = [read_events(client_config, topic, idle=1.0)]
        return not mismatched_sessions(emulator, box[0])

    try:
        wait_for(converged, timeout, "the events to match the emulator's sessions", interval=0.5)
    except AssertionError:
        missing = mismatched_sessions(emulator, box[0]) if box else []
        raise AssertionError(
            f"{len(missing)} sessions never converged, e.g. {missing[:3]}"
        ) from None
    return box[0]


@dataclass
class Pipeline:
    """One emulator, one connector identity, fresh topics: an isolated end-to-end setup."""

    emulator: Emulator
    kafka_config: dict[str, str]
    env: dict[str, str]
    log_dir: Path
    processes: list[ConnectorProcess] = field(default_factory=list)

    @property
    def topic(self) -> str:
        return self.env["KAFKA_TOPIC"]

    def connector(self, **overrides: str) -> ConnectorProcess:
        index = len(self.processes)
        process = ConnectorProcess(
            {**self.env, **overrides}, self.log_dir / f"connector-{index}.log"
        )
        self.processes.append(process)
        return process.start()

    def converge(self, timeout: float = 120) -> Landed:
        return await_convergence(self.emulator, self.kafka_config, self.topic, timeout)

    def logs(self) -> str:
        return "\n".join(f"--- {p.log_path.name}\n{p.log_tail()}" for p in self.processes)

    def stop_all(self) -> None:
        for process in self.processes:
            if process.alive():
                process.kill()


def pipeline_env(emulator: Emulator, bootstrap: str) -> dict[str, str]:
    name = f"it-{uuid.uuid4().hex[:8]}"
    return {
        **emulator.env(),
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "CONNECTOR_NAME": name,
        "KAFKA_TOPIC": f"{name}.scores",
        "KAFKA_TOPIC_PARTITIONS": "4",
        "LEARNOSITY_POLL_INTERVAL_SECONDS": "0.3",
        "LEARNOSITY_MAX_REQUESTS_PER_SECOND": "1000",
        "KAFKA_COMMIT_INTERVAL_MS": "200",
        "SHUTDOWN_TIMEOUT_SECONDS": "15",
    }
