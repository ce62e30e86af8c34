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

from connector.catchup.lanes import Lane, unplanned_tail
from connector.checkpoint import Checkpoint
from connector.cli import add_config_options
from connector.commands.common import load_for_command
from connector.fetch_side import FetchPlan, FetchProcess
from connector.gc_tuning import tune_gc
from connector.kafka.admin import TopicSpec, ensure_topics
from connector.kafka.presence import Presence
from connector.kafka.producer import EventProducer
from connector.kafka.serde import build_encoder
from connector.kafka.state_topic import read_compacted
from connector.observability.health import Health, HealthServer
from connector.observability.metrics import Metrics
from connector.observability.progress import BackfillProgress
from connector.runner import Runner
from connector.settings import Delivery, Settings

log = logging.getLogger("connector.run")


def configure(parser: argparse.ArgumentParser) -> None:
    add_config_options(parser)


def topic_specs(settings: Settings) -> list[TopicSpec]:
    rf = settings.kafka_topic_replication_factor
    specs = [
        TopicSpec(settings.kafka_topic, settings.kafka_topic_partitions, rf),
        TopicSpec(settings.kafka_dlq_topic, settings.kafka_topic_partitions, rf),
        # one partition: the cursor and every session entry in one ordered log
        TopicSpec(settings.state_topic, 1, rf, {"cleanup.policy": "compact"}),
    ]
    if settings.kafka_table_topic:  # the latest event per session: compaction keeps it
        compact = {"cleanup.policy": "compact"}
        specs.append(
            TopicSpec(settings.kafka_table_topic, settings.kafka_topic_partitions, rf, compact)
        )
    return specs


def restore_state(settings: Settings) -> tuple[Checkpoint, int]:
    """The committed checkpoint, read back from the state topic; and the entries read."""
    checkpoint = Checkpoint()
    count = read_compacted(settings.kafka_client_config(), settings.state_topic, checkpoint.restore)
    return checkpoint, count


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


def start_lane(settings: Settings) -> Lane:
    """The tail of a connector with no committed cursor: ``LEARNOSITY_START_FROM``.

    ``latest`` is fixed to a time once, so a rewind cannot skip ahead to a newer now.
    """
    start_from = settings.learnosity_start_from
    if start_from.kind == "latest":
        return unplanned_tail(datetime.now(UTC))
    return unplanned_tail(start_from.at)


def run(args: argparse.Namespace) -> int:
    settings = load_for_command(args, need_kafka=True)
    stop = threading.Event()
    _install_signal_handlers(stop, settings.shutdown_timeout_seconds)
    metrics = Metrics(settings.learnosity_api_version)
    health = Health()
    server = HealthServer(settings.http_port, metrics, health, settings.http_bind_address).start()
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
        checkpoint, entries = restore_state(settings)
        metrics.restore_duration.set(time.monotonic() - started)
        metrics.sessions_tracked.set(len(checkpoint.sessions))
        metrics.set_position(checkpoint.position())
        metrics.set_catchup(checkpoint.catchup())
        tail = checkpoint.tail
        log.info(
            "state restored",
            extra={
                "sessions": len(checkpoint.sessions),
                "entries": entries,
                "cursor": tail.token if tail else None,
                "slices": len(checkpoint.slices),
                "seconds": round(time.monotonic() - started, 2),
            },
        )
        health.restored = True
        tune_gc()  # after the restore: its objects are long-lived, the loop's are not
        encoder = build_encoder(settings)
        encoder.register()
        plan = FetchPlan(settings)

        def make_fetcher(lanes: tuple[Lane, ...]) -> FetchProcess:
            return FetchProcess(plan, lanes, observer=metrics, stop=stop)

        Runner(
            settings,
            producer=producer,
            encoder=encoder,
            checkpoint=checkpoint,
            make_fetcher=make_fetcher,
            start=start_lane(settings),
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
