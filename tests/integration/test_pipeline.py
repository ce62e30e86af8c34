"""End to end: emulator → connector process → real Kafka, checked by independent readers.

Every test gets its own connector identity and topics; the broker and registry are the
session's. The emulator runs in this process without background ticking: the tests make
every change themselves, then wait until Kafka shows it (no sleeps).
"""

from __future__ import annotations

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from connector.emulator.faults import FaultConfig
from connector.kafka.reader import Received, read_topic
from dev.kafka_broker import KafkaBroker
from tests.support.connector_proc import ConnectorProcess, wait_for
from tests.support.pipeline import (
    assert_stream_is_clean,
    content,
    count_messages,
)

pytestmark = pytest.mark.integration


def test_end_to_end_live_changes(make_pipeline) -> None:  # type: ignore[no-untyped-def]
    pipeline = make_pipeline()
    connector = pipeline.connector()
    connector.wait_ready()
    pipeline.converge()
    pipeline.emulator.workload.step(600)  # saves, submissions, scoring, discards
    landed = pipeline.converge()
    assert_stream_is_clean(landed)
    assert len(landed.events) > len(pipeline.emulator.sessions())
    emitted = connector.metric("learnosity_connector_changes_emitted_total")
    assert emitted == len(landed.events), pipeline.logs()
    assert connector.terminate() == 0, pipeline.logs()


def test_restart_re_emits_nothing_and_misses_nothing(make_pipeline) -> None:  # type: ignore[no-untyped-def]
    pipeline = make_pipeline()
    first = pipeline.connector()
    first.wait_ready()
    before = pipeline.converge()
    assert first.terminate() == 0, pipeline.logs()

    second = pipeline.connector()
    second.wait_ready()
    # it has polled from the restored cursor at least twice: all it could re-emit is out
    wait_for(
        lambda: second.metric("learnosity_connector_api_requests_total") >= 2,
        30,
        "two polls after the restart",
    )
    assert count_messages(pipeline.kafka_config, pipeline.topic) == len(before.events)

    pipeline.emulator.workload.step(300)
    after = pipeline.converge()
    assert_stream_is_clean(after)
    assert after.events[: len(before.events)] == before.events or len(after.events) > len(
        before.events
    )
    assert second.terminate() == 0, pipeline.logs()


def test_kill_9_mid_transaction_loses_and_duplicates_nothing(make_pipeline) -> None:  # type: ignore[no-untyped-def]
    # latency keeps each transaction open across several slow pages: a wide window
    pipeline = make_pipeline(sessions=600, faults=FaultConfig(latency_ms=40))
    for round_ in range(3):
        connector = pipeline.connector(KAFKA_COMMIT_INTERVAL_MS="3000")
        connector.wait_ready()
        pipeline.emulator.workload.step(200)
        fetched = connector.metric("learnosity_connector_records_fetched_total")

        def fetched_more(c: ConnectorProcess = connector, f: float = fetched) -> bool:
            return c.metric("learnosity_connector_records_fetched_total") > f

        wait_for(
            fetched_more,
            30,
            f"records fetched in round {round_}",
        )
        connector.kill()  # between produce and commit, most likely: nothing committed yet
    survivor = pipeline.connector()
    survivor.wait_ready()
    landed = pipeline.converge()
    assert_stream_is_clean(landed)
    assert survivor.terminate() == 0, pipeline.logs()


def test_a_second_instance_fences_the_first(make_pipeline) -> None:  # type: ignore[no-untyped-def]
    pipeline = make_pipeline()
    first = pipeline.connector()
    first.wait_ready()
    pipeline.converge()
    second = pipeline.connector()
    second.wait_ready()
    pipeline.emulator.workload.step(100)  # both try to commit: only the newest may
    assert first.wait_exit(60) == 1, pipeline.logs()
    assert "fenced" in first.log_tail(), first.log_tail()
    landed = pipeline.converge()
    assert_stream_is_clean(landed)
    assert second.alive()
    assert second.terminate() == 0


def test_broker_restart_is_ridden_through(make_pipeline, kafka_broker: KafkaBroker) -> None:  # type: ignore[no-untyped-def]
    pipeline = make_pipeline()
    connector = pipeline.connector()
    connector.wait_ready()
    pipeline.converge()
    kafka_broker.stop()
    try:
        pipeline.emulator.workload.step(150)
    finally:
        kafka_broker.start()
    landed = pipeline.converge(timeout=180)
    assert_stream_is_clean(landed)
    assert connector.alive(), pipeline.logs()
    assert connector.terminate() == 0


def test_malformed_records_go_to_the_dead_letter_topic(make_pipeline) -> None:  # type: ignore[no-untyped-def]
    pipeline = make_pipeline(faults=FaultConfig(malformed_rate=0.3))
    # off while it starts: the start-up request and the planner's probe read a record
    # each without publishing it, so a fault served to them would never be a dead letter
    pipeline.emulator.faults.enabled = False
    connector = pipeline.connector()
    connector.wait_ready()
    pipeline.emulator.faults.enabled = True
    pipeline.emulator.workload.step(200)
    dlq = f"{pipeline.topic}.dlq"
    wait_for(
        lambda: (
            connector.metric("learnosity_connector_dead_letters_total")
            >= pipeline.emulator.stats()["faults"].get("malformed", 0)
            > 0
        ),
        60,
        "every malformed record to be dead-lettered",
    )
    dead = list(read_topic(pipeline.kafka_config, dlq, idle_timeout=1.0))
    assert len(dead) == connector.metric("learnosity_connector_dead_letters_total")
    headers = dict(dead[0].headers)
    assert {"error.class", "error.reason", "error.message", "cursor", "connector.version"} <= set(
        headers
    )
    assert connector.alive(), pipeline.logs()
    assert connector.terminate() == 0


def test_at_least_once_delivery_without_transactions(make_pipeline) -> None:  # type: ignore[no-untyped-def]
    pipeline = make_pipeline()
    connector = pipeline.connector(KAFKA_DELIVERY="at_least_once")
    connector.wait_ready()
    pipeline.emulator.workload.step(200)
    landed = pipeline.converge()
    assert_stream_is_clean(landed)
    assert connector.terminate() == 0


def test_registry_encoding_read_by_confluents_deserializer(make_pipeline, schema_registry) -> None:  # type: ignore[no-untyped-def]
    pipeline = make_pipeline(sessions=100)
    connector = pipeline.connector(SCHEMA_REGISTRY_URL=schema_registry.url)
    connector.wait_ready()
    messages: list[Received] = []

    def every_session_landed() -> bool:
        messages[:] = read_topic(pipeline.kafka_config, pipeline.topic, idle_timeout=1.0)
        return len(messages) >= 100

    wait_for(every_session_landed, 60, "an event for each of the 100 sessions")
    assert len(messages) == 100
    deserializer = AvroDeserializer(SchemaRegistryClient({"url": schema_registry.url}))
    context = SerializationContext(pipeline.topic, MessageField.VALUE)
    sessions = {s["session_id"]: s for s in pipeline.emulator.sessions()}
    for message in messages:
        assert message.value is not None
        assert message.value[:1] == b"\x00"  # Confluent wire format: magic byte, schema id
        event = deserializer(message.value, context)
        assert content(event) == content(sessions[event["session_id"]])
    assert connector.terminate() == 0


def test_sasl_scram_over_tls(make_pipeline, kafka_broker: KafkaBroker) -> None:  # type: ignore[no-untyped-def]
    """The DESIGN's security settings, for real: SCRAM-SHA-512 over TLS with a private CA."""
    pipeline = make_pipeline(sessions=150)
    connector = pipeline.connector(
        KAFKA_BOOTSTRAP_SERVERS=kafka_broker.sasl_ssl_bootstrap_servers,
        KAFKA_SECURITY_PROTOCOL="SASL_SSL",
        KAFKA_SASL_MECHANISM=kafka_broker.scram_mechanism,
        KAFKA_SASL_USERNAME=kafka_broker.scram_user,
        KAFKA_SASL_PASSWORD=kafka_broker.scram_password,
        KAFKA_SSL_CA_LOCATION=str(kafka_broker.ca_file),
    )
    connector.wait_ready()
    pipeline.emulator.workload.step(50)
    assert_stream_is_clean(pipeline.converge())
    assert kafka_broker.scram_password not in connector.log_path.read_text()
    assert connector.terminate() == 0, pipeline.logs()
