"""Reading the compacted state topic back, and the cursor entry stored in it.

The state topic ``<CONNECTOR_NAME>.state`` has one partition (so the cursor and every
session entry share one ordered log) and holds two kinds of entries:
    key ``cursor``      the committed position: JSON (see ``StoredCursor``)
    key ``s:<id>``      one session's fingerprint entry (connector.changes.state's format)
Both are written in the same transaction as the events they account for, so whatever a
``read_committed`` reader sees is a consistent snapshot.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, TopicPartition

from connector.errors import KafkaFatalError, RetriableError
from connector.kafka.clients import make_consumer

log = logging.getLogger(__name__)

CURSOR_KEY = b"cursor"


@dataclass(frozen=True)
class StoredCursor:
    """Where the next run starts: the ``next`` token, or (after a reset) a start point."""

    next_token: str | None
    #: ``earliest``, ``latest`` or an ISO 8601 time, used when there is no token (a reset)
    start_from: str | None = None
    #: updated time (Unix seconds) of the last record read before this commit, if known
    position: float | None = None
    committed_at: str = ""
    connector_version: str = ""

    def encode(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def decode(cls, value: bytes) -> StoredCursor:
        try:
            data = json.loads(value)
            return cls(
                next_token=data.get("next_token"),
                start_from=data.get("start_from"),
                position=data.get("position"),
                committed_at=data.get("committed_at", ""),
                connector_version=data.get("connector_version", ""),
            )
        except (ValueError, AttributeError, TypeError) as exc:
            raise KafkaFatalError(f"the stored cursor is unreadable: {exc}") from exc

    @staticmethod
    def now() -> str:
        return datetime.now(UTC).isoformat(timespec="milliseconds")


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
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=timeout)
        partitions = metadata.topics[topic].partitions if topic in metadata.topics else {}
        if not partitions:
            return 0
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        pending = set(partitions)
        count = 0
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                raise RetriableError(f"reading {topic!r} did not reach its end in {timeout}s")
            for message in consumer.consume(batch_size, 1.0):
                error = message.error()
                if error is None:
                    on_entry(message.key() or b"", message.value())
                    count += 1
                    deadline = time.monotonic() + timeout  # progress: extend the deadline
                elif error.code() == KafkaError._PARTITION_EOF:
                    pending.discard(message.partition())
                elif error.fatal() or not error.retriable():
                    raise KafkaFatalError(f"reading {topic!r}: {error.str()}")
        return count
    except KafkaException as exc:
        raise RetriableError(f"reading {topic!r}: {exc.args[0].str()}") from exc
    finally:
        consumer.close()
