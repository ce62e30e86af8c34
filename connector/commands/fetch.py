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
from typing import TextIO

from connector.cli import add_config_options
from connector.commands.common import load_for_command
from connector.errors import SourceFatalError
from connector.learnosity.client import DataApiClient
from connector.learnosity.paging import Pager, Step

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
    pager = Pager.from_settings(settings, cursor=args.cursor, now=datetime.now(UTC))
    try:
        return _page_through(
            client,
            pager,
            max_pages=args.max_pages,
            poll_interval=settings.learnosity_poll_interval_seconds,
            stop=stop,
            out=sys.stdout,
        )
    except BrokenPipeError:  # `fetch | head` is fine
        return 0
    finally:
        client.close()


def _page_through(
    client: DataApiClient,
    pager: Pager,
    *,
    max_pages: int | None,
    poll_interval: float,
    stop: threading.Event,
    out: TextIO,
) -> int:
    pages = records = stalls = 0
    while max_pages is None or pages < max_pages:
        page = client.fetch(pager.request(), max_attempts=FETCH_MAX_ATTEMPTS)
        pages += 1
        step = pager.advance(page)
        if step is Step.STALLED:
            stalls += 1
            log.warning(
                "stalled cursor: the same token and records came back",
                extra={"cursor": pager.cursor},
            )
            if stalls >= FETCH_MAX_STALLS:
                raise SourceFatalError(
                    f"the cursor is stalled: {stalls} pages in a row returned the same token "
                    "and records"
                )
            stop.wait(poll_interval)
            continue
        stalls = 0
        for record in page.records:
            out.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")))
            out.write("\n")
        records += len(page.records)
        if page.is_empty:
            log.info(
                "caught up", extra={"pages": pages, "records": records, "cursor": pager.cursor}
            )
            out.flush()
            return 0
    out.flush()
    log.info(
        "stopped after --max-pages",
        extra={"pages": pages, "records": records, "cursor": pager.cursor},
    )
    return 0
