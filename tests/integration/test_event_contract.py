"""The event contract v1 (issue 13) on the real stack: broker, Apicurio registry, emulator.

What a downstream team relies on, checked with readers that share no code with the
connector's encoder: the registry path decoded by confluent-kafka's ``AvroDeserializer``,
the single-object path by fastavro and the schema file in ``avro/``; times typed;
CloudEvents headers on every event, consistent with its value; the table topic compacted
and holding each session's last event; and an incompatible schema on the subject stops
``check`` and ``run`` with one line each.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from connector.kafka.reader import Received, read_topic
from dev.registry import SchemaRegistry
from tests.fixtures.pipeline import MakePipeline
from tests.integration.test_commands import command
from tests.support.connector_proc import free_port, wait_for
from tests.support.pipeline import (
    Pipeline,
    assert_stream_is_clean,
    content,
    current_value_schema,
    decode_single_object,
)

pytestmark = pytest.mark.integration

TIMES = ("dt_started", "dt_completed", "dt_saved", "dt_updated", "observed_at")
CE_REQUIRED = ("ce_specversion", "ce_id", "ce_source", "ce_type", "content-type")


def api_time(text: str | None) -> datetime | None:
    """An API time as the event should carry it: UTC, to the millisecond."""
    if not text:
        return None
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000).astimezone(UTC)


def read_all(pipeline: Pipeline, topic: str, at_least: int) -> list[Received]:
    messages: list[Received] = []

    def landed() -> bool:
        messages[:] = read_topic(pipeline.kafka_config, topic, idle_timeout=1.0)
        return len(messages) >= at_least

    wait_for(landed, 90, f"{at_least} messages in {topic}")
    return messages


def assert_typed(event: Mapping[str, Any]) -> None:
    """Times are datetimes (timestamp-millis), the id a UUID: no string parsing needed."""
    assert isinstance(event["event_id"], uuid.UUID), event["event_id"]
    for name in TIMES:
        value = event[name]
        assert value is None or (isinstance(value, datetime) and value.tzinfo is not None), name
    assert event["observed_at"] is not None and event["dt_updated"] is not None
    for response in event["responses"] or []:
        moment = response["dt_score_updated"]
        assert moment is None or isinstance(moment, datetime)


def assert_matches_the_api(
    event: Mapping[str, Any], record: Mapping[str, Any], *, repeats_since: bool = False
) -> None:
    """A session's last event says what the API says now: status, scores, and times (a
    repeat since, e.g. a save that changed nothing that matters, moves the API's times on
    without an event: then the event's are no later)."""
    assert content(dict(event)) == content(dict(record))
    for name in ("dt_started", "dt_completed", "dt_saved", "dt_updated"):
        now = api_time(record.get(name))
        if not repeats_since:
            assert event[name] == now, name
        elif event[name] is not None:
            assert now is not None and event[name] <= now, name


def assert_cloudevent(message: Received, event: Mapping[str, Any], connector_name: str) -> None:
    headers = dict(message.headers)
    assert len(headers) == len(message.headers), "an attribute twice"
    assert set(CE_REQUIRED) <= set(headers), headers
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_id"] == str(event["event_id"]).encode()
    assert headers["ce_source"] == f"/learnosity-kafka-connector/{connector_name}".encode()
    assert headers["ce_type"] == f"learnosity.scores.session.{event['change']}".encode()
    assert headers["ce_subject"] == event["session_id"].encode()
    assert headers["content-type"] == b"application/avro"
    assert datetime.fromisoformat(headers["ce_time"].decode()) == event["dt_updated"]


# --- the registry path ---------------------------------------------------------------------
def test_registry_events_decode_with_confluents_deserializer_typed(
    make_pipeline: MakePipeline, schema_registry: SchemaRegistry
) -> None:
    pipeline = make_pipeline(sessions=120)
    table_topic = f"{pipeline.topic}.table"
    connector = pipeline.connector(
        SCHEMA_REGISTRY_URL=schema_registry.url, KAFKA_TABLE_TOPIC=table_topic
    )
    connector.wait_ready()
    messages = read_all(pipeline, pipeline.topic, 120)
    assert len(messages) == 120, pipeline.logs()

    client = SchemaRegistryClient({"url": schema_registry.url})
    deserializer = AvroDeserializer(client)
    context = SerializationContext(pipeline.topic, MessageField.VALUE)
    sessions = {s["session_id"]: s for s in pipeline.emulator.sessions()}
    subject = f"{pipeline.topic}-value"
    registered = client.get_latest_version(subject)
    for message in messages:
        assert message.value is not None and message.value[:1] == b"\x00"
        assert int.from_bytes(message.value[1:5], "big") == registered.schema_id
        event = deserializer(message.value, context)
        assert isinstance(event, dict)
        assert_typed(event)
        assert event["change"] == "created"
        assert_matches_the_api(event, sessions[event["session_id"]])
        assert_cloudevent(message, event, pipeline.env["CONNECTOR_NAME"])
    # the connector set the subject's compatibility when it registered
    assert client.get_compatibility(subject) == "BACKWARD_TRANSITIVE"
    # the table topic's own subject names the same schema (where ksqlDB and Flink look)
    table_subject = f"{table_topic}-value"
    assert client.get_latest_version(table_subject).schema_id == registered.schema_id
    table = read_all(pipeline, table_topic, 120)
    table_context = SerializationContext(table_topic, MessageField.VALUE)
    assert {m.value for m in table} == {m.value for m in messages}
    for message in table:
        event = deserializer(message.value, table_context)
        assert message.key == event["session_id"].encode()
    assert connector.terminate() == 0, pipeline.logs()


# --- the single-object path and the table topic -----------------------------------------
def admin_of(pipeline: Pipeline) -> AdminClient:
    config: dict[str, str | int | float | bool] = {**pipeline.kafka_config}
    return AdminClient(config)


def cleanup_policy(pipeline: Pipeline, topic: str) -> str:
    admin = admin_of(pipeline)
    resource = ConfigResource(ResourceType.TOPIC, topic)
    configs = admin.describe_configs([resource])[resource].result(timeout=30)
    return str(configs["cleanup.policy"].value)


def test_single_object_events_and_the_table_topic(make_pipeline: MakePipeline) -> None:
    pipeline = make_pipeline(sessions=150, users=30)
    table_topic = f"{pipeline.topic}.table"
    connector = pipeline.connector(KAFKA_TABLE_TOPIC=table_topic)
    connector.wait_ready()
    pipeline.converge()
    pipeline.emulator.workload.step(400)  # saves, submissions, scoring: many events per session
    landed = pipeline.converge()
    assert_stream_is_clean(landed)
    assert len(landed.events) > 150

    # every event: fastavro and the schema file alone read it, typed, with its headers
    schema = current_value_schema()
    sessions = {s["session_id"]: s for s in pipeline.emulator.sessions()}
    name = pipeline.env["CONNECTOR_NAME"]
    for message, event in zip(landed.messages, landed.events, strict=True):
        assert event == decode_single_object(message.value or b"", schema)
        assert_typed(event)
        assert_cloudevent(message, event, name)
    for session_id, events in landed.by_session().items():
        assert events[0]["change"] == "created"
        assert_matches_the_api(events[-1], sessions[session_id], repeats_since=True)
        for before, after in itertools.pairwise(events):
            assert after["previous_status"] == before["status"]
            assert (after["previous_score"], after["previous_max_score"]) == (
                before["score"],
                before["max_score"],
            )

    # the table topic: compacted, keyed by session, each session's last event
    assert cleanup_policy(pipeline, table_topic) == "compact"
    table = read_all(pipeline, table_topic, len(landed.messages))
    assert len(table) == len(landed.messages)  # every event, in the same transactions
    last_in_table: dict[bytes, bytes] = {}
    for message in table:
        assert message.key is not None and message.value is not None
        last_in_table[message.key] = message.value
    last_event: dict[bytes, bytes] = {}
    for message, event in zip(landed.messages, landed.events, strict=True):
        last_event[event["session_id"].encode()] = message.value or b""
    assert last_in_table == last_event
    assert set(last_in_table) == {s.encode() for s in sessions}
    for message in table:  # the same headers as the event they copy
        event = decode_single_object(message.value or b"", schema)
        assert message.key == event["session_id"].encode()
        assert_cloudevent(message, event, name)
    assert connector.terminate() == 0, pipeline.logs()


# --- an incompatible schema on the subject ------------------------------------------------
def test_an_incompatible_subject_stops_check_and_run(
    make_pipeline: MakePipeline, schema_registry: SchemaRegistry
) -> None:
    pipeline = make_pipeline(sessions=10)
    subject = f"{pipeline.topic}-value"
    client = SchemaRegistryClient({"url": schema_registry.url})
    unrelated = {
        "type": "record",
        "name": "Unrelated",
        "namespace": "elsewhere",
        "fields": [{"name": "n", "type": "long"}],
    }
    client.register_schema(subject, Schema(json.dumps(unrelated), "AVRO"))
    client.set_compatibility(subject_name=subject, level="BACKWARD")
    env = {
        **pipeline.env,
        "SCHEMA_REGISTRY_URL": schema_registry.url,
        "HTTP_PORT": str(free_port()),
    }

    checked = command(env, "check")
    assert checked.returncode == 1, checked.stdout + checked.stderr
    registry_lines = [line for line in checked.stdout.splitlines() if "schema registry" in line]
    assert len(registry_lines) == 1, checked.stdout
    (line,) = registry_lines
    assert line.startswith("FAIL") and "incompatible" in line and f"'{subject}'" in line, line

    ran = command(env, "run")
    assert ran.returncode == 1, ran.stdout + ran.stderr
    errors = [line for line in ran.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, ran.stderr
    (error,) = errors
    assert f"'{subject}'" in error and "incompatible" in error, error
    assert schema_registry.url in error  # which registry refused

    # refused before anything changed: no new version, the level kept, no topic created
    assert client.get_versions(subject) == [1]
    assert client.get_compatibility(subject) == "BACKWARD"
    topics = admin_of(pipeline).list_topics(timeout=30).topics
    assert pipeline.topic not in topics
