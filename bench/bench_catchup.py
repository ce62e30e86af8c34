"""Catching up at the API key's quota, not at one request's latency.

What runs, all on this machine and all sharing its cores:
- a Kafka broker of our own (as in ``bench_pipeline``);
- the emulator in its own process, set up like the real service under load: 150 ms
  added to every answer (``--latency-ms``; applied per request, other connections go
  on meanwhile), the key's quota on (1000 requests per 5 s), and learners at work while
  the backfill runs (``--changes-per-second`` changes to sessions, saves included, and
  ``--new-sessions-per-second`` new sessions); ``--sessions`` sessions at start;
- the connector (``python -m connector run``, exactly once) with
  ``LEARNOSITY_MAX_REQUESTS_PER_SECOND=190``, from empty state, twice:
    single cursor   ``LEARNOSITY_MAX_CONCURRENCY=1`` for ``--single-seconds``: what one
                    ``next`` cursor gets through (a page per round trip);
    connector       the default concurrency, until every session is committed: the
                    backfill is over when ``changes_emitted`` reaches ``--sessions`` and,
                    once the connector has the metric, ``learnosity_connector_slices``
                    has nothing pending or running;
  and with ``--zero-latency`` a third time against an emulator without latency and
  without the quota (client budget unbounded too): the figure beside it.
Checks, from the same run:
- the quota: the emulator logs every request (``--request-log``); the most requests in
  any 5 s window (sliding, to the millisecond) and the 429s after the backfill's first
  10 s (the steady state), over the backfill;
- tail latency during the backfill: a read_committed consumer, started before the
  connector, times when each change the emulator made from the connector's first
  fetched record to the end of the backfill (its truth file) is readable: the first
  event of that session with that ``dt_updated`` or a later one (a change saved over
  before the connector read it arrives as the later version). Saves change nothing and
  produce no event, so only changes with content are timed. Changes made while the
  connector started are backlog: they fall in the slices, not the live tail.

Generating 1M sessions takes the emulator about 4 s; loading them from a ``--save``
file took 22 s (and 2.5x its memory), so the workload is generated, not cached.

    .venv/bin/python bench/bench_catchup.py                      # 1M sessions (~3 min + backfill)
    .venv/bin/python bench/bench_catchup.py --sessions 100000 --single-seconds 20
    .venv/bin/python bench/bench_catchup.py --zero-latency        # + the no-latency row

Targets (issue 12): >= 8,000 records/s committed and >= 20x the single cursor; no 429 in
steady state and <= 950 requests in any 5 s window (5 x 190); <= 100 us CPU per record;
p99 tail latency during the backfill <= poll interval + 1 s. Not a test: it prints numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/bench_catchup.py` puts only bench/ there
    sys.path.insert(0, str(ROOT))

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition  # noqa: E402

from bench.bench_pipeline import (  # noqa: E402
    METRIC,
    Row,
    Window,
    children,
    connector_env,
    emulator_process,
    kafka_broker,
    machine_lines,
    peak_rss,
    print_rows,
    tree_cpu_seconds,
    wait_metrics,
)
from connector.emulator.requestlog import read_request_log  # noqa: E402
from connector.kafka.admin import TopicSpec, ensure_topics  # noqa: E402
from connector.kafka.serde import (  # noqa: E402
    CONFLUENT_MAGIC,
    SINGLE_OBJECT_MAGIC,
    EventDecoder,
    value_schema,
)
from tests.support.connector_proc import ConnectorProcess  # noqa: E402

BUDGET = 190  # LEARNOSITY_MAX_REQUESTS_PER_SECOND: the quota (1000 per 5 s) with headroom
QUOTA, QUOTA_WINDOW_MS = 1000, 5000
STEADY_AFTER_MS = 10_000
FETCHED, EMITTED = f"{METRIC}records_fetched_total", f"{METRIC}changes_emitted_total"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# --- one connector run ---------------------------------------------------------------------
@dataclass
class Run:
    metrics: dict[str, float]
    started: float  # Unix time the process was started
    first: float  # Unix time its first fetched record was seen
    ended: float  # Unix time the run was found done
    wall: float  # seconds from its first fetched record to done
    cpu: float  # CPU seconds of the connector's processes since start
    peak: int  # peak RSS, the processes' sum
    emulator_cpu: float
    broker_cpu: float
    criterion: str = ""

    def row(self, name: str, note: str) -> Row:
        emitted = int(self.metrics.get(EMITTED, 0))
        return Row(
            name, emitted, self.wall, self.cpu, self.emulator_cpu, self.broker_cpu, self.peak, note
        )


Done = Callable[[ConnectorProcess, dict[str, float], float], str | None]


def run_connector(
    env: dict[str, str],
    log: Path,
    pids: tuple[int | None, int | None],
    done: Done,
    timeout: float,
    linger: float = 0.0,
) -> Run:
    """Start the connector; measure from its first fetched record until ``done`` names the
    criterion that held; keep it running ``linger`` more seconds, then stop it."""
    proc = ConnectorProcess(env, log)
    window = Window(*pids)
    started = time.time()
    proc.start()
    try:
        assert proc.process is not None
        pid = proc.process.pid
        wait_metrics(proc, lambda m: m.get(FETCHED, 0) > 0, 120, "the first record", 0.02)
        first = time.time()
        criterion = ""

        def finished(metrics: dict[str, float]) -> bool:
            nonlocal criterion
            criterion = done(proc, metrics, first) or ""
            return bool(criterion)

        metrics = wait_metrics(proc, finished, timeout, "the end of the run", interval=0.2)
        ended = time.time()
        wall = ended - first
        cpu = sum(tree_cpu_seconds(pid))
        peak = peak_rss(pid) + sum(peak_rss(child) for child in children(pid))
        _since, emu, brk = window.stop()
        time.sleep(linger)
    finally:
        with contextlib.suppress(subprocess.TimeoutExpired):
            if proc.alive():
                proc.terminate()
        if proc.alive():
            proc.kill()
    return Run(metrics, started, first, ended, wall, cpu, peak, emu, brk, criterion)


def for_seconds(seconds: float) -> Done:
    return lambda _proc, _m, first: f"{seconds:g} s" if time.time() >= first + seconds else None


def backfilled(sessions: int) -> Done:
    """Every session committed: changes_emitted >= sessions, and no slice left to read
    (when the connector has the slices metric; scraped only once the count is reached)."""

    def done(proc: ConnectorProcess, metrics: dict[str, float], _first: float) -> str | None:
        if metrics.get(EMITTED, 0) < sessions:
            return None
        slices = labelled(proc.get("/metrics")[1], f"{METRIC}slices", "state")
        if not slices:
            return "changes_emitted >= sessions (no slices metric)"
        if slices.get("pending", 0) or slices.get("running", 0):
            return None
        return "changes_emitted >= sessions and no slice pending or running"

    return done


def labelled(text: str, name: str, label: str) -> dict[str, float]:
    """The series of metric ``name`` by the value of ``label``."""
    found: dict[str, float] = {}
    prefix = f'{name}{{{label}="'
    for line in text.splitlines():
        if line.startswith(prefix):
            value, _, rest = line[len(prefix) :].partition('"')
            found[value] = found.get(value, 0.0) + float(rest.rsplit(" ", 1)[1])
    return found


# --- the quota, from the emulator's request log -------------------------------------------
def busiest_window(times_ms: list[int], window_ms: int = QUOTA_WINDOW_MS) -> int:
    """The most requests in any half-open window of ``window_ms`` (times sorted)."""
    best, low = 0, 0
    for high, t in enumerate(times_ms):
        while times_ms[low] <= t - window_ms:
            low += 1
        best = max(best, high - low + 1)
    return best


def quota_lines(log: Path, start: float, end: float) -> list[str]:
    requests = sorted(r for r in read_request_log(log) if start * 1000 <= r[0] <= end * 1000)
    if not requests:
        return ["quota: the emulator logged no request during the backfill"]
    first = requests[0][0]
    times = [ms for ms, _ in requests]
    rejected = [ms for ms, status in requests if status == 429]
    steady = [ms for ms in rejected if ms >= first + STEADY_AFTER_MS]
    busiest = busiest_window(times)
    seconds = (times[-1] - first) / 1000
    return [
        f"(a) quota: {len(times):,} requests over the backfill's {seconds:.1f} s "
        f"({len(times) / max(seconds, 1e-9):.0f}/s); most in any 5 s window: {busiest:,} "
        f"(target <= {5 * BUDGET}: {verdict(busiest <= 5 * BUDGET)}; the key's quota is "
        f"{QUOTA}); 429s: {len(rejected)}, {len(steady)} after the first 10 s "
        f"(target 0: {verdict(not steady)})"
    ]


# --- tail latency: a consumer started before the connector --------------------------------
@dataclass
class Probe:
    """Reads the topic from its start (read_committed) while the connector runs, and
    keeps, for each session the emulator changed since the probe started (its truth
    file, read as it grows), when each of its events became readable."""

    bootstrap: str
    topic: str
    truth_path: Path
    changes: list[dict[str, Any]] = field(default_factory=list)
    seen: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    messages: int = 0
    cpu: float = 0.0
    _offset: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _ready: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _failure: BaseException | None = None

    def start(self) -> None:
        self._offset = self.truth_path.stat().st_size
        self._thread = threading.Thread(target=self._main, name="probe", daemon=True)
        self._thread.start()
        if not self._ready.wait(60) or self._failure is not None:
            raise RuntimeError("the probe consumer did not start") from self._failure

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        if self._failure is not None:
            raise RuntimeError("the probe consumer failed") from self._failure

    def _main(self) -> None:
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": f"bench-probe-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": "false",
                "isolation.level": "read_committed",
                "fetch.wait.max.ms": "10",  # the probe must not add its own wait
            }
        )
        try:
            partitions = consumer.list_topics(self.topic, timeout=10).topics[self.topic].partitions
            consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in partitions])
            consumer.consume(100, 0.5)  # fetch sessions up before the connector starts
            self._ready.set()
            decoder = EventDecoder()
            while not self._stop.is_set():
                batch = consumer.consume(1000, 0.05)
                now = time.time()
                # after the batch: a change is in the truth file before it can be fetched
                self._read_truth()
                for message in batch:
                    self._take(message, decoder, now)
            self.cpu = time.thread_time()
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            self._failure = exc
            self._ready.set()
        finally:
            consumer.close()

    def _take(self, message: Any, decoder: EventDecoder, now: float) -> None:
        error = message.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                raise RuntimeError(f"probe consumer: {error.str()}")
            return
        self.messages += 1
        value = message.value() or b""
        session = peek_session(value)
        if session is not None and session not in self.seen:
            return  # not a session changed during the run: skip the full decode
        event = decoder.decode(value)
        if event["session_id"] in self.seen:
            self.seen[event["session_id"]].append((millis(event["dt_updated"]), now))

    def _read_truth(self) -> None:
        with self.truth_path.open("rb") as truth:
            truth.seek(self._offset)
            data = truth.read()
        whole = data[: data.rfind(b"\n") + 1]  # a line being written waits for next time
        self._offset += len(whole)
        for line in whole.splitlines():
            record = json.loads(line)
            if record.get("kind") == "change":
                self.changes.append(record)
                self.seen.setdefault(record["session_id"], [])


_PEEKABLE = [f["name"] for f in value_schema()["fields"][:3]] == [
    "event_id",
    "change",
    "session_id",
]


def peek_session(value: bytes) -> str | None:
    """An event's session id read off its bytes (the third field, after a string and an
    enum), without decoding the rest; None when unsure (then the caller decodes)."""
    if not _PEEKABLE:
        return None
    if value[:2] == SINGLE_OBJECT_MAGIC:
        pos = 10
    elif value[:1] == bytes((CONFLUENT_MAGIC,)):
        pos = 5
    else:
        return None
    try:
        length, pos = _varint(value, pos)
        _change, pos = _varint(value, pos + length)
        length, pos = _varint(value, pos)
        return value[pos : pos + length].decode()
    except (IndexError, UnicodeDecodeError):
        return None


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """An Avro long (zigzag varint) at ``pos``: (value, the position after it)."""
    shift = raw = 0
    while True:
        byte = data[pos]
        pos += 1
        raw |= (byte & 0x7F) << shift
        if byte < 0x80:
            return (raw >> 1) ^ -(raw & 1), pos
        shift += 7


def millis(value: Any) -> int:
    """``dt_updated`` as Unix ms: an ISO string today, a timestamp-millis long later
    (a datetime once decoded); -1 for none."""
    if value is None:
        return -1
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int((value - EPOCH) // timedelta(milliseconds=1))


def content_changes(probe: Probe, start: float, end: float) -> list[dict[str, Any]]:
    """The changes made between ``start`` and ``end`` that a connector must publish."""
    return [
        c
        for c in probe.changes
        if start * 1e6 <= c["updated_us"] <= end * 1e6
        and (c["content_changed"] or c["status"] != c["previous_status"])
    ]


def latencies(probe: Probe, changes: list[dict[str, Any]]) -> list[float | None]:
    """Per change: seconds until its session's event with this dt_updated or a later one
    was readable (None: never, within the run)."""
    out: list[float | None] = []
    for change in changes:
        at = change["updated_us"] // 1000
        arrivals = [seen for ms, seen in probe.seen.get(change["session_id"], []) if ms >= at]
        out.append(min(arrivals) - change["updated_us"] / 1e6 if arrivals else None)
    return out


def latency_lines(found: list[float | None], poll_interval: float, probe: Probe) -> list[str]:
    target = poll_interval + 1.0
    seen = sorted(x for x in found if x is not None)
    missed = len(found) - len(seen)
    head = (
        f"(b) tail latency during the backfill: {len(found):,} changes with content made "
        f"from the first record to the end"
    )
    probe_cost = (
        f"(the probe read {probe.messages:,} events with {probe.cpu:.1f} cpu s of this process)"
    )
    if not seen:
        return [f"{head}: no event arrived {probe_cost}"]

    def pct(q: float) -> float:
        return seen[min(len(seen) - 1, round(q * (len(seen) - 1)))]

    p99 = pct(0.99) if not missed else float("inf")
    return [
        f"{head}: p50 {pct(0.5):.3f} s, p99 {pct(0.99):.3f} s, max {seen[-1]:.3f} s, "
        f"{missed} never readable; target p99 <= poll interval + 1 s = {target:g} s: "
        f"{verdict(p99 <= target)} {probe_cost}"
    ]


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


# --- main ---------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--single-seconds", type=float, default=60.0)
    parser.add_argument("--poll-interval", type=float, default=1.0)
    parser.add_argument("--latency-ms", type=float, default=150.0)
    parser.add_argument("--changes-per-second", type=float, default=50.0)
    parser.add_argument("--new-sessions-per-second", type=float, default=5.0)
    parser.add_argument("--timeout", type=float, default=3600.0, help="for one backfill")
    parser.add_argument("--zero-latency", action="store_true", help="add the no-latency row")
    args = parser.parse_args()

    for line in machine_lines():
        print(line)
    work = Path(tempfile.mkdtemp(prefix="bench-catchup-"))
    try:
        with kafka_broker(work) as broker:
            rows, checks = measure(args, broker.bootstrap_servers, broker.pid, work)
        print_rows(rows)
        for line in checks:
            print(line)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        "targets: >= 8,000 records/s committed; >= 20x the single cursor; no 429 in steady "
        f"state; <= {5 * BUDGET} requests in any 5 s window (5 x {BUDGET}); <= 100 us CPU per "
        f"record; p99 tail latency during the backfill <= poll interval + 1 s"
    )


def emulator_flags(args: argparse.Namespace, work: Path, *, quiet: bool) -> list[str]:
    """The realistic emulator (latency, quota, learners at work), or the quiet one."""
    return [
        "--fault-latency-ms",
        str(0 if quiet else args.latency_ms),
        "--rate-limit",
        str(0 if quiet else QUOTA),
        "--rate-window",
        str(QUOTA_WINDOW_MS / 1000),
        "--changes-per-second",
        str(args.changes_per_second),
        "--new-sessions-per-second",
        str(args.new_sessions_per_second),
        "--truth",
        str(work / "truth.jsonl"),
        "--truth-skip-initial",
        "--request-log",
        str(work / "requests.log"),
    ]


def measure(
    args: argparse.Namespace, bootstrap: str, broker_pid: int | None, work: Path
) -> tuple[list[Row], list[str]]:
    sessions, poll = args.sessions, args.poll_interval
    real = work / "real"
    real.mkdir()
    began = time.monotonic()
    with emulator_process(
        sessions, work / "emulator.log", args.seed, emulator_flags(args, real, quiet=False)
    ) as (emu_pid, url):
        print(
            f"emulator: {sessions:,} sessions generated, listening after "
            f"{time.monotonic() - began:.1f} s; {args.latency_ms:g} ms per answer, quota "
            f"{QUOTA} per 5 s, {args.changes_per_second:g} changes/s and "
            f"{args.new_sessions_per_second:g} new sessions/s in the background",
            flush=True,
        )
        pids = (emu_pid, broker_pid)
        budget = {"LEARNOSITY_MAX_REQUESTS_PER_SECOND": str(BUDGET)}
        env = {**connector_env(url, bootstrap, poll), **budget, "LEARNOSITY_MAX_CONCURRENCY": "1"}
        single = run_connector(
            env, work / "single.log", pids, for_seconds(args.single_seconds), args.timeout
        )
        print(f"single cursor: done ({single.metrics.get(EMITTED, 0):,.0f} committed)", flush=True)

        env = {**connector_env(url, bootstrap, poll), **budget}
        ensure_topics({"bootstrap.servers": bootstrap}, [TopicSpec(env["KAFKA_TOPIC"], 6, 1)])
        probe = Probe(bootstrap, env["KAFKA_TOPIC"], real / "truth.jsonl")
        probe.start()
        try:
            full = run_connector(
                env, work / "full.log", pids, backfilled(sessions), args.timeout, poll + 5
            )
        finally:
            probe.stop()
        print(f"connector: done ({full.criterion})", flush=True)
    changes = content_changes(probe, full.first, full.ended)
    rows = [
        single.row("single cursor (MAX_CONCURRENCY=1)", note_for(single, None)),
        full.row("connector (default concurrency)", note_for(full, single)),
    ]
    checks = [
        f"backfill done when: {full.criterion}",
        *quota_lines(real / "requests.log", full.started, full.ended),
        *latency_lines(latencies(probe, changes), poll, probe),
    ]
    if args.zero_latency:
        quiet = work / "quiet"
        quiet.mkdir()
        flags = emulator_flags(args, quiet, quiet=True)
        with emulator_process(sessions, work / "emulator-quiet.log", args.seed, flags) as (
            emu_pid,
            url,
        ):
            env = connector_env(url, bootstrap, poll)  # the client's budget unbounded too
            zero = run_connector(
                env, work / "zero.log", (emu_pid, broker_pid), backfilled(sessions), args.timeout
            )
        rows.append(zero.row("connector, no latency, no quota", note_for(zero, single)))
    return rows, checks


def note_for(run: Run, single: Run | None) -> str:
    records = max(1, int(run.metrics.get(EMITTED, 0)))
    parts = [
        f"{1e6 * run.cpu / records:.0f} us cpu/record (target <= 100)",
        f"{run.metrics.get(FETCHED, 0):,.0f} records fetched",
    ]
    if single is not None:
        base = single.metrics.get(EMITTED, 0) / single.wall
        rate = records / run.wall
        ratio = rate / base if base else float("inf")
        parts.insert(0, f"{ratio:.1f}x single cursor (target >= 20x: {verdict(ratio >= 20)})")
        parts.insert(1, f">= 8,000 records/s: {verdict(rate >= 8000)}")
    return "; ".join(parts)


if __name__ == "__main__":
    main()
