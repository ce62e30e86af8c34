"""The connector's loop, and the only place that orders side effects.

    restore   init_transactions (fences older instances, ends their open transactions),
              then read the state topic back into a ``Checkpoint``: session states and
              lanes (the live tail and any unfinished slices)
    fetch     the fetch process pages through the Data API ahead of us, many lanes at
              once (``catchup.crawl``), and prepares each page: validation, fingerprints,
              event bodies (connector.fetch_side)
    decide    each page against committed state + this batch's pending updates (pure)
    produce   events and dead letters into the open transaction
    commit    once per commit interval, when the tail is caught up, or when the batch is
              large: the batch's session entries and lanes go into the same transaction,
              which is then committed
    apply     only after a successful commit does the checkpoint change

A failure between produce and commit leaves an open transaction that the broker aborts
(or the next instance's init_transactions does): the next run re-reads every lane from
its committed cursor and decides again against the last committed session states.
Nothing is lost and, for ``read_committed`` consumers, nothing is duplicated.

Errors by recovery action: RetriableError/AbortableError → abort, rewind the fetch side
to the committed lanes, go on; FatalError → stop with one clear line (exit 1).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from connector import __version__
from connector.catchup.crawl import Fetched
from connector.catchup.lanes import Lane, Step
from connector.changes.detector import decide
from connector.checkpoint import Batch, Checkpoint
from connector.errors import (
    AbortableError,
    ConnectorError,
    FatalError,
    ProducerFencedError,
    RetriableError,
)
from connector.kafka.cloudevents import CloudEventHeaders
from connector.kafka.producer import EventProducer, HeaderList, Headers
from connector.kafka.serde import BodyEncoder, EventEncoder
from connector.models import DeadLetter, PreparedPage
from connector.observability.health import Health
from connector.observability.metrics import Metrics
from connector.observability.progress import BackfillProgress
from connector.settings import Settings

log = logging.getLogger("connector.runner")

#: commit early when a batch holds this many records, to bound memory and replay time
MAX_BATCH_RECORDS = 20_000
#: bytes of a message kept for its key, headers and framing
MESSAGE_HEADROOM = 4096
#: the main loop wakes at least this often to beat the liveness heartbeat
TICK_SECONDS = 1.0


class PageSource(Protocol):
    """What the runner reads from (``fetch_side.FetchProcess``)."""

    def start(self) -> None: ...

    def get(self, timeout: float) -> Fetched | None: ...

    def rewind(self, lanes: tuple[Lane, ...]) -> None: ...

    def join(self, timeout: float) -> None: ...


class Runner:
    def __init__(
        self,
        settings: Settings,
        *,
        producer: EventProducer,
        encoder: EventEncoder,
        checkpoint: Checkpoint,
        make_fetcher: Callable[[tuple[Lane, ...]], PageSource],
        start: Lane,
        metrics: Metrics,
        health: Health,
        stop: threading.Event,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        progress: BackfillProgress | None = None,
        body: BodyEncoder | None = None,
        renew_producer: Callable[[], EventProducer] | None = None,
    ) -> None:
        self.settings = settings
        self.producer = producer
        self.encoder = encoder
        self.checkpoint = checkpoint
        self._body = body or BodyEncoder()
        self.metrics = metrics
        self.health = health
        self.stop = stop
        self._clock = clock
        self._wall = wall
        self.progress = progress
        self._make_fetcher = make_fetcher
        #: the tail to start with when none is committed (where a new connector starts)
        self._start = start
        self._commit_interval = settings.kafka_commit_interval_ms / 1000
        self._headers = CloudEventHeaders(settings.connector_name)
        self._table_topic = settings.kafka_table_topic
        #: a new, initialised producer for the same transactional id (after a pause)
        self._renew_producer = renew_producer
        #: the largest event value produced; larger ones are dead letters (key and
        #: headers take the rest of a message)
        self._max_value = producer.max_message_bytes - MESSAGE_HEADROOM

    # --- the loop -----------------------------------------------------------------------
    def run(self) -> None:
        self._header = self.encoder.header  # known now: the encoder was registered
        fetcher = self._make_fetcher(self._resume())
        fetcher.start()
        batch = self._new_batch()
        try:
            while not self.stop.is_set():
                self.health.beat()
                wait = max(
                    0.0, min(TICK_SECONDS, batch.started + self._commit_interval - self._clock())
                )
                item = fetcher.get(timeout=wait if batch.dirty else TICK_SECONDS)
                try:
                    caught_up = self._take(item, batch) if item is not None else False
                    if batch.dirty and (
                        caught_up
                        or batch.records >= MAX_BATCH_RECORDS
                        or self._clock() - batch.started >= self._commit_interval
                    ):
                        self._commit(batch)
                        self._report(batch, caught_up)
                        batch = self._new_batch()
                except (AbortableError, RetriableError, ProducerFencedError) as exc:
                    self._recover(exc, batch)
                    fetcher.rewind(self._resume())
                    batch = self._new_batch()
            self._finish(batch)
        finally:
            fetcher.join(timeout=2.0)

    def _resume(self) -> tuple[Lane, ...]:
        return self.checkpoint.resume(self._start)

    def _new_batch(self) -> Batch:
        return self.checkpoint.begin(self._clock())

    def _take(self, item: Fetched, batch: Batch) -> bool:
        """Take one item into the batch; True when the live tail is caught up."""
        if item.error is not None:
            if isinstance(item.error, ConnectorError):
                raise item.error
            raise FatalError(f"the fetcher failed: {item.error!r}") from item.error
        for lane in item.lanes:
            batch.take_lane(lane)
        if item.step is Step.STALLED:  # no page: the lane asks again from its position
            self.metrics.stalled_cursor.inc()
            return False
        if item.page is None:
            return False
        self.health.first_poll = True
        self._process(item.page, batch, item.lanes[0].token if item.lanes else None)
        if item.lanes and not item.lanes[0].is_tail:
            batch.slice_records += item.page.fetched
        return item.step is Step.CAUGHT_UP

    def _process(self, page: PreparedPage, batch: Batch, cursor: str | None) -> None:
        batch.records += page.fetched
        self.metrics.records_fetched.inc(page.fetched)
        result = decide(
            ((r, r.fingerprint) for r in page.records), self.checkpoint.sessions, batch.updates
        )
        # the hot loop: one assemble per change, then the page's events in one call
        header, assemble, headers_of = self._header, self._body.assemble, self._headers
        counts = batch.changes
        events: list[tuple[bytes, bytes, HeaderList]] = []
        table: list[tuple[bytes, bytes, HeaderList]] = []
        for change in result.changes:
            record = change.record
            kind = change.kind
            value = assemble(  # a ChangeKind is its symbol (StrEnum): no .value lookup
                header,
                record.body,
                change.event_id,
                kind,
                change.previous_status,
                change.previous_score,
                change.previous_max_score,
            )
            if len(value) > self._max_value:
                self._too_large(record.session_id, value, batch, cursor)
                continue  # its state is still applied: a repeat will not send it again
            headers = headers_of(change.event_id, kind, record.session_id, record.updated_ms)
            events.append((record.user_id.encode("utf-8"), value, headers))
            if self._table_topic:  # the latest event per session, keyed by the session
                table.append((record.session_id.encode("utf-8"), value, headers))
            counts[kind] = counts.get(kind, 0) + 1
        try:
            self.producer.produce_with_headers(self.settings.kafka_topic, events)
            if table:
                self.producer.produce_with_headers(self._table_topic, table)
        except ConnectorError:
            self.metrics.produce_errors.inc()
            raise
        for letter in page.dead_letters:
            self._produce_dead_letter(letter, cursor)
            batch.dead_letters[letter.reason] = batch.dead_letters.get(letter.reason, 0) + 1
        batch.updates.update(result.updates)
        batch.repeats += result.repeats
        batch.stale += result.stale

    def _too_large(self, session_id: str, value: bytes, batch: Batch, cursor: str | None) -> None:
        """An event no Kafka message can hold: a dead letter, its value cut to fit."""
        limit = self._max_value
        letter = DeadLetter(
            key=session_id.encode("utf-8"),
            value=value[:limit],
            error_class="EventTooLargeError",
            reason="too_large",
            message=(
                f"the event is {len(value)} bytes, over the {limit} a message may hold "
                f"(KAFKA message.max.bytes less headroom): the value here is its first {limit}"
            ),
        )
        self._produce_dead_letter(letter, cursor)
        batch.dead_letters["too_large"] = batch.dead_letters.get("too_large", 0) + 1

    def _produce_dead_letter(self, letter: DeadLetter, cursor: str | None) -> None:
        headers = [
            ("error.class", letter.error_class.encode()),
            ("error.reason", letter.reason.encode()),
            ("error.message", letter.message.encode("utf-8", "backslashreplace")),
            ("cursor", (cursor or "").encode()),
            ("connector.version", __version__.encode()),
        ]
        self._send(self.settings.kafka_dlq_topic, letter.key, letter.value, headers)

    def _send(
        self, topic: str, key: bytes | None, value: bytes | None, headers: Headers | None = None
    ) -> None:
        try:
            self.producer.produce(topic, key, value, headers)
        except ConnectorError:
            self.metrics.produce_errors.inc()
            raise

    # --- commit -------------------------------------------------------------------------
    def _commit(self, batch: Batch) -> None:
        started = self._clock()
        if not self.producer.transactional:
            self.producer.flush()  # at least once: events are delivered before state moves
        try:  # the batch's state entries, in one call (no per-message overhead)
            self.producer.produce_many(self.settings.state_topic, self.checkpoint.messages(batch))
            self.producer.commit()
        except ConnectorError as exc:
            self.metrics.produce_errors.inc()
            if not isinstance(exc, AbortableError | RetriableError):
                self.metrics.transactions.labels("failed").inc()
            raise
        # committed: now, and only now, the checkpoint follows
        self.checkpoint.apply(batch, self._wall())
        self._count_committed(batch, self._clock() - started)

    def _count_committed(self, batch: Batch, seconds: float) -> None:
        m = self.metrics
        m.transactions.labels("committed").inc()
        m.commit_duration.observe(seconds)
        for kind, count in batch.changes.items():
            m.changes_emitted.labels(kind).inc(count)
        for reason, count in batch.dead_letters.items():
            m.dead_letters.labels(reason).inc(count)
        m.repeats_dropped.inc(batch.repeats)
        m.stale_records.inc(batch.stale)
        m.sessions_tracked.set(len(self.checkpoint.sessions))
        m.set_position(self.checkpoint.position())
        m.set_catchup(self.checkpoint.catchup())
        self.health.kafka_ok()
        log.debug(
            "committed",
            extra={
                "records": batch.records,
                "changes": sum(batch.changes.values()),
                "lanes": len(batch.lanes),
            },
        )

    def _report(self, batch: Batch, caught_up: bool) -> None:
        if self.progress is not None:
            self.progress.update(
                self.checkpoint.position(),
                batch.records,
                caught_up=caught_up,
                catchup=self.checkpoint.catchup(),
            )

    def _recover(self, exc: ConnectorError, batch: Batch) -> None:
        """After a failed batch: abort it, so the lanes can be re-read from the commit.

        A fenced producer is fatal, unless the batch's transaction outlived its timeout
        (the process was paused: a frozen node, SIGSTOP): then the broker aborted it and
        bumped our epoch, and a new producer carries on where the last commit left.
        """
        try:
            if not isinstance(exc, ProducerFencedError):
                self._abort(exc)
                return
        except ProducerFencedError as fenced:
            exc = fenced
        paused = self._clock() - batch.started
        if self._renew_producer is None or paused <= self.producer.transaction_timeout:
            raise exc
        log.warning(
            "the transaction outlived its timeout (was the process paused?): the broker "
            "aborted it; re-reading from the committed lanes with a new producer",
            extra={"open_seconds": round(paused, 1), "error": str(exc)},
        )
        self.metrics.transactions.labels("aborted").inc()
        with contextlib.suppress(Exception):  # the old one is dead: close what can be
            self.producer.close()
        self.producer = self._renew_producer()

    def _abort(self, exc: Exception) -> None:
        log.warning(
            "transaction aborted; re-reading from the committed cursor",
            extra={"error": str(exc), "lanes": len(self.checkpoint.lanes)},
        )
        self.metrics.transactions.labels("aborted").inc()
        self.producer.abort()

    def _finish(self, batch: Batch) -> None:
        """On shutdown: commit what is complete, within the shutdown bound."""
        if not batch.dirty:
            return
        try:
            self._commit(batch)
            log.info("committed the last batch before shutdown", extra={"lanes": len(batch.lanes)})
        except (AbortableError, RetriableError) as exc:
            self._abort(exc)
