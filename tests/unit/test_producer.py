"""The producer wrapper's error translation, without a broker (a fake librdkafka handle)."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException

from connector.errors import AbortableError, KafkaFatalError
from connector.kafka.producer import EventProducer


class FencedHandle:
    """Acts like a transactional producer that a newer instance fenced mid-flush."""

    def __init__(self, owner: EventProducer, report_error: bool) -> None:
        self.owner = owner
        self.report_error = report_error

    def flush(self, timeout: float) -> int:
        # confluent-kafka's behaviour seen in the fencing test: NULL without an exception
        raise SystemError("<method 'flush' of 'cimpl.Producer' objects> returned NULL")

    def poll(self, timeout: float) -> int:
        if self.report_error:
            self.owner._on_client_error(KafkaError(KafkaError._FENCED, "fenced", fatal=True))
        return 0


def make(report_error: bool) -> EventProducer:
    producer = EventProducer({"bootstrap.servers": "127.0.0.1:1"}, transactional_id="t")
    producer._producer = FencedHandle(producer, report_error)  # type: ignore[assignment]
    producer._in_transaction = True
    return producer


def test_a_fenced_flush_says_so() -> None:
    with pytest.raises(KafkaFatalError, match="fenced: another instance"):
        make(report_error=True).commit()


def test_a_failed_flush_without_a_reported_cause_is_still_fatal() -> None:
    with pytest.raises(KafkaFatalError, match="producer failed"):
        make(report_error=False).flush()


def test_close_after_a_fatal_error_does_not_raise() -> None:
    make(report_error=True).close()


def test_a_failed_delivery_aborts_the_transaction() -> None:
    producer = EventProducer({"bootstrap.servers": "127.0.0.1:1"}, transactional_id="t")
    producer._on_delivery(KafkaError(KafkaError.INVALID_PRODUCER_EPOCH, "old epoch"), None)  # type: ignore[arg-type]
    with pytest.raises(AbortableError, match="not delivered"):
        producer._raise_latched()


class FatalOnProduce(FencedHandle):
    """librdkafka refuses produce() with a bare _FATAL; the cause comes via error_cb."""

    def produce(self, *args: object, **kwargs: object) -> None:
        raise KafkaException(KafkaError(KafkaError._FATAL, "Local: Fatal error", fatal=True))


def test_a_bare_fatal_on_produce_names_the_fencing_behind_it() -> None:
    producer = make(report_error=True)
    producer._producer = FatalOnProduce(producer, report_error=True)  # type: ignore[assignment]
    with pytest.raises(KafkaFatalError, match="fenced"):
        producer.produce("topic", b"k", b"v")


def test_close_after_an_undelivered_message_does_not_raise() -> None:
    producer = make(report_error=False)
    producer._on_delivery(KafkaError(KafkaError._PURGE_QUEUE, "purged"), None)  # type: ignore[arg-type]
    producer.close()
