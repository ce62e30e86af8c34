"""Tracked-session state: memory per session, and restoring it from a real state topic.

1. Memory: a fresh process builds ``SessionState`` with ``--sessions`` entries (the way a
   restore fills it, ``restore_entry``) and reports the RSS delta and what tracemalloc
   counts, per session. Baseline from the same run: the naive store, a dict from the
   session id string to (fingerprint, status).
2. Restore: a Kafka broker of our own; ``--sessions`` entries (plus the cursor) written
   to a compacted ``<name>.state`` topic with a transactional producer, 20,000 per
   transaction as the runner commits them; then, each in a fresh process:
     read floor   the same read_committed consumer reading every message, nothing else
     restore      ``connector.commands.run.restore_state`` (read_compacted + Checkpoint.restore
                  + SessionState.restore_entry), what ``run`` does before it fetches
   The broker and the reader share this machine's cores: that is part of the figure.

    .venv/bin/python bench/bench_state.py                    # 1,000,000 sessions
    .venv/bin/python bench/bench_state.py --sessions 200000

Targets (from the issue): <= 200 bytes resident per tracked session at 1,000,000
sessions; restore of 1,000,000 sessions in <= 20 s. Not a test: nothing passes or fails.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/bench_state.py` puts only bench/ there
    sys.path.insert(0, str(ROOT))

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition  # noqa: E402

from bench.bench_pipeline import kafka_broker, machine_lines, peak_rss, rss  # noqa: E402
from connector.catchup.lanes import TAIL_ID, Lane  # noqa: E402
from connector.changes.state import (  # noqa: E402
    KNOWN_STATUSES,
    SessionEntry,
    SessionState,
    encode_entry,
)
from connector.kafka.admin import TopicSpec, ensure_topics  # noqa: E402

PER_TRANSACTION = 20_000  # the runner's MAX_BATCH_RECORDS
MEMORY_TARGET = 200
RESTORE_TARGET = 20.0


def session_ids(count: int, seed: int = 11) -> list[str]:
    rng = random.Random(seed)
    return [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(count)]


def entries(count: int, seed: int = 11) -> list[tuple[str, SessionEntry]]:
    rng = random.Random(seed + 1)
    statuses = list(KNOWN_STATUSES)
    return [
        # updated times like the API's: ms over the past year
        (
            sid,
            SessionEntry(
                rng.getrandbits(64), rng.choice(statuses), 1_764_000_000_000 + rng.getrandbits(35)
            ),
        )
        for sid in session_ids(count, seed)
    ]


def run_worker(*argv: str) -> dict[str, Any]:
    """This file in a fresh process (``--worker ...``); its one JSON line of results."""
    done = subprocess.run(
        [sys.executable, __file__, "--worker", *argv],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        cwd=ROOT,
    )
    if done.returncode != 0:
        raise RuntimeError(f"worker {argv[0]} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# --- 1. memory ---------------------------------------------------------------------------
def memory_worker(kind: str, count: int) -> dict[str, Any]:
    """RSS delta and tracemalloc total of one store holding ``count`` sessions."""
    # what a restore reads: key bytes and value bytes (made before the measurement)
    data = [encode_entry(sid, entry) for sid, entry in entries(count)]
    gc.collect()
    pid = os.getpid()
    before = rss(pid)
    store = _fill(kind, data)
    gc.collect()
    resident = rss(pid) - before
    del store
    gc.collect()
    tracemalloc.start()
    store = _fill(kind, data)
    traced, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"sessions": len(store), "resident": resident, "traced": traced}


def _fill(kind: str, data: list[tuple[bytes, bytes | None]]) -> SessionState | dict[str, Any]:
    from connector.changes.state import decode_entry  # noqa: PLC0415

    if kind == "state":
        state = SessionState()
        for key, value in data:
            state.restore_entry(*decode_entry(key, value))
        return state
    naive: dict[str, tuple[int, str | None]] = {}
    for key, value in data:
        sid, entry = decode_entry(key, value)
        if entry is not None:
            naive[sid] = (entry.fingerprint, entry.status and sys.intern(entry.status))
    return naive


def memory(count: int) -> None:
    rows = [
        ("SessionState (connector)", run_worker("memory", "state", str(count))),
        ("baseline: dict[str, (int, str)]", run_worker("memory", "naive", str(count))),
    ]
    print(f"memory per tracked session at {count:,} sessions (each store in a fresh process):")
    print(f"{'store':<34} {'sessions':>10} {'RSS delta':>10} {'B/session':>10} {'traced B/s':>11}")
    for name, r in rows:
        n = max(1, r["sessions"])
        print(
            f"{name:<34} {r['sessions']:>10,} {r['resident'] / 2**20:>8.1f}Mi "
            f"{r['resident'] / n:>10.0f} {r['traced'] / n:>11.0f}"
        )
    per = rows[0][1]["resident"] / max(1, rows[0][1]["sessions"])
    verdict = "met" if per <= MEMORY_TARGET else "NOT met"
    print(f"target: <= {MEMORY_TARGET} B resident per session: {verdict} ({per:.0f} B)")


# --- 2. restore --------------------------------------------------------------------------
def write_state_topic(bootstrap: str, topic: str, count: int) -> tuple[float, float]:
    """``count`` session entries and a cursor, transactionally; (seconds, CPU seconds)."""
    data = [encode_entry(sid, entry) for sid, entry in entries(count)]
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": f"bench-state-writer-{uuid.uuid4().hex[:8]}",
            "linger.ms": 50,
            "batch.num.messages": 10000,
            "queue.buffering.max.messages": 500000,
            "compression.type": "lz4",
        }
    )
    started, cpu = time.perf_counter(), time.process_time()
    producer.init_transactions(60)
    for start in range(0, len(data), PER_TRANSACTION):
        producer.begin_transaction()
        for key, value in data[start : start + PER_TRANSACTION]:
            while True:
                try:
                    producer.produce(topic, value, key)
                    break
                except BufferError:
                    producer.poll(0.1)
        if start + PER_TRANSACTION >= len(data):
            tail = Lane(TAIL_ID, token="1700000000.000001", seq=1)
            producer.produce(topic, tail.encode(), tail.key)
        producer.commit_transaction(60)
    return time.perf_counter() - started, time.process_time() - cpu


def read_floor_worker(bootstrap: str, topic: str) -> dict[str, Any]:
    """Every committed message of the topic read once, nothing done with it."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-floor-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": "false",
            "enable.partition.eof": "true",
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            "fetch.max.bytes": str(64 * 1024 * 1024),
            "max.partition.fetch.bytes": str(16 * 1024 * 1024),
        }
    )
    started, cpu = time.perf_counter(), time.process_time()
    consumer.assign([TopicPartition(topic, 0, 0)])
    count = 0
    done = False
    while not done:
        for message in consumer.consume(10_000, 1.0):
            error = message.error()
            if error is None:
                count += 1
            elif error.code() == KafkaError._PARTITION_EOF:
                done = True
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    consumer.close()
    return {"entries": count, "sessions": 0, "wall": wall, "cpu": cpu, **_rss_fields()}


def restore_worker(bootstrap: str, name: str) -> dict[str, Any]:
    """``restore_state`` exactly as ``run`` calls it."""
    from connector.commands.run import restore_state  # noqa: PLC0415
    from connector.settings import Settings  # noqa: PLC0415

    settings = Settings(
        learnosity_consumer_key="bench",
        learnosity_consumer_secret="bench",  # type: ignore[arg-type]
        kafka_bootstrap_servers=bootstrap,
        connector_name=name,
    )
    before = rss(os.getpid())
    started, cpu = time.perf_counter(), time.process_time()
    checkpoint, count = restore_state(settings)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    gc.collect()
    assert checkpoint.tail is not None, "the tail's cursor entry was not restored"
    return {
        "entries": count,
        "sessions": len(checkpoint.sessions),
        "wall": wall,
        "cpu": cpu,
        "state_rss": rss(os.getpid()) - before,
        **_rss_fields(),
    }


def _rss_fields() -> dict[str, int]:
    # VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss across exec, so a worker
    # would report this bench's own peak at the fork (it holds the entries it wrote)
    return {"peak_rss": peak_rss(os.getpid())}


def restore(count: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-state-"))
    try:
        with kafka_broker(work) as broker:
            bootstrap = broker.bootstrap_servers
            name = f"bench-{uuid.uuid4().hex[:8]}"
            topic = f"{name}.state"
            ensure_topics(
                {"bootstrap.servers": bootstrap},
                [TopicSpec(topic, 1, 1, {"cleanup.policy": "compact"})],
            )
            wrote, wrote_cpu = write_state_topic(bootstrap, topic, count)
            print(
                f"restore: wrote {count:,} entries + cursor in {wrote:.1f} s "
                f"({wrote_cpu:.1f} CPU s, {count // PER_TRANSACTION + 1} transactions); "
                f"each reader below runs in a fresh process"
            )
            rows = [
                ("read floor (consume only)", run_worker("floor", bootstrap, topic)),
                ("restore_state (connector)", run_worker("restore", bootstrap, name)),
            ]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"{'reader':<28} {'entries':>10} {'sessions':>10} {'wall s':>7} {'cpu s':>7} "
        f"{'entries/s':>10} {'peak RSS':>9}"
    )
    for label, r in rows:
        print(
            f"{label:<28} {r['entries']:>10,} {r['sessions']:>10,} {r['wall']:>7.2f} "
            f"{r['cpu']:>7.2f} {r['entries'] / max(r['wall'], 1e-9):>10,.0f} "
            f"{r['peak_rss'] / 2**20:>7.0f}Mi"
        )
    wall = rows[1][1]["wall"]
    verdict = "met" if wall <= RESTORE_TARGET and rows[1][1]["sessions"] == count else "NOT met"
    print(
        f"target: restore {count:,} sessions in <= {RESTORE_TARGET:g} s: {verdict} ({wall:.1f} s; "
        f"{rows[1][1]['state_rss'] / max(1, count):.0f} B/session resident after restore)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--skip-restore", action="store_true")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, *rest = args.worker
        workers = {
            "memory": lambda: memory_worker(rest[0], int(rest[1])),
            "floor": lambda: read_floor_worker(*rest),
            "restore": lambda: restore_worker(*rest),
        }
        print(json.dumps(workers[kind]()), flush=True)
        return
    for line in machine_lines():
        print(line)
    memory(args.sessions)
    if not args.skip_restore:
        restore(args.sessions)


if __name__ == "__main__":
    main()
