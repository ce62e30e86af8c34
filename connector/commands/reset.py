"""``learnosity-connector reset --to WHEN``: move the stored cursor.

Every unfinished slice is removed and the tail starts again from ``WHEN``, unplanned: the
next run plans the gap from there to now (in slices when it is large). The fingerprints
stay, so re-reading from an earlier time emits only what really
changed. The new cursor is written in a transaction under the connector's own
transactional id: with ``--force`` against a running instance, that fences it (it stops
with a clear error and, restarted, picks the new cursor up) instead of racing it.
"""

from __future__ import annotations

import argparse
import logging
from datetime import UTC, datetime

from connector.catchup.lanes import Lane, unplanned_tail
from connector.checkpoint import CATCHUP_KEY
from connector.cli import add_config_options
from connector.commands.common import load_for_command
from connector.commands.run import topic_specs
from connector.commands.status import summarize
from connector.errors import ConfigError, FatalError
from connector.kafka.admin import ensure_topics
from connector.kafka.presence import running_instances
from connector.kafka.producer import EventProducer
from connector.kafka.state_topic import read_compacted
from connector.settings import Delivery, Settings, StartFrom

log = logging.getLogger("connector.reset")


def configure(parser: argparse.ArgumentParser) -> None:
    add_config_options(parser)
    parser.add_argument(
        "--to",
        required=True,
        metavar="WHEN",
        help="earliest, latest (now), an ISO 8601 time or Unix seconds",
    )
    parser.add_argument(
        "--force", action="store_true", help="reset even while an instance runs (it will be fenced)"
    )
    parser.add_argument(
        "--forget-state",
        action="store_true",
        help="also forget every session's state (damaged or of a newer format included): "
        "every session read again is published as created",
    )


def run(args: argparse.Namespace) -> int:
    settings = load_for_command(args, need_kafka=True)
    try:
        target = StartFrom.parse(args.to)
    except ValueError as exc:
        raise ConfigError([f"--to: {exc}"]) from None
    if target.kind == "latest":  # "latest" means now, not whenever the next run starts
        target = StartFrom("time", datetime.now(UTC))
    if args.forget_state:
        return _forget_state(settings, target, force=args.force)
    before = summarize(settings)
    if before["running_instances"] and not args.force:
        raise FatalError(
            "refusing to reset: an instance is running ("
            + ", ".join(before["running_instances"])
            + "); stop it first, or pass --force to fence it"
        )
    producer = _state_writer(settings)
    tail = unplanned_tail(target.at)
    for entry in before["slices"]:  # tombstones: a reset leaves no slice behind
        producer.produce(settings.state_topic, Lane(entry["id"], done=True).key, None)
    producer.produce(settings.state_topic, tail.key, tail.encode())
    producer.produce(settings.state_topic, CATCHUP_KEY, None)
    producer.commit()
    producer.close()
    print(
        f"cursor of {settings.connector_name}: "
        f"{before['cursor'] or before['start_from'] or 'none'} -> start from {target}"
        + (f"; {len(before['slices'])} unfinished slices cleared" if before["slices"] else "")
    )
    print(
        f"position was {before['position'] or '-'}; "
        f"{before['sessions_tracked']} session fingerprints kept (unchanged sessions "
        "will not be emitted again)"
    )
    return 0


def _state_writer(settings: Settings) -> EventProducer:
    """A producer under the connector's own transactional id (fencing a running one)."""
    ensure_topics(settings.kafka_client_config(), topic_specs(settings))
    transactional = settings.kafka_delivery is Delivery.EXACTLY_ONCE
    producer = EventProducer(
        settings.kafka_client_config(),
        transactional_id=settings.transactional_id if transactional else None,
    )
    producer.init()
    return producer


def _forget_state(settings: Settings, target: StartFrom, *, force: bool) -> int:
    """Every entry of the state topic tombstoned, whatever it holds, and the tail set to
    ``target``: the way out of a state no version of this connector can read."""
    running = running_instances(settings.kafka_client_config(), settings.connector_name)
    if running and not force:
        raise FatalError(
            "refusing to reset: an instance is running ("
            + ", ".join(running)
            + "); stop it first, or pass --force to fence it"
        )
    keys: set[bytes] = set()

    def collect(key: bytes, value: bytes | None) -> None:
        if value is None:
            keys.discard(key)
        else:
            keys.add(key)

    read_compacted(settings.kafka_client_config(), settings.state_topic, collect)
    producer = _state_writer(settings)
    tail = unplanned_tail(target.at)
    producer.produce_many(settings.state_topic, ((key, None) for key in keys))
    producer.produce(settings.state_topic, tail.key, tail.encode())
    producer.commit()
    producer.close()
    print(
        f"state of {settings.connector_name} forgotten ({len(keys)} entries removed); "
        f"start from {target}: every session read is published again as created"
    )
    return 0
