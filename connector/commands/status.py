"""``learnosity-connector status``: the stored lanes and state, read without disturbing.

It reads the state topic as any ``read_committed`` consumer would (no transactional id,
no group commits), so a running connector is not affected. Reading it back goes through
the same ``Checkpoint.restore`` as a start, so an entry a start would refuse is reported
here too.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from typing import Any

from connector.catchup.lanes import Lane
from connector.checkpoint import Checkpoint
from connector.cli import add_config_options
from connector.commands.common import load_for_command
from connector.kafka.presence import running_instances
from connector.kafka.state_topic import read_compacted
from connector.observability.progress import format_duration
from connector.settings import Settings

#: slices listed one per line in the text output (all of them in --json)
SHOWN_SLICES = 10


def configure(parser: argparse.ArgumentParser) -> None:
    add_config_options(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _iso(seconds: float | None) -> str | None:
    return datetime.fromtimestamp(seconds, UTC).isoformat() if seconds is not None else None


def _slice(lane: Lane) -> dict[str, Any]:
    return {
        "id": lane.id,
        "state": "running" if lane.started else "pending",
        "from": _iso(lane.lo),
        "to": _iso(lane.end),
        "position": _iso(lane.position),
        "records": lane.records,
    }


def _start_from(tail: Lane | None) -> str | None:
    """Where the tail reads from when it has no token: a time, or the earliest record
    (a reset, or a run that has not planned yet)."""
    if tail is None or tail.token is not None:
        return None
    if tail.lo is None:
        return None if tail.planned else "earliest"
    return _iso(tail.lo)


def summarize(settings: Settings) -> dict[str, Any]:
    """What the state topic holds now: the tail, the slices, sessions, instances."""
    checkpoint = Checkpoint()
    entries = read_compacted(
        settings.kafka_client_config(), settings.state_topic, checkpoint.restore
    )
    checkpoint.verify()
    tail = checkpoint.tail
    position = checkpoint.position() if not checkpoint.slices else None
    catchup = checkpoint.catchup()
    slices = sorted(checkpoint.slices, key=lambda lane: lane.lo or 0)
    return {
        "connector": settings.connector_name,
        "state_topic": settings.state_topic,
        "entries_read": entries,
        "cursor": tail.token if tail else None,
        "start_from": _start_from(tail),
        "position": _iso(position),
        "lag_seconds": round(time.time() - position, 1) if position else None,
        "sessions_tracked": len(checkpoint.sessions),
        "unreadable_entries": checkpoint.unreadable,
        "unreadable_examples": checkpoint.unreadable_examples,
        "last_commit": checkpoint.last_commit.get("at") or None,
        "last_commit_by_version": checkpoint.last_commit.get("by") or None,
        "slices_pending": catchup.slices_pending,
        "slices_running": catchup.slices_running,
        "slices_done": catchup.slices_done,
        "backfill_position": _iso(catchup.position),
        "backfill_records_left": round(catchup.records_left) if catchup.active else 0,
        "backfill_eta": format_duration(checkpoint.stored_eta) if catchup.active else None,
        "slices": [_slice(lane) for lane in slices],
        "running_instances": running_instances(
            settings.kafka_client_config(), settings.connector_name
        ),
    }


def run(args: argparse.Namespace) -> int:
    settings = load_for_command(args, need_kafka=True)
    summary = summarize(settings)
    if args.json:
        print(json.dumps(summary))
        return 0
    if summary["cursor"] is None and summary["start_from"] is None and not summary["slices"]:
        print(
            f"{settings.connector_name}: no cursor stored yet "
            f"(a run starts from LEARNOSITY_START_FROM={settings.learnosity_start_from})"
        )
    slices = summary.pop("slices")
    for key, value in summary.items():
        if isinstance(value, list):
            empty = "none running" if key == "running_instances" else None
            shown = ", ".join(value) or empty
        else:
            shown = value
        print(f"{key.replace('_', ' '):>24}: {'-' if shown is None else shown}")
    for entry in slices[:SHOWN_SLICES]:
        print(
            f"{'slice ' + entry['id']:>24}: {entry['state']} {entry['from']} .. {entry['to']}, "
            f"at {entry['position'] or '-'}, {entry['records']:,} records"
        )
    if len(slices) > SHOWN_SLICES:
        print(f"{'':>24}  ... and {len(slices) - SHOWN_SLICES} more (--json lists them all)")
    return 0
