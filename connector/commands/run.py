"""``learnosity-connector run``: the connector, until SIGTERM or SIGINT.

Start-up order matters and is fixed here: settings (every problem at once, fail fast),
the HTTP endpoints (so probes answer while we start), then everything the connector
depends on is checked before anything is created: one signed request to the Data API
(the credentials), the brokers' metadata (address, credentials, TLS, a state topic that
is not compacted), the schema registration; then topics, the producer's transactional
id (fencing older instances), state restore, and only then the first fetch. Each of
these fails with one line naming what failed and where.
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
from connector.commands.common import data_api_failure, load_for_command
from connector.errors import (
    ConnectorError,
    FatalError,
    RetriableError,
    ShutdownRequested,
    SourceFatalError,
)
from connector.fetch_side import FetchPlan, FetchProcess
from connector.gc_tuning import tune_gc
from connector.kafka.admin import TopicSpec, describe_topics, ensure_topics
from connector.kafka.presence import Presence
from connector.kafka.producer import EventProducer
from connector.kafka.serde import EventEncoder, build_encoder
from connector.kafka.state_topic import read_compacted
from connector.learnosity.client import DataApiClient
from connector.learnosity.paging import base_params
from connector.observability.health import Health, HealthServer
from connector.observability.logs import mask_url
from connector.observability.metrics import Metrics
from connector.observability.progress import BackfillProgress
from connector.runner import Runner
from connector.settings import Delivery, Settings

log = logging.getLogger("connector.run")

#: transient failures of the first signed request before ``run`` gives up (exit 1, and
#: Kubernetes starts it again): a wrong LEARNOSITY_BASE_URL must not hang the start
FIRST_REQUEST_ATTEMPTS = 5


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
    checkpoint.verify()
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


def first_request(settings: Settings, stop: threading.Event) -> None:
    """One signed request to the Data API: the credentials and the URL are right.

    Made before any topic is created, so a wrong secret leaves nothing behind."""
    client = DataApiClient.from_settings(settings, stop=stop)
    try:
        client.fetch({**base_params(settings), "limit": 1}, max_attempts=FIRST_REQUEST_ATTEMPTS)
    except RetriableError as exc:
        raise data_api_failure(settings.endpoint_url, exc, FIRST_REQUEST_ATTEMPTS) from exc
    except SourceFatalError as exc:
        raise data_api_failure(settings.endpoint_url, exc) from exc
    finally:
        client.close()


def check_brokers(settings: Settings) -> None:
    """The brokers answer with these credentials and this TLS configuration, and a state
    topic that exists has one partition and is compacted: before anything is created
    (waits are bounded)."""
    found = describe_topics(settings.kafka_client_config(), [settings.state_topic])
    info = found.get(settings.state_topic)
    if info is not None and info.partitions != 1:
        # the lanes and the session entries are one ordered log: across partitions a
        # restore could read a stale entry after a newer one
        raise FatalError(
            f"state topic {settings.state_topic!r} at Kafka {settings.kafka_bootstrap_servers} "
            f"has {info.partitions} partitions; it must have exactly 1 (its entries are read "
            "back in order): recreate it with one partition, or choose another CONNECTOR_NAME"
        )
    if info is not None and not info.compacted:
        raise FatalError(
            f"state topic {settings.state_topic!r} at Kafka {settings.kafka_bootstrap_servers} "
            f"exists with cleanup.policy={info.cleanup_policy!r}; it must be 'compact' (or the "
            "connector's state would be deleted by retention): change it with kafka-configs, "
            "or choose another CONNECTOR_NAME"
        )


def register_schema(encoder: EventEncoder, settings: Settings) -> None:
    """The value schema registered (or found) before any topic is created."""
    try:
        encoder.register()
    except ConnectorError as exc:
        where = mask_url(settings.schema_registry_url)
        message = str(exc)
        if where not in message:
            message = f"schema registry at {where}: {message}"
        raise FatalError(message) from exc


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
        first_request(settings, stop)
        check_brokers(settings)
        encoder = build_encoder(settings)
        register_schema(encoder, settings)
        ensure_topics(kafka_config, topic_specs(settings))
        transactional = settings.kafka_delivery is Delivery.EXACTLY_ONCE

        def new_producer() -> EventProducer:
            """A producer with our transactional id, initialised (fencing older epochs)."""
            nonlocal producer
            producer = EventProducer(
                {**kafka_config, "statistics.interval.ms": "15000"},
                transactional_id=settings.transactional_id if transactional else None,
                stats_callback=metrics.librdkafka_stats,
            )
            health.set_kafka_probe(producer.reachable)
            producer.init()  # fences an older instance before we read its state
            return producer

        producer = new_producer()
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
                "unreadable_entries": checkpoint.unreadable,
                "seconds": round(time.monotonic() - started, 2),
            },
        )
        if checkpoint.unreadable:
            log.warning(
                "unreadable session entries in the state topic were skipped: those sessions "
                "are published again as created when next read",
                extra={"count": checkpoint.unreadable, "examples": checkpoint.unreadable_examples},
            )
        health.restored = True
        tune_gc()  # after the restore: its objects are long-lived, the loop's are not
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
            renew_producer=new_producer,
        ).run()
        log.info("stopped")
        return 0
    except ShutdownRequested:  # SIGTERM while starting: nothing to finish
        log.info("stopped while starting")
        return 0
    finally:
        stop.set()
        if presence is not None:
            presence.close()
        if producer is not None:
            producer.close()
        server.stop()
