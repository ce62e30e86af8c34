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
from connector.kafka.producer import EventProducer
from connector.settings import Delivery, StartFrom

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


def run(args: argparse.Namespace) -> int:
    settings = load_for_command(args, need_kafka=True)
    try:
        target = StartFrom.parse(args.to)
    except ValueError as exc:
        raise ConfigError([f"--to: {exc}"]) from None
    if target.kind == "latest":  # "latest" means now, not whenever the next run starts
        target = StartFrom("time", datetime.now(UTC))
    before = summarize(settings)
    if before["running_instances"] and not args.force:
        raise FatalError(
            "refusing to reset: an instance is running ("
            + ", ".join(before["running_instances"])
            + "); stop it first, or pass --force to fence it"
        )
    ensure_topics(settings.kafka_client_config(), topic_specs(settings))
    transactional = settings.kafka_delivery is Delivery.EXACTLY_ONCE
    producer = EventProducer(
        settings.kafka_client_config(),
        transactional_id=settings.transactional_id if transactional else None,
    )
    producer.init()
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
