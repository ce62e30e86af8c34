"""The Kafka producer behind one small interface, transactional or not.

Transaction errors are sorted the way confluent-kafka documents them:
    retriable           the same call may be repeated (commit_transaction, init)
    txn_requires_abort  abort, then re-read everything since the last commit (AbortableError)
    fatal / fenced      the producer is dead: another instance took over, or the broker
                        refuses us for good (KafkaFatalError)
Delivery failures reported by callbacks are latched and raised on the next commit or
flush, so a lost message can never be followed by a successful commit.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message

from connector.errors import (
    AbortableError,
    ConnectorError,
    KafkaFatalError,
    ProducerFencedError,
    RetriableError,
)
from connector.kafka.clients import ClientWatch, make_producer, servers_of, tidy

log = logging.getLogger(__name__)

Headers = Sequence[tuple[str, bytes]]
#: headers as librdkafka takes them without a copy
HeaderList = list[tuple[str, str | bytes | None]]

#: librdkafka defaults we choose for every producer of ours (users may override them)
PRODUCER_DEFAULTS: dict[str, str] = {
    "acks": "all",
    "enable.idempotence": "true",
    # same partition for the same key as Java's default partitioner and Kafka Streams
    "partitioner": "murmur2_random",
    "compression.type": "lz4",
    # bigger batches: a third less broker CPU per record in a backfill than 20 ms; no
    # cost in latency, as every commit (and flush) sends what is queued at once
    "linger.ms": "100",
    "batch.num.messages": "10000",
    "queue.buffering.max.messages": "500000",
    "transaction.timeout.ms": "60000",
    "message.timeout.ms": "55000",  # below the transaction timeout, as librdkafka requires
    "statistics.interval.ms": "0",
    # a delivery report per failed message only: a successful one would cost a Python
    # callback per message (two per record with the state entries) and tell us nothing
    "delivery.report.only.error": "true",
}

#: serve librdkafka's callbacks (delivery errors, client errors, statistics) every this
#: many produces; ``poll`` releases the GIL, which per message hands it to the fetcher
#: thread thousands of times a second. Commits and flushes serve them too.
POLL_EVERY = 1000

#: librdkafka's default ``message.max.bytes``
DEFAULT_MESSAGE_MAX_BYTES = 1_000_000

#: how often a retriable commit or init is tried before giving up as fatal
MAX_RETRIABLE_ATTEMPTS = 20


def _describe(error: KafkaError) -> str:
    return f"{error.name()}: {tidy(error.str())}"


def classify(exc: KafkaException, action: str) -> Exception:
    """Our error for a librdkafka failure during ``action`` (no broker config echoed)."""
    error: KafkaError = exc.args[0]
    if error.code() in (
        KafkaError._FENCED,
        KafkaError.PRODUCER_FENCED,
        KafkaError.INVALID_PRODUCER_EPOCH,
    ):
        return ProducerFencedError(
            f"{action}: fenced: another instance with the same CONNECTOR_NAME has taken over "
            f"({_describe(error)})"
        )
    if error.fatal():
        return KafkaFatalError(f"{action}: {_describe(error)}")
    if error.txn_requires_abort() or error.code() == KafkaError._STATE:
        # _STATE: the transaction already failed (e.g. its messages timed out while the
        # process was paused) and refuses more until it is aborted
        return AbortableError(f"{action}: {_describe(error)}")
    if error.retriable():
        return RetriableError(f"{action}: {_describe(error)}")
    return KafkaFatalError(f"{action}: {_describe(error)}")


class EventProducer:
    """Produces into Kafka; in transactional mode each batch is one transaction."""

    def __init__(
        self,
        config: dict[str, str],
        *,
        transactional_id: str | None,
        stats_callback: Callable[[str], None] | None = None,
    ) -> None:
        merged = {**PRODUCER_DEFAULTS, **config}
        if transactional_id:
            merged["transactional.id"] = transactional_id
        conf: dict[str, Any] = dict(merged)
        # confluent-kafka reads this one property itself, and only as a bool
        only_error = conf.pop("delivery.report.only.error")
        conf["delivery.report.only.error"] = str(only_error).strip().lower() in ("true", "1")
        conf["error_cb"] = self._on_client_error
        conf["on_delivery"] = self._on_delivery  # one callback for every message
        if stats_callback is not None:
            conf["stats_cb"] = stats_callback
        self.transactional = bool(transactional_id)
        #: how long the broker lets a transaction of ours stay open before aborting it
        self.transaction_timeout = float(merged["transaction.timeout.ms"]) / 1000
        #: the largest message librdkafka accepts (``message.max.bytes``, its default)
        self.max_message_bytes = int(merged.get("message.max.bytes", DEFAULT_MESSAGE_MAX_BYTES))
        self._where = f"Kafka at {servers_of(config)}"
        self._watch = ClientWatch()
        self._producer = make_producer(conf, self._watch)
        self._delivery_error: KafkaError | None = None
        self._fatal_error: KafkaError | None = None
        self._in_transaction = False
        self._unpolled = 0

    # --- callbacks (run inside poll/flush on this thread) ---------------------------
    def _on_client_error(self, error: KafkaError) -> None:
        if error.fatal():
            self._fatal_error = error
        # the text without the per-attempt timing, so the same error repeated is one line
        # a minute (logs.RepeatFilter), while a different one is shown at once
        log.warning("kafka client error", extra={"kafka_error": _describe(error)})

    def _on_delivery(self, error: KafkaError | None, _message: Message) -> None:
        if error is not None and self._delivery_error is None:
            self._delivery_error = error

    # --- transactions -----------------------------------------------------------------
    def init(self, timeout: float = 60.0) -> None:
        """Register the transactional id: fences older instances, aborts their open work."""
        if not self.transactional:
            return
        self._retry(lambda: self._producer.init_transactions(timeout), "init_transactions")

    def begin(self) -> None:
        if self.transactional and not self._in_transaction:
            try:
                self._producer.begin_transaction()
            except KafkaException as exc:
                raise self._classify(exc, "begin_transaction") from exc
            self._in_transaction = True

    def produce(
        self, topic: str, key: bytes | None, value: bytes | None, headers: Headers | None = None
    ) -> None:
        """Queue one message (in the open transaction, begun on the first message)."""
        if self._fatal_error is not None or self._delivery_error is not None:
            self._raise_latched()
        if self.transactional and not self._in_transaction:
            self.begin()
        produce = self._producer.produce
        while True:
            try:
                if headers:
                    produce(topic, value, key, headers=list(headers))
                else:
                    produce(topic, value, key)
                break
            except BufferError:  # local queue full: let deliveries drain, then go on
                self._producer.poll(0.1)
            except KafkaException as exc:
                raise self._classify(exc, "produce") from exc
        self._unpolled += 1
        if self._unpolled >= POLL_EVERY:
            self._unpolled = 0
            self._producer.poll(0)

    def produce_many(
        self, topic: str, messages: Iterable[tuple[bytes | None, bytes | None]]
    ) -> int:
        """``produce`` for many (key, value) pairs without headers; returns how many."""
        return self.produce_with_headers(topic, ((key, value, None) for key, value in messages))

    def produce_with_headers(
        self,
        topic: str,
        messages: Iterable[tuple[bytes | None, bytes | None, HeaderList | None]],
    ) -> int:
        """``produce`` for many (key, value, headers) triples; returns how many."""
        if self._fatal_error is not None or self._delivery_error is not None:
            self._raise_latched()
        if self.transactional and not self._in_transaction:
            self.begin()
        produce, poll = self._producer.produce, self._producer.poll
        count = 0
        for key, value, headers in messages:
            while True:
                try:
                    produce(topic, value, key, headers=headers)
                    break
                except BufferError:
                    poll(0.1)
                except KafkaException as exc:
                    raise self._classify(exc, "produce") from exc
            count += 1
            if count % POLL_EVERY == 0:
                poll(0)
        self._raise_latched()
        return count

    def commit(self, timeout: float = 60.0) -> None:
        """Commit the open transaction (or, without transactions, wait for every delivery)."""
        if not self.transactional:
            self.flush(timeout)
            return
        if not self._in_transaction:
            return
        self._flush(timeout)
        self._raise_latched()
        self._retry(lambda: self._producer.commit_transaction(timeout), "commit_transaction")
        self._in_transaction = False

    def abort(self, timeout: float = 30.0) -> None:
        """Abort the open transaction; latched delivery errors belong to it and are cleared."""
        self._delivery_error = None
        if not (self.transactional and self._in_transaction):
            return
        try:
            self._retry(lambda: self._producer.abort_transaction(timeout), "abort_transaction")
        finally:
            self._in_transaction = False

    def flush(self, timeout: float = 60.0) -> None:
        remaining = self._flush(timeout)
        self._raise_latched()
        if remaining:
            raise RetriableError(f"{remaining} messages still undelivered after {timeout}s")

    def poll(self, timeout: float = 0.0) -> None:
        self._producer.poll(timeout)

    @property
    def in_transaction(self) -> bool:
        return self._in_transaction

    def reachable(self, timeout: float = 2.0) -> bool:
        """True if a broker answers a metadata request within ``timeout`` (for /readyz)."""
        try:
            self._producer.list_topics(timeout=timeout)
        except KafkaException:
            return False
        return True

    def queue_length(self) -> int:
        return len(self._producer)

    def close(self, timeout: float = 10.0) -> None:
        """Deliver what is queued, best effort: on the way out after a failure, what is
        left undelivered belongs to a transaction that will not commit anyway."""
        try:
            self._flush(timeout)
        except ConnectorError as exc:
            log.debug("producer closed after an error", extra={"error": str(exc)})

    # --- helpers ----------------------------------------------------------------------
    def _classify(self, exc: KafkaException, action: str) -> Exception:
        """``classify``, but a bare ``_FATAL`` is replaced by the fatal error behind it
        (fenced, say), which librdkafka reports through error_cb on the next poll; and a
        timeout names the broker address and the last cause the brokers gave."""
        if exc.args and exc.args[0].code() == KafkaError._FATAL:
            with contextlib.suppress(SystemError, KafkaException):
                self._producer.poll(0)
            if self._fatal_error is not None:
                return classify(KafkaException(self._fatal_error), action)
        error = classify(exc, action)
        if exc.args and exc.args[0].code() in (KafkaError._TIMED_OUT, KafkaError._TRANSPORT):
            cause = self._watch.cause()
            detail = f"{self._where}: {cause.text}" if cause else self._where
            error.args = (f"{error.args[0]} ({detail})",)
        return error

    def _flush(self, timeout: float) -> int:
        """``Producer.flush``; a fenced or failed producer can make it return NULL."""
        try:
            return int(self._producer.flush(timeout))
        except SystemError as exc:
            # confluent-kafka raises SystemError ("returned NULL without setting an
            # exception") from flush once the transactional producer hit a fatal error
            # such as being fenced; the error itself arrives through error_cb on a poll
            with contextlib.suppress(SystemError, KafkaException):
                self._producer.poll(0)
            self._raise_latched()
            raise KafkaFatalError(f"the Kafka producer failed: {exc}") from exc

    def _raise_latched(self) -> None:
        if self._fatal_error is not None:
            raise classify(KafkaException(self._fatal_error), "producer")
        if self._delivery_error is not None:
            error, self._delivery_error = self._delivery_error, None
            if self.transactional:
                raise AbortableError(f"a message was not delivered: {_describe(error)}")
            raise RetriableError(f"a message was not delivered: {_describe(error)}")

    def _retry(self, call: Callable[[], object], action: str) -> None:
        for attempt in range(1, MAX_RETRIABLE_ATTEMPTS + 1):
            try:
                call()
                return
            except KafkaException as exc:
                error = self._classify(exc, action)
                if not isinstance(error, RetriableError) or attempt == MAX_RETRIABLE_ATTEMPTS:
                    raise error from exc
                log.warning("retrying", extra={"action": action, "error": str(error)})
                time.sleep(min(5.0, 0.1 * 2**attempt))
