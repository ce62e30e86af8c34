"""``learnosity-connector fetch``: read-only paging, records as JSON lines on stdout.

The user's dry run: it reads exactly what ``run`` would read (same filters, same start),
writes nothing anywhere, and exits 0 once caught up (the first empty page).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
from datetime import UTC, datetime
from typing import Any, TextIO

from connector.catchup.lanes import Lane, Step, unplanned_tail
from connector.changes.prepare import page_position
from connector.cli import add_config_options
from connector.commands.common import data_api_failure, load_for_command
from connector.errors import RetriableError, SourceFatalError
from connector.learnosity.client import DataApiClient
from connector.learnosity.paging import base_params

log = logging.getLogger("connector.fetch")

#: transient failures of one page before fetch gives up (run retries forever)
FETCH_MAX_ATTEMPTS = 5
#: consecutive stalled pages before fetch gives up
FETCH_MAX_STALLS = 3


def configure(parser: argparse.ArgumentParser) -> None:
    add_config_options(parser)
    parser.add_argument("--max-pages", type=int, metavar="N", help="stop after N pages")
    parser.add_argument(
        "--start-from",
        metavar="WHEN",
        help="earliest, latest, ISO 8601 or Unix seconds (default: LEARNOSITY_START_FROM)",
    )
    parser.add_argument("--cursor", metavar="TOKEN", help="continue from this next token")


def run(args: argparse.Namespace) -> int:
    settings = load_for_command(
        args, need_kafka=False, overrides={"learnosity_start_from": args.start_from}
    )
    stop = threading.Event()
    client = DataApiClient.from_settings(settings, stop=stop)
    start = settings.learnosity_start_from
    lane = unplanned_tail(datetime.now(UTC) if start.kind == "latest" else start.at)
    if args.cursor:
        lane = Lane(lane.id, token=args.cursor)
    try:
        return _page_through(
            client,
            lane,
            base_params(settings),
            max_pages=args.max_pages,
            poll_interval=settings.learnosity_poll_interval_seconds,
            stop=stop,
            out=sys.stdout,
        )
    except BrokenPipeError:  # `fetch | head` is fine
        return 0
    except RetriableError as exc:  # the attempts are spent: say where and why, in one line
        raise data_api_failure(settings.endpoint_url, exc, FETCH_MAX_ATTEMPTS) from exc
    except SourceFatalError as exc:
        raise data_api_failure(settings.endpoint_url, exc) from exc
    finally:
        client.close()


def record_line(record: object) -> str:
    """One record as a JSON line; one the fast parser refused as the bytes it came in."""
    source = getattr(record, "source", None)  # tolerant_json's Salvaged and Unreadable
    if isinstance(source, bytes):
        return source.decode("utf-8", "backslashreplace").replace("\n", " ")
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


def _page_through(
    client: DataApiClient,
    lane: Lane,
    params: dict[str, Any],
    *,
    max_pages: int | None,
    poll_interval: float,
    stop: threading.Event,
    out: TextIO,
) -> int:
    pages = records = stalls = 0
    while max_pages is None or pages < max_pages:
        page = client.fetch(lane.params(params), max_attempts=FETCH_MAX_ATTEMPTS)
        pages += 1
        moved, step = lane.advance(page, page_position(page))
        if step is Step.STALLED:
            stalls += 1
            log.warning(
                "stalled cursor: the token did not move; asking again from its position",
                extra={"cursor": lane.token},
            )
            if stalls >= FETCH_MAX_STALLS:
                raise SourceFatalError(
                    f"the cursor is stalled: {stalls} pages in a row returned records "
                    "without moving the next token"
                )
            lane = lane.restarted()
            stop.wait(poll_interval)
            continue
        lane = moved
        stalls = 0
        for record in page.records:
            out.write(record_line(record))
            out.write("\n")
        records += len(page.records)
        if page.is_empty:
            log.info("caught up", extra={"pages": pages, "records": records, "cursor": lane.token})
            out.flush()
            return 0
    out.flush()
    log.info(
        "stopped after --max-pages",
        extra={"pages": pages, "records": records, "cursor": lane.token},
    )
    return 0
