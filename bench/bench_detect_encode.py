"""The pure part of the pipeline: validation + change detection, and event encoding.

Prints records/s and CPU seconds per stage next to a naive baseline from the same run
(json.dumps of every record, no detection), then the memory one tracked session costs.

    .venv/bin/python bench/bench_detect_encode.py                  # 100k records, 1M sessions
    .venv/bin/python bench/bench_detect_encode.py --records 20000 --sessions 100000

Not a test: nothing here passes or fails.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import resource
import time
import tracemalloc
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from connector.changes import ChangeDetector, SessionEntry, SessionState
from connector.changes.event import change_to_event, source_fields
from connector.kafka.serde import EventDecoder, RegistryEncoder, SingleObjectEncoder
from connector.models import Change, EventSource

PAGE = 50  # records per Data API page
PAGES_PER_COMMIT = 20  # state is applied once per commit, as the runner does
STATUSES = ["Incomplete", "Incomplete", "Completed", "Pending Scoring"]


def workload(count: int, sessions: int, seed: int = 7) -> list[dict[str, Any]]:
    """Records as the Data API returns them; sessions come back repeatedly, mostly unchanged."""
    rng = random.Random(seed)
    ids = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(sessions)]
    current: dict[str, dict[str, Any]] = {}
    records = []
    for n in range(count):
        sid = rng.choice(ids)
        rec = current.get(sid)
        if rec is None or rng.random() < 0.3:  # ~30% of revisits change something
            score = rng.choice([None, rng.randint(0, 40)])
            rec = {
                "user_id": f"user-{sid[:8]}",
                "activity_id": "chemistry_classtest1",
                "session_id": sid,
                "score": score,
                "max_score": 40,
                "status": rng.choice(STATUSES),
                "dt_started": "2025-03-04T05:00:00Z",
                "subscores": [
                    {
                        "id": f"subscore-{k}",
                        "title": "biochem",
                        "num_questions": 20,
                        "num_attempted": rng.randint(0, 20),
                        "score": rng.randint(0, 20),
                        "max_score": 20,
                        "attempted_max_score": 20,
                        "items": [str(293486384 + i) for i in range(5)],
                    }
                    for k in range(2)
                ],
            }
            current[sid] = rec
        records.append({**rec, "dt_saved": f"2025-03-04T05:{n % 60:02d}:00Z"})
    return records


class Row:
    def __init__(self, stage: str, items: int, wall: float, cpu: float, note: str = "") -> None:
        self.stage, self.items, self.wall, self.cpu, self.note = stage, items, wall, cpu, note

    def __str__(self) -> str:
        rate = self.items / self.wall if self.wall else float("inf")
        return (
            f"{self.stage:<40} {self.items:>9,} {self.wall:>8.3f} {self.cpu:>8.3f} "
            f"{rate:>12,.0f}  {self.note}"
        )


def timed(stage: str, items: int, run: Callable[[], object], note: str = "") -> Row:
    # the stages keep every output to feed the next one, which the runner never does;
    # with the collector on, walking those growing lists would be most of what we time
    gc.collect()
    gc.disable()
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        return Row(stage, items, time.perf_counter() - wall, time.process_time() - cpu, note)
    finally:
        gc.enable()


def detect_all(records: list[dict[str, Any]], state: SessionState) -> list[Change]:
    detector = ChangeDetector()
    changes: list[Change] = []
    pending: dict[str, SessionEntry] = {}
    for page_no, start in enumerate(range(0, len(records), PAGE), 1):
        result = detector.detect(records[start : start + PAGE], state, pending)
        changes += result.changes
        pending.update(result.updates)
        if page_no % PAGES_PER_COMMIT == 0:
            state.apply(pending)
            pending = {}
    state.apply(pending)
    return changes


def throughput(count: int, sessions: int) -> None:
    records = workload(count, sessions)
    observed = datetime.now(UTC)
    source = source_fields(EventSource("bench", "v2025.2.LTS", "0"))
    changes: list[Change] = []
    events: list[dict[str, Any]] = []
    encoded: list[bytes] = []
    single = SingleObjectEncoder()

    def detect() -> None:
        changes.extend(detect_all(records, SessionState()))

    def to_events() -> None:
        events.extend(change_to_event(c, observed, source) for c in changes)

    def encode() -> None:
        encoded.extend(single.encode(e) for e in events)

    rows = [
        timed(
            "baseline: json.dumps every record",
            count,
            lambda: [json.dumps(r).encode() for r in records],
            "no detection, no dedup",
        ),
        timed("validate + fingerprint + detect", count, detect, "per fetched record"),
    ]
    registry = _mock_registry_encoder()
    fastavro_only = _fastavro_single_object()
    rows += [
        timed("change -> event dict", len(changes), to_events, "per change"),
        timed("single-object encode", len(events), encode, "compiled writer, per change"),
        timed(
            "single-object encode, fastavro",
            len(events),
            lambda: [fastavro_only.encode(e) for e in events],
            "schemaless_writer, per change",
        ),
        timed(
            "registry encode (confluent serializer)",
            len(events),
            lambda: [registry.encode(e) for e in events],
            "mock registry, per change",
        ),
        timed(
            "decode single-object (tail)",
            len(encoded),
            lambda: (
                [EventDecoder().decode(b) for b in encoded[:1]]
                + [_DECODER.decode(b) for b in encoded]
            ),
            "per change",
        ),
    ]
    end_to_end = rows[1].wall + rows[2].wall + rows[3].wall
    end_cpu = rows[1].cpu + rows[2].cpu + rows[3].cpu  # detect, event dict, compiled encode
    rows.append(
        Row(
            "detect + event + single-object, total",
            count,
            end_to_end,
            end_cpu,
            "per fetched record",
        )
    )
    repeats = count - len(changes)
    print(
        f"{count:,} records over {sessions:,} sessions: {len(changes):,} changes, "
        f"{repeats:,} repeats dropped ({repeats / count:.0%}); mean event "
        f"{sum(map(len, encoded)) / max(1, len(encoded)):.0f} bytes"
    )
    print(f"{'stage':<40} {'items':>9} {'wall s':>8} {'cpu s':>8} {'items/s':>12}")
    for row in rows:
        print(row)


_DECODER = EventDecoder()


def _fastavro_single_object() -> SingleObjectEncoder:
    encoder = SingleObjectEncoder()
    encoder._compiled = None  # the fastavro path the encoder falls back to
    return encoder


def _mock_registry_encoder() -> RegistryEncoder:
    from confluent_kafka.schema_registry import SchemaRegistryClient  # noqa: PLC0415

    encoder = RegistryEncoder(SchemaRegistryClient.new_client({"url": "mock://bench"}), "bench")
    encoder.register()
    return encoder


def rss_bytes() -> int:
    with Path("/proc/self/statm").open() as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def memory(sessions: int) -> None:
    rng = random.Random(11)
    ids = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(sessions)]
    updates = {sid: SessionEntry(rng.getrandbits(64), rng.choice(STATUSES)) for sid in ids}
    gc.collect()
    before = rss_bytes()
    state = SessionState()
    state.apply(updates)
    gc.collect()
    rss = rss_bytes() - before
    del state
    gc.collect()
    tracemalloc.start()
    state = SessionState()
    state.apply(updates)
    traced, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        f"SessionState with {len(state):,} sessions: {rss / sessions:.0f} B/session resident "
        f"(RSS delta), {traced / sessions:.0f} B/session allocated (tracemalloc); "
        f"target <= 200"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--sessions", type=int, default=1_000_000, help="for the memory part")
    parser.add_argument("--workload-sessions", type=int, default=20_000)
    args = parser.parse_args()
    memory(args.sessions)  # first: a fresh heap, so the RSS delta is the state's own
    throughput(args.records, args.workload_sessions)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"peak RSS of this run: {peak_kib / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
