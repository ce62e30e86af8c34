"""Preparing pages (the fetch process's per-record work): the one-pass writer against
the precise path, on the same emulator pages, in this process.

    precise    validate + record_fields + BodyEncoder.encode + fingerprint (the baseline)
    one-pass   kafka.event_writer.RawEventWriter, as the fetch process runs it
    hand raw   what the fetch process does instead when the runner waits for pages:
               the records written as JSON (``fetch_side.RawPage``)
    take raw   what the runner then does before preparing: that JSON read back
CPU time per record, best of ``--repeat`` passes over every page (no I/O is timed).

    .venv/bin/python bench/bench_prepare.py                 # 10k records, best of 7
    .venv/bin/python bench/bench_prepare.py --records 2000

To see what compiling the one-pass writer would buy, run it against a copy of the tree
where ``mypyc connector/kafka/event_writer.py`` was run (in the copy's root):
``PYTHONPATH=<copy> .venv/bin/python bench/bench_prepare.py`` (the first line says which
``event_writer`` was loaded). Not a test: nothing here passes or fails.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from pydantic import SecretStr

# only `connector` is imported (installed editable), so PYTHONPATH=<copy> takes the copy
from connector.changes.event import source_fields
from connector.changes.prepare import PagePreparer
from connector.emulator import Emulator, EmulatorConfig, WorkloadConfig
from connector.gc_tuning import tune_gc
from connector.kafka import event_writer
from connector.kafka.serde import BodyEncoder
from connector.learnosity.budget import RequestBudget
from connector.learnosity.client import Credentials, DataApiClient
from connector.learnosity.transport import HttpTransport
from connector.models import EventSource, Page


def emulator_pages(records: int) -> list[Page]:
    emulator = Emulator(
        EmulatorConfig(workload=WorkloadConfig(sessions=records, users=5000), rate_limit=0)
    ).start()
    client = DataApiClient(
        emulator.endpoint_url(),
        Credentials(emulator.consumer_key, SecretStr(emulator.consumer_secret), "localhost"),
        transport=HttpTransport(),
        budget=RequestBudget(1_000_000),
    )
    pages = []
    params: dict[str, Any] = {"sort": "asc", "limit": 50}
    try:
        while (page := client.fetch(params, max_attempts=3)).records:
            pages.append(page)
            params["next"] = page.next_token
    finally:
        client.close()
        emulator.stop()
    return pages


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    print(f"event_writer: {event_writer.__file__}")
    pages = emulator_pages(args.records)
    count = sum(len(page.records) for page in pages)
    common: dict[str, Any] = {
        "include_responses": False,
        "encode_body": BodyEncoder().encode,
        "source": source_fields(EventSource("bench", "v2025.2.LTS", "0")),
    }
    precise = PagePreparer(**common)
    one_pass = PagePreparer(**common, fast_writer=event_writer.RawEventWriter)
    tune_gc()  # as the fetch process does
    print(
        f"{count:,} emulator records in {len(pages)} pages; CPU us per record, best of "
        f"{args.repeat}"
    )
    steps: tuple[tuple[str, Callable[[], object]], ...] = (
        ("precise", lambda: [precise(page) for page in pages]),
        ("one-pass", lambda: [one_pass(page) for page in pages]),
    )
    for name, step in steps:
        best = float("inf")
        for _ in range(args.repeat):
            started = time.process_time()
            step()
            best = min(best, time.process_time() - started)
        print(f"{name:<10} {1e6 * best / count:6.2f}")


if __name__ == "__main__":
    main()
