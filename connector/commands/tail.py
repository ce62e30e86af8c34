"""``learnosity-connector tail``: the output topic's events, decoded, as JSON lines."""

from __future__ import annotations

import argparse
import json
import sys

from connector.cli import add_config_options
from connector.commands.common import load_for_command
from connector.kafka.reader import read_topic
from connector.kafka.serde import build_decoder, jsonable


def configure(parser: argparse.ArgumentParser) -> None:
    add_config_options(parser)
    parser.add_argument(
        "--from-beginning",
        action="store_true",
        help="start at the oldest event (default: only new ones)",
    )
    parser.add_argument("--max", type=int, metavar="N", help="stop after N events")
    parser.add_argument(
        "--timeout",
        type=float,
        metavar="S",
        help="stop after S seconds without a new event (default: never)",
    )
    parser.add_argument("--topic", help="topic to read (default: KAFKA_TOPIC)")


def run(args: argparse.Namespace) -> int:
    settings = load_for_command(args, need_kafka=True)
    decoder = build_decoder(settings)
    messages = read_topic(
        settings.kafka_client_config(),
        args.topic or settings.kafka_topic,
        from_beginning=args.from_beginning,
        idle_timeout=args.timeout,
        max_messages=args.max,
    )
    try:
        for message in messages:
            event = decoder.decode(message.value or b"")
            line = {
                "partition": message.partition,
                "offset": message.offset,
                "key": (message.key or b"").decode("utf-8", "replace"),
                "event": jsonable(event),
            }
            sys.stdout.write(json.dumps(line, ensure_ascii=False, default=str) + "\n")
            sys.stdout.flush()
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        return 0
    return 0
