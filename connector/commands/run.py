"""``learnosity-connector run``: the connector, until SIGTERM or SIGINT.

Start-up order matters and is fixed here: settings (fail fast), the HTTP endpoints (so
probes answer while we start), topics, the producer's transactional id (fencing older
instances), state restore, schema registration, and only then the first fetch.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from datetime import UTC, datetime
from types import FrameType

from connector.changes.state import SessionState
from connector.cli import add_config_options
from connector.commands.common import load_for_command
from connector.fetch_side import FetchPlan, FetchProcess
from connector.gc_tuning import tune_gc
from connector.kafka.admin import TopicSpec, ensure_topics
from connector.kafka.presence import Presence
from connector.kafka.producer import EventProducer
from connector.kafka.serde import build_encoder
from connector.kafka.state_topic import CURSOR_KEY, StoredCursor, read_compacted
from connector.observability.health import Health, HealthServer
from connector.observability.metrics import Metrics
from connector.observability.progress import BackfillProgress
from connector.runner import Runner
from connector.settings import Delivery, Settings, StartFrom

log = logging.getLogger("connector.run")


def configure(parser: argparse.ArgumentParser) -> None:
    add_config_options(parser)


def topic_specs(settings: Settings) -> list[TopicSpec]:
    rf = settings.kafka_topic_replication_factor
    return [
        TopicSpec(settings.kafka_topic, settings.kafka_topic_partitions, rf),
        TopicSpec(settings.kafka_dlq_topic, settings.kafka_topic_partitions, rf),
        # one partition: the cursor and every session entry in one ordered log
        TopicSpec(settings.state_topic, 1, rf, {"cleanup.policy": "compact"}),
    ]


def restore_state(settings: Settings) -> tuple[SessionState, StoredCursor | None, int]:
    state = SessionState()
    cursor: list[StoredCursor] = []
    restore = state.restore_raw  # decode_entry + restore_entry, without the garbage

    def on_entry(key: bytes, value: bytes | None) -> None:
        if key == CURSOR_KEY:
            if value is not None:
                cursor[:] = [StoredCursor.decode(value)]
            return
        restore(key, value)

    count = read_compacted(settings.kafka_client_config(), settings.state_topic, on_entry)
    return state, (cursor[0] if cursor else None), count


def _install_signal_handlers(stop: threading.Event, shutdown_timeout: float) -> None:
    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():
            return
        log.info("shutting down", extra={"signal": signal.Signals(signum).name})
        stop.set()
        # the bound on a graceful shutdown: past it, leave at once (the open transaction
        # is aborted by the broker or the next instance; nothing committed is lost)
        timer = threading.Timer(shutdown_timeout, _hard_exit)
        timer.daemon = True
        timer.start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)


def _hard_exit() -> None:
    log.error("graceful shutdown took too long; exiting")
    sys.stderr.flush()
    os._exit(1)


def _start_from(settings: Settings, cursor: StoredCursor | None) -> StartFrom:
    """Where to start without a cursor: a committed "start from" wins over the settings'.

    ``latest`` is fixed to a time once, so a rewind cannot skip ahead to a newer now.
    """
    start_from = (
        StartFrom.parse(cursor.start_from)
        if cursor is not None and cursor.next_token is None and cursor.start_from
        else settings.learnosity_start_from
    )
    if start_from.kind == "latest":
        start_from = StartFrom("time", datetime.now(UTC))
    return start_from


def run(args: argparse.Namespace) -> int:
    settings = load_for_command(args, need_kafka=True)
    stop = threading.Event()
    _install_signal_handlers(stop, settings.shutdown_timeout_seconds)
    metrics = Metrics(settings.learnosity_api_version)
    health = Health()
    server = HealthServer(settings.http_port, metrics, health).start()
    producer: EventProducer | None = None
    presence: Presence | None = None
    try:
        kafka_config = settings.kafka_client_config()
        ensure_topics(kafka_config, topic_specs(settings))
        transactional = settings.kafka_delivery is Delivery.EXACTLY_ONCE
        producer = EventProducer(
            {**kafka_config, "statistics.interval.ms": "15000"},
            transactional_id=settings.transactional_id if transactional else None,
            stats_callback=metrics.librdkafka_stats,
        )
        health.set_kafka_probe(producer.reachable)
        producer.init()  # fences an older instance before we read its state
        presence = Presence(kafka_config, settings.connector_name, settings.state_topic).start()
        started = time.monotonic()
        state, cursor, entries = restore_state(settings)
        metrics.restore_duration.set(time.monotonic() - started)
        metrics.sessions_tracked.set(len(state))
        if cursor is not None:
            metrics.set_position(cursor.position)
        log.info(
            "state restored",
            extra={
                "sessions": len(state),
                "entries": entries,
                "cursor": cursor.next_token if cursor else None,
                "seconds": round(time.monotonic() - started, 2),
            },
        )
        health.restored = True
        tune_gc()  # after the restore: its objects are long-lived, the loop's are not
        encoder = build_encoder(settings)
        encoder.register()
        plan = FetchPlan(settings, _start_from(settings, cursor))

        def make_fetcher(token: str | None) -> FetchProcess:
            return FetchProcess(plan, token, observer=metrics, stop=stop)

        Runner(
            settings,
            producer=producer,
            encoder=encoder,
            state=state,
            cursor=cursor,
            make_fetcher=make_fetcher,
            metrics=metrics,
            health=health,
            stop=stop,
            progress=BackfillProgress(),
        ).run()
        log.info("stopped")
        return 0
    finally:
        stop.set()
        if presence is not None:
            presence.close()
        if producer is not None:
            producer.close()
        server.stop()
