"""Reading the compacted state topic back.

The state topic ``<CONNECTOR_NAME>.state`` has one partition (so the lanes and every
session entry share one ordered log); what it holds is ``connector.checkpoint``'s. Every
entry is written in the same transaction as the events it accounts for, so whatever a
``read_committed`` reader sees is a consistent snapshot.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from connector.errors import KafkaFatalError, RetriableError
from connector.kafka.clients import (
    METADATA_TIMEOUT_SECONDS,
    ClientWatch,
    await_metadata,
    failure,
    make_consumer,
    servers_of,
)

log = logging.getLogger(__name__)


def read_compacted(
    client_config: dict[str, str],
    topic: str,
    on_entry: Callable[[bytes, bytes | None], None],
    *,
    timeout: float = 60.0,
    batch_size: int = 10_000,
) -> int:
    """Read every committed entry of ``topic`` from the start to its current end.

    Uses ``read_committed`` so aborted or still-open transactions are never seen, and
    partition EOF events to know where the end is. Returns the number of entries read.
    """
    watch = ClientWatch()
    where = f"Kafka at {servers_of(client_config)}"
    consumer = make_consumer(
        {
            **client_config,
            "group.id": f"state-restore-{uuid.uuid4()}",  # never committed: offsets unused
            "enable.auto.commit": "false",
            "enable.partition.eof": "true",
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            # Bounded prefetch. Larger fetches restore faster (1M entries: 6 s against 10 s
            # here, bench/bench_state.py) but leave the heap fragmented around the
            # restored state: ~280 B resident per session afterwards instead of ~160.
            "fetch.max.bytes": str(8 * 1024 * 1024),
            "max.partition.fetch.bytes": str(1024 * 1024),
            "queued.max.messages.kbytes": str(16 * 1024),
        },
        watch,
    )
    try:
        metadata = await_metadata(
            consumer,
            watch,
            client_config,
            f"cannot read the state topic {topic!r}",
            timeout=min(timeout, METADATA_TIMEOUT_SECONDS),
            topic=topic,
        )
        partitions = metadata.topics[topic].partitions if topic in metadata.topics else {}
        if not partitions:
            return 0
        assigned = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions]
        consumer.assign(assigned)
        # The end is the high watermark as we start, or the first EOF. A writer that
        # commits all the time (``status`` beside a running connector) may never let
        # the consumer see an EOF: the last record is often a transaction marker.
        ends = {tp.partition: _high_watermark(consumer, tp, timeout) for tp in assigned}
        pending = {p for p, end in ends.items() if end > 0}
        count = 0
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                raise RetriableError(
                    f"reading {topic!r} from {where} did not reach its end in {timeout:g} s"
                )
            for message in consumer.consume(batch_size, 1.0):
                error = message.error()
                if error is None:
                    on_entry(message.key() or b"", message.value())
                    count += 1
                    deadline = time.monotonic() + timeout  # progress: extend the deadline
                elif error.code() == KafkaError._PARTITION_EOF:
                    pending.discard(message.partition())
                elif error.fatal() or not error.retriable():
                    raise KafkaFatalError(f"reading {topic!r} from {where}: {error.str()}")
            for position in consumer.position([TopicPartition(topic, p) for p in pending]):
                if position.offset >= ends[position.partition]:
                    pending.discard(position.partition)
        return count
    except KafkaException as exc:
        raise failure(client_config, watch, f"reading {topic!r}", error=exc.args[0]) from exc
    finally:
        consumer.close()


#: pause between asks for a high watermark while the partition has no leader yet
WATERMARK_RETRY_SECONDS = 0.2
#: what a partition answers before its leader is elected
LEADER_PENDING = frozenset(
    (
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._UNKNOWN_PARTITION,
    )
)


def _high_watermark(consumer: Consumer, partition: TopicPartition, timeout: float) -> int:
    """The partition's high watermark; a topic created a moment ago may not have its
    leader yet (NOT_LEADER_FOR_PARTITION, which librdkafka does not flag retriable
    here): ask again, within ``timeout``, until it has."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return int(consumer.get_watermark_offsets(partition, timeout=timeout)[1])
        except KafkaException as exc:
            error = exc.args[0]
            waiting = error.retriable() or error.code() in LEADER_PENDING
            if error.fatal() or not waiting or time.monotonic() > deadline:
                raise
        time.sleep(WATERMARK_RETRY_SECONDS)
