"""Reading a topic from the start or the end, for ``tail`` and the tests' independent checks."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, KafkaError, TopicPartition

from connector.errors import KafkaFatalError
from connector.kafka.clients import ClientWatch, await_metadata, make_consumer, servers_of


@dataclass(frozen=True, slots=True)
class Received:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int


def _as_bytes(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value or "").encode()


def read_topic(
    client_config: dict[str, str],
    topic: str,
    *,
    from_beginning: bool = True,
    idle_timeout: float | None = 5.0,
    max_messages: int | None = None,
    isolation_level: str = "read_committed",
) -> Iterator[Received]:
    """Yield committed messages of every partition of ``topic``, in order per partition.

    Stops after ``max_messages``, or once nothing arrived for ``idle_timeout`` seconds
    (None: never; the caller stops by closing the generator). A missing topic or brokers
    that cannot be used raise one line naming the broker address and the cause.
    """
    watch = ClientWatch()
    consumer = make_consumer(
        {
            **client_config,
            "group.id": f"reader-{uuid.uuid4()}",  # a throwaway group: never commits
            "enable.auto.commit": "false",
            "isolation.level": isolation_level,
        },
        watch,
    )
    where = f"Kafka at {servers_of(client_config)}"
    try:
        metadata = await_metadata(
            consumer, watch, client_config, f"cannot read topic {topic!r}", topic=topic
        )
        if topic not in metadata.topics or metadata.topics[topic].error is not None:
            raise KafkaFatalError(f"topic {topic!r} does not exist in {where}")
        start = OFFSET_BEGINNING if from_beginning else OFFSET_END
        consumer.assign(
            [TopicPartition(topic, p, start) for p in metadata.topics[topic].partitions]
        )
        seen = 0
        last = time.monotonic()
        while max_messages is None or seen < max_messages:
            message = consumer.poll(0.5)
            if message is None:
                if idle_timeout is not None and time.monotonic() - last > idle_timeout:
                    return
                continue
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    continue
                raise KafkaFatalError(f"reading {topic!r} from {where}: {error.str()}")
            last = time.monotonic()
            seen += 1
            raw_headers: Any = message.headers() or []
            headers: list[tuple[str, Any]] = (
                list(raw_headers.items()) if isinstance(raw_headers, dict) else list(raw_headers)
            )
            yield Received(
                topic,
                message.partition() or 0,
                message.offset() or 0,
                message.key(),
                message.value(),
                tuple((name, _as_bytes(value)) for name, value in headers),
                message.timestamp()[1],
            )
    finally:
        consumer.close()
