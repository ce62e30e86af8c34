"""The local stack is real: transactions, compaction, SCRAM over TLS, the registry, restarts.

These tests hold the broker and registry to what the connector relies on, so a failure in
the connector's own integration tests can be told apart from a broken stack.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from dev.kafka_broker import ClientConfig, KafkaBroker
from dev.procs import pid_alive, port_open
from dev.registry import SchemaRegistry
from dev.stack import REPO, load_env

pytestmark = pytest.mark.integration

TIMEOUT = 30.0


def new_topic(broker: KafkaBroker, prefix: str, config: dict[str, str] | None = None) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    admin = AdminClient(broker.client_config())
    new = NewTopic(name, num_partitions=1, replication_factor=1, config=config or {})
    admin.create_topics([new], operation_timeout=TIMEOUT)[name].result(timeout=TIMEOUT)
    return name


def read_until(broker: KafkaBroker, topic: str, last: bytes, isolation: str) -> list[bytes]:
    """Values of partition 0 from the start up to and including `last`."""
    consumer = Consumer(
        {
            **broker.client_config(),
            "group.id": f"stack-test-{uuid.uuid4().hex[:8]}",
            "isolation.level": isolation,
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    values: list[bytes] = []
    deadline = time.monotonic() + TIMEOUT
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                raise KafkaException(msg.error())
            value = msg.value()
            assert value is not None
            values.append(value)
            if value == last:
                return values
    finally:
        consumer.close()
    raise AssertionError(f"{last!r} not read from {topic} in {TIMEOUT} s; read {values}")


def test_read_committed_sees_committed_transactions_only(kafka_broker: KafkaBroker) -> None:
    topic = new_topic(kafka_broker, "txn")
    producer = Producer(
        {**kafka_broker.client_config(), "transactional.id": f"stack-test-{uuid.uuid4().hex}"}
    )
    producer.init_transactions(TIMEOUT)
    for value, commit in ((b"first", True), (b"aborted", False), (b"last", True)):
        producer.begin_transaction()
        producer.produce(topic, key=b"k", value=value)
        assert producer.flush(TIMEOUT) == 0  # written to the log before the outcome is decided
        if commit:
            producer.commit_transaction(TIMEOUT)
        else:
            producer.abort_transaction(TIMEOUT)

    assert read_until(kafka_broker, topic, b"last", "read_committed") == [b"first", b"last"]
    # The aborted record is really in the log: only the isolation level hides it.
    assert read_until(kafka_broker, topic, b"last", "read_uncommitted") == [
        b"first",
        b"aborted",
        b"last",
    ]


def test_compacted_topic_is_created_and_described(kafka_broker: KafkaBroker) -> None:
    topic = new_topic(kafka_broker, "compacted", {"cleanup.policy": "compact"})
    admin = AdminClient(kafka_broker.client_config())

    description = admin.describe_topics(TopicCollection([topic]))[topic].result(timeout=TIMEOUT)
    assert [len(p.replicas) for p in description.partitions] == [1]

    resource = ConfigResource(ResourceType.TOPIC, topic)
    configs = admin.describe_configs([resource])[resource].result(timeout=TIMEOUT)
    assert configs["cleanup.policy"].value == "compact"


def test_scram_over_tls_client_connects(kafka_broker: KafkaBroker) -> None:
    admin = AdminClient(kafka_broker.client_config(secure=True))
    metadata = admin.list_topics(timeout=TIMEOUT)
    # The broker advertises the SASL_SSL address on that listener, not the PLAINTEXT one.
    assert [f"{b.host}:{b.port}" for b in metadata.brokers.values()] == [
        kafka_broker.sasl_ssl_bootstrap_servers
    ]


def _first_error(config: ClientConfig) -> KafkaError:
    """The first error a client with `config` reports while trying to fetch metadata."""
    errors: list[KafkaError] = []
    with_callback: dict[str, Any] = {**config, "error_cb": errors.append}
    admin = AdminClient(with_callback)
    deadline = time.monotonic() + TIMEOUT
    while not errors and time.monotonic() < deadline:
        with contextlib.suppress(KafkaException):  # expected: the error_cb says why
            admin.list_topics(timeout=1)
        admin.poll(0.1)
    assert errors, "the client reported no error"
    return errors[0]


def test_scram_wrong_password_is_refused(kafka_broker: KafkaBroker) -> None:
    config = {**kafka_broker.client_config(secure=True), "sasl.password": "not-the-password"}
    error = _first_error(config)
    assert error.code() == KafkaError._AUTHENTICATION, error


def test_tls_client_that_does_not_trust_the_ca_is_refused(kafka_broker: KafkaBroker) -> None:
    config = kafka_broker.client_config(secure=True)
    del config["ssl.ca.location"]  # the system trust store knows nothing of our CA
    error = _first_error(config)
    assert error.code() in (KafkaError._SSL, KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN)
    assert "certificate verify failed" in error.str(), error


SCORE_SCHEMA = {
    "type": "record",
    "name": "StackTestScore",
    "namespace": "dev.stack.test",
    "fields": [
        {"name": "user_id", "type": "string"},
        {"name": "score", "type": ["null", "double"], "default": None},
    ],
}


def test_avro_schema_registered_and_read_back_by_id(schema_registry: SchemaRegistry) -> None:
    subject = f"stack-test-{uuid.uuid4().hex[:8]}-value"
    schema_id = SchemaRegistryClient({"url": schema_registry.url}).register_schema(
        subject, Schema(json.dumps(SCORE_SCHEMA), "AVRO")
    )

    # A new client: nothing comes from the first one's cache.
    client = SchemaRegistryClient({"url": schema_registry.url})
    fetched = client.get_schema(schema_id)
    assert fetched.schema_str is not None
    assert json.loads(fetched.schema_str) == SCORE_SCHEMA
    assert client.get_latest_version(subject).schema_id == schema_id

    # The Confluent wire format round-trips through the registry under that id.
    context = SerializationContext(subject.removesuffix("-value"), MessageField.VALUE)
    serializer = AvroSerializer(client, json.dumps(SCORE_SCHEMA))
    payload = serializer({"user_id": "u1", "score": 0.5}, context)
    assert payload[0] == 0 and int.from_bytes(payload[1:5], "big") == schema_id
    assert AvroDeserializer(client)(payload, context) == {"user_id": "u1", "score": 0.5}


def test_stack_cli_up_then_down_leaves_no_process_or_port(tmp_path: Path) -> None:
    def stack(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "dev.stack", "--dir", str(tmp_path), command],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )

    try:
        up = stack("up")
        assert up.returncode == 0, up.stdout + up.stderr
        state = json.loads((tmp_path / "state.json").read_text())
        pids = [state["broker"]["pid"], state["registry"]["pid"]]
        ports = [*state["broker"]["ports"], state["registry"]["port"]]
        env = load_env(tmp_path)
        assert sorted(env) == [
            "KAFKA_BOOTSTRAP_SERVERS",
            "KAFKA_CA_FILE",
            "KAFKA_SASL_SSL_BOOTSTRAP_SERVERS",
            "KAFKA_SCRAM_MECHANISM",
            "KAFKA_SCRAM_PASSWORD",
            "KAFKA_SCRAM_USERNAME",
            "SCHEMA_REGISTRY_URL",
        ]
        assert all(pid_alive(pid) for pid in pids) and all(port_open(p) for p in ports)
        secure: ClientConfig = {
            "bootstrap.servers": env["KAFKA_SASL_SSL_BOOTSTRAP_SERVERS"],
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": env["KAFKA_SCRAM_MECHANISM"],
            "sasl.username": env["KAFKA_SCRAM_USERNAME"],
            "sasl.password": env["KAFKA_SCRAM_PASSWORD"],
            "ssl.ca.location": env["KAFKA_CA_FILE"],
        }
        assert AdminClient(secure).list_topics(timeout=TIMEOUT).brokers
        with urllib.request.urlopen(env["SCHEMA_REGISTRY_URL"] + "/subjects") as response:
            assert json.load(response) == []
    finally:
        down = stack("down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert not [pid for pid in pids if pid_alive(pid)]
    assert not [port for port in ports if port_open(port)]
    assert not Path(state["data_root"]).exists()
    assert not (tmp_path / "env").exists()


# Last in the file: the other tests here share this broker and need not see it restart.
def test_producer_survives_broker_restart(kafka_broker: KafkaBroker) -> None:
    topic = new_topic(kafka_broker, "restart")
    delivered: list[bytes] = []
    failures: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, msg: Any) -> None:
        if err is None:
            delivered.append(msg.value())
        else:
            failures.append(err)

    producer = Producer({**kafka_broker.client_config(), "enable.idempotence": True})
    producer.produce(topic, value=b"before", on_delivery=on_delivery)
    assert producer.flush(TIMEOUT) == 0

    old_pid = kafka_broker.pid
    kafka_broker.restart()
    assert kafka_broker.pid != old_pid

    producer.produce(topic, value=b"after", on_delivery=on_delivery)
    assert producer.flush(60) == 0
    assert failures == []
    assert delivered == [b"before", b"after"]
    assert read_until(kafka_broker, topic, b"after", "read_committed") == [b"before", b"after"]
