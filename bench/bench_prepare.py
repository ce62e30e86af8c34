"""Preparing pages (the fetch process's per-record work), and what encoding costs in it.

    prepare        validate + record_fields + BodyEncoder.encode + fingerprint, as the
                   fetch process runs it (``changes.prepare.PagePreparer``)
    encode (ours)  the one writer alone: the generated code (``kafka.avro_writer``) over
                   each whole event, as ``SingleObjectEncoder`` writes it
    encode (fastavro)  fastavro's ``schemaless_writer`` over the same events: the ground
                   truth the generated writer is tested against, and its fallback
CPU time per record, best of ``--repeat`` passes over every page (no I/O is timed).

    .venv/bin/python bench/bench_prepare.py                 # 10k records, best of 7
    .venv/bin/python bench/bench_prepare.py --records 2000

Not a test: nothing here passes or fails.
"""

from __future__ import annotations

import argparse
import io
import time
from collections.abc import Callable
from typing import Any

from fastavro import parse_schema, schemaless_writer
from pydantic import SecretStr

from connector.changes.event import record_fields, source_fields
from connector.changes.prepare import PagePreparer
from connector.changes.validate import validate
from connector.emulator import Emulator, EmulatorConfig, WorkloadConfig
from connector.gc_tuning import tune_gc
from connector.kafka.serde import BodyEncoder, SingleObjectEncoder, value_schema
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
    pages = emulator_pages(args.records)
    count = sum(len(page.records) for page in pages)
    source = source_fields(EventSource("bench", "v2025.2.LTS", "0"), "slice:s1", True)
    preparer = PagePreparer(
        include_responses=False, encode_body=BodyEncoder().encode, source=source
    )
    events = [
        {
            "event_id": "0f8b6c2e-4c1d-8a3b-9f00-0123456789ab",
            "change": "created",
            **record_fields(validate(record), 1_764_000_000_000, source),
        }
        for page in pages
        for record in page.records
    ]
    ours = SingleObjectEncoder()
    parsed = parse_schema(value_schema())

    def fastavro_encode() -> None:
        for event in events:
            schemaless_writer(io.BytesIO(), parsed, event)

    tune_gc()  # as the fetch process does
    print(
        f"{count:,} emulator records in {len(pages)} pages; CPU us per record, best of "
        f"{args.repeat}"
    )
    steps: tuple[tuple[str, Callable[[], object]], ...] = (
        ("prepare", lambda: [preparer(page) for page in pages]),
        ("encode (ours)", lambda: [ours.encode(event) for event in events]),
        ("encode (fastavro)", fastavro_encode),
    )
    for name, step in steps:
        best = float("inf")
        for _ in range(args.repeat):
            started = time.process_time()
            step()
            best = min(best, time.process_time() - started)
        print(f"{name:<18} {1e6 * best / count:6.2f}")


if __name__ == "__main__":
    main()
