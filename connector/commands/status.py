"""``learnosity-connector status``: the stored cursor and state, read without disturbing.

It reads the state topic as any ``read_committed`` consumer would (no transactional id,
no group commits), so a running connector is not affected.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from typing import Any

from connector.cli import add_config_options
from connector.commands.common import load_for_command
from connector.kafka.presence import running_instances
from connector.kafka.state_topic import CURSOR_KEY, StoredCursor, read_compacted
from connector.settings import Settings


def configure(parser: argparse.ArgumentParser) -> None:
    add_config_options(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def summarize(settings: Settings) -> dict[str, Any]:
    """What the state topic holds now: cursor, position, lag, sessions, last commit."""
    live: set[bytes] = set()
    cursor: list[StoredCursor] = []

    def on_entry(key: bytes, value: bytes | None) -> None:
        if key == CURSOR_KEY:
            if value is not None:
                cursor[:] = [StoredCursor.decode(value)]
        elif value is None:
            live.discard(key)
        else:
            live.add(key)

    entries = read_compacted(settings.kafka_client_config(), settings.state_topic, on_entry)
    stored = cursor[0] if cursor else None
    position = stored.position if stored else None
    return {
        "connector": settings.connector_name,
        "state_topic": settings.state_topic,
        "entries_read": entries,
        "cursor": stored.next_token if stored else None,
        "start_from": stored.start_from if stored else None,
        "position": datetime.fromtimestamp(position, UTC).isoformat() if position else None,
        "lag_seconds": round(time.time() - position, 1) if position else None,
        "sessions_tracked": len(live),
        "last_commit": stored.committed_at if stored else None,
        "last_commit_by_version": stored.connector_version if stored else None,
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
    if summary["cursor"] is None and summary["start_from"] is None:
        print(
            f"{settings.connector_name}: no cursor stored yet "
            f"(a run starts from LEARNOSITY_START_FROM={settings.learnosity_start_from})"
        )
    for key, value in summary.items():
        shown = (", ".join(value) or "none running") if isinstance(value, list) else value
        print(f"{key.replace('_', ' '):>24}: {'-' if shown is None else shown}")
    return 0
