"""The whole pipeline: exactly-once backfill throughput against a naive baseline; tail latency.

What runs, all on this machine and all sharing its cores (that is part of the figure):
- a Kafka broker of our own (``dev.kafka_broker``: KRaft, one node), on 127.0.0.1;
- the emulator in its own process (``learnosity-connector emulator``), rate limit off,
  no background changes, no added latency, ``--sessions`` sessions;
- three readers of the same emulator data, one after the other:
    fetch only   the connector's Data API client alone (sign, POST on a keep-alive
                 connection, parse), in this process: the source side's ceiling;
    baseline     the naive way, in its own process: the Learnosity SDK's
                 ``DataApi.results_iter`` + ``json.dumps`` + ``Producer.produce``
                 (no dedup, no transactions, no Avro);
    connector    ``python -m connector run``, exactly once, from empty state until the
                 metrics say every record was fetched and every change committed.
  CPU seconds come from /proc/<pid>/stat for each process (emulator and broker too, over
  the same window), peak RSS from VmHWM.
- tail latency: with a caught-up connector (poll interval ``--poll-interval``), changes
  are made one at a time in an emulator in this process (the subprocess emulator has no
  control channel; this part is not throughput-sensitive) and the time until a
  ``read_committed`` consumer reads the event is measured.

    .venv/bin/python bench/bench_pipeline.py                        # 200k sessions, 200 changes
    .venv/bin/python bench/bench_pipeline.py --sessions 50000 --tail-changes 50
    .venv/bin/python bench/bench_pipeline.py --skip-tail            # throughput only
    .venv/bin/python bench/bench_pipeline.py --skip-tail --repeat 3 # 3 alternating pairs

Targets (from the issue): >= 15,000 records/s committed and >= 1.5x the baseline;
p99 tail latency <= poll interval + 1 s. Not a test: nothing here passes or fails.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import resource
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/bench_pipeline.py` puts only bench/ there
    sys.path.insert(0, str(ROOT))

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition  # noqa: E402
from pydantic import SecretStr  # noqa: E402

from connector.emulator.service import (  # noqa: E402
    DEMO_CONSUMER_KEY,
    DEMO_CONSUMER_SECRET,
    Emulator,
    EmulatorConfig,
)
from connector.emulator.workload import WorkloadConfig  # noqa: E402
from connector.kafka.admin import TopicSpec, ensure_topics  # noqa: E402
from connector.kafka.producer import PRODUCER_DEFAULTS  # noqa: E402
from connector.kafka.serde import EventDecoder  # noqa: E402
from connector.learnosity.budget import RequestBudget  # noqa: E402
from connector.learnosity.client import Credentials, DataApiClient  # noqa: E402
from connector.learnosity.transport import HttpTransport  # noqa: E402
from dev.kafka_broker import KafkaBroker  # noqa: E402
from dev.stack import new_broker  # noqa: E402
from tests.support.connector_proc import ConnectorProcess  # noqa: E402

API_VERSION = "v2025.2.LTS"
METRIC = "learnosity_connector_"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


# --- process accounting ------------------------------------------------------------------
def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of a live process (0 when unknown or gone)."""
    if pid is None:
        return 0.0
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)


def children(pid: int) -> list[int]:
    """Direct child processes of ``pid`` (the connector's fetch process)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def tree_cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU seconds of ``pid`` itself and of its live children, apart."""
    return cpu_seconds(pid), sum(cpu_seconds(child) for child in children(pid))


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per thread name of a live process (threads of one name summed)."""
    found: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            comm = (task / "comm").read_text().strip()
            stat = (task / "stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        found[comm] = found.get(comm, 0.0) + (int(fields[11]) + int(fields[12])) / CLK_TCK
    return found


def describe_threads(pid: int) -> str:
    busiest = sorted(thread_cpu(pid).items(), key=lambda item: -item[1])[:4]
    return ", ".join(f"{name} {cpu:.2f}" for name, cpu in busiest)


def peak_rss(pid: int) -> int:
    """VmHWM (peak resident set) of a live process, in bytes."""
    return _status_kib(pid, "VmHWM") * 1024


def rss(pid: int) -> int:
    return _status_kib(pid, "VmRSS") * 1024


def _status_kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def machine_lines() -> list[str]:
    cores = os.cpu_count() or 0
    mem = os.sysconf("SC_PHYS_PAGES") * PAGE_SIZE / 2**30
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        f"machine: {cores} cores, {mem:.0f} GiB, Python {sys.version.split()[0]}, "
        f"load average at start {load}",
        "the emulator, the Kafka broker and the process measured all share these cores: "
        "that is part of the measurement",
    ]


# --- components --------------------------------------------------------------------------
@contextlib.contextmanager
def kafka_broker(work: Path) -> Iterator[KafkaBroker]:
    """A broker of our own (the dev broker: C1-only JIT, SerialGC), removed afterwards."""
    broker = new_broker(data_root=work, log_dir=work / "logs", die_with_parent=True)
    try:
        broker.start(timeout=120)
        yield broker
    finally:
        broker.close()


@contextlib.contextmanager
def emulator_process(
    sessions: int, log: Path, seed: int = 1, extra: Sequence[str] = ()
) -> Iterator[tuple[int, str]]:
    """``learnosity-connector emulator`` in its own process: (pid, base URL). ``extra``
    flags come last, so they override the quiet defaults (argparse keeps the last)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEARNOSITY_")}
    command = [
        sys.executable,
        "-m",
        "connector",
        "emulator",
        "--port",
        "0",
        "--seed",
        str(seed),
        "--sessions",
        str(sessions),
        "--users",
        "5000",
        "--rate-limit",
        "0",
        "--new-sessions-per-second",
        "0",
        "--changes-per-second",
        "0",
        *extra,
    ]
    with log.open("ab") as err:
        proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=err, env=env, cwd=ROOT, start_new_session=True
        )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 120)
        line = proc.stdout.readline().decode() if ready else ""
        if not line.startswith("emulator listening on "):
            raise RuntimeError(f"the emulator did not start: {line!r}; see {log}")
        yield proc.pid, line.split()[-1]
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@dataclass
class Row:
    name: str
    records: int
    wall: float
    cpu: float
    emulator_cpu: float
    broker_cpu: float
    peak_rss: int
    note: str = ""

    @property
    def rate(self) -> float:
        return self.records / self.wall if self.wall > 0 else 0.0


def print_rows(rows: list[Row]) -> None:
    print(
        f"{'reader':<32} {'records':>9} {'wall s':>7} {'records/s':>10} {'cpu s':>7} "
        f"{'emu cpu':>7} {'brk cpu':>7} {'peak RSS':>9}  note"
    )
    for r in rows:
        print(
            f"{r.name:<32} {r.records:>9,} {r.wall:>7.2f} {r.rate:>10,.0f} {r.cpu:>7.2f} "
            f"{r.emulator_cpu:>7.2f} {r.broker_cpu:>7.2f} {r.peak_rss / 2**20:>7.0f}Mi  {r.note}"
        )


class Window:
    """CPU seconds of the emulator and the broker between ``start`` and ``stop``."""

    def __init__(self, emulator_pid: int | None, broker_pid: int | None) -> None:
        self.pids = (emulator_pid, broker_pid)
        self.start = [cpu_seconds(p) for p in self.pids]
        self.wall = time.perf_counter()

    def stop(self) -> tuple[float, float, float]:
        emu, brk = (cpu_seconds(p) - s for p, s in zip(self.pids, self.start, strict=True))
        return time.perf_counter() - self.wall, emu, brk


# --- 1. fetch only: the connector's Data API client alone ---------------------------------
def own_client(url: str) -> DataApiClient:
    """The connector's Data API client for the emulator at ``url``, budget unbounded."""
    return DataApiClient(
        f"{url}/{API_VERSION}/sessions/scores",
        Credentials(DEMO_CONSUMER_KEY, SecretStr(DEMO_CONSUMER_SECRET), "localhost"),
        transport=HttpTransport(),
        budget=RequestBudget(1_000_000),
    )


def fetch_only(url: str, sessions: int, pids: tuple[int | None, int | None]) -> Row:
    client = own_client(url)
    records = 0
    window = Window(*pids)
    cpu = time.process_time()
    try:
        params: dict[str, Any] = {"sort": "asc", "limit": 50}
        while True:
            page = client.fetch(params, max_attempts=3)
            if not page.records:
                break
            records += len(page.records)
            params["next"] = page.next_token
    finally:
        client.close()
    cpu = time.process_time() - cpu
    wall, emu, brk = window.stop()
    if records != sessions:
        print(f"warning: fetch-only read {records:,} records, expected {sessions:,}")
    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return Row(
        "fetch only (connector client)", records, wall, cpu, emu, brk, usage, "no Kafka; ceiling"
    )


# --- 2. the naive baseline (runs in its own process) --------------------------------------
def baseline_worker(url: str, bootstrap: str, topic: str) -> None:
    """The SDK's results_iter + json.dumps + produce; prints one JSON line of results."""
    from learnosity_sdk.request import DataApi  # noqa: PLC0415 - only this worker needs it

    batching = ("compression.type", "linger.ms", "batch.num.messages")
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            # the same batching as the connector's producer, so the difference is the rest
            **{name: PRODUCER_DEFAULTS[name] for name in batching},
            "queue.buffering.max.messages": 500000,
        }
    )
    security = {"consumer_key": DEMO_CONSUMER_KEY, "domain": "localhost"}
    started = time.perf_counter()
    count = 0
    for record in DataApi().results_iter(
        f"{url}/{API_VERSION}/sessions/scores",
        security,
        DEMO_CONSUMER_SECRET,
        {"sort": "asc", "limit": 50},
    ):
        value = json.dumps(record).encode()
        while True:
            try:
                producer.produce(topic, value=value, key=str(record.get("user_id")).encode())
                break
            except BufferError:
                producer.poll(0.1)
        count += 1
        if count % 1000 == 0:
            producer.poll(0)
    left = producer.flush(60)
    wall = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                "records": count,
                "undelivered": left,
                "wall": wall,
                "cpu": usage.ru_utime + usage.ru_stime,
                # not ru_maxrss: Linux carries it across exec, so it would be this
                # bench's own peak when it started the worker
                "peak_rss": peak_rss(os.getpid()),
            }
        ),
        flush=True,
    )


def baseline(url: str, bootstrap: str, pids: tuple[int | None, int | None]) -> Row:
    topic = f"bench-baseline-{uuid.uuid4().hex[:8]}"
    ensure_topics({"bootstrap.servers": bootstrap}, [TopicSpec(topic, 6, 1)])
    window = Window(*pids)
    done = subprocess.run(
        [sys.executable, __file__, "--baseline-worker", url, bootstrap, topic],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        cwd=ROOT,
    )
    _wall, emu, brk = window.stop()
    if done.returncode != 0:
        raise RuntimeError(f"the baseline failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return Row(
        "baseline (SDK + json + produce)",
        result["records"],
        result["wall"],
        result["cpu"],
        emu,
        brk,
        result["peak_rss"],
        "no dedup, no transactions; new TCP connection per request (requests.post)",
    )


# --- 3. the connector --------------------------------------------------------------------
def scrape(proc: ConnectorProcess) -> dict[str, float]:
    """Every series of the connector's metrics, summed per name."""
    _status, text = proc.get("/metrics")
    totals: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith(METRIC):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        with contextlib.suppress(ValueError):
            totals[name] = totals.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return totals


def connector_env(url: str, bootstrap: str, poll_interval: float) -> dict[str, str]:
    name = f"bench-{uuid.uuid4().hex[:8]}"
    return {
        "LEARNOSITY_BASE_URL": url,
        "LEARNOSITY_CONSUMER_KEY": DEMO_CONSUMER_KEY,
        "LEARNOSITY_CONSUMER_SECRET": DEMO_CONSUMER_SECRET,
        "LEARNOSITY_API_VERSION": API_VERSION,
        "LEARNOSITY_POLL_INTERVAL_SECONDS": str(poll_interval),
        "LEARNOSITY_MAX_REQUESTS_PER_SECOND": "100000",
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_DELIVERY": "exactly_once",
        "KAFKA_TOPIC_PARTITIONS": "6",
        "CONNECTOR_NAME": name,
        "KAFKA_TOPIC": f"{name}.scores",
        "LOG_LEVEL": "WARNING",
        "SHUTDOWN_TIMEOUT_SECONDS": "15",
    }


def wait_metrics(
    proc: ConnectorProcess,
    done: Callable[[dict[str, float]], bool],
    timeout: float,
    what: str,
    interval: float = 0.1,
) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while True:
        metrics = scrape(proc)
        if done(metrics):
            return metrics
        if not proc.alive():
            raise RuntimeError(f"the connector exited ({proc.returncode}):\n{proc.log_tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}: {metrics}")
        time.sleep(interval)


def count_committed(bootstrap: str, topic: str, idle: float = 3.0) -> int:
    """Messages a read_committed consumer sees in ``topic``."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-count-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": "false",
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    try:
        consumer.subscribe([topic])
        count, last = 0, time.monotonic()
        while time.monotonic() - last < idle:
            batch = consumer.consume(10_000, 0.5)
            good = sum(1 for m in batch if m.error() is None)
            if good:
                count += good
                last = time.monotonic()
        return count
    finally:
        consumer.close()


def connector_backfill(
    url: str,
    bootstrap: str,
    sessions: int,
    work: Path,
    pids: tuple[int | None, int | None],
    poll_interval: float,
) -> tuple[Row, str]:
    env = connector_env(url, bootstrap, poll_interval)
    proc = ConnectorProcess(env, work / "connector-backfill.log")
    window = Window(*pids)
    proc.start()
    try:
        assert proc.process is not None
        pid = proc.process.pid
        wait_metrics(
            proc,
            lambda m: m.get(f"{METRIC}records_fetched_total", 0) > 0,
            120,
            "the first fetched record",
            interval=0.02,
        )
        first = time.perf_counter()
        cpu_first = sum(tree_cpu_seconds(pid))
        metrics = wait_metrics(
            proc,
            lambda m: (
                m.get(f"{METRIC}records_fetched_total", 0) >= sessions
                and m.get(f"{METRIC}changes_emitted_total", 0) >= sessions
            ),
            900,
            "every record fetched and every change committed",
            # each scrape costs the connector a metrics render: 0.05 s took ~5 % of its
            # CPU; 0.2 s bounds the error of the wall time at 0.2 s
            interval=0.2,
        )
        wall = time.perf_counter() - first
        cpu_main, cpu_fetch = tree_cpu_seconds(pid)
        cpu_total = cpu_main + cpu_fetch
        threads = "; ".join(describe_threads(p) for p in (pid, *children(pid)))
        peak = peak_rss(pid) + sum(peak_rss(child) for child in children(pid))
        since_start, emu, brk = window.stop()
        transactions = int(metrics.get(f"{METRIC}transactions_total", 0))
        committing = metrics.get(f"{METRIC}transaction_commit_duration_seconds_sum", 0.0)
        proc.terminate()
    finally:
        if proc.alive():
            proc.kill()
    committed = count_committed(bootstrap, env["KAFKA_TOPIC"])
    note = (
        f"exactly once; {transactions} transactions ({committing:.2f} s committing); "
        f"{committed:,} events read back "
        f"read_committed; {cpu_total - cpu_first:.2f} cpu s after the first record, "
        f"{since_start:.1f} s from process start; cpu s: runner process {cpu_main:.2f}, "
        f"fetch process {cpu_fetch:.2f} (busiest threads, cpu s: {threads}); peak RSS is "
        "the two processes' sum"
    )
    row = Row("connector (run, exactly once)", sessions, wall, cpu_total, emu, brk, peak, note)
    return row, env["KAFKA_TOPIC"]


# --- 4. tail latency ---------------------------------------------------------------------
def tail_latency(
    bootstrap: str, work: Path, changes: int, poll_interval: float, sessions: int = 2000
) -> list[float | None]:
    emulator = Emulator(
        EmulatorConfig(
            workload=WorkloadConfig(seed=5, users=200, sessions=sessions),
            ticking=False,
            rate_limit=0,
            keep_truth_in_memory=False,
        )
    )
    emulator.start()
    assert emulator.url is not None
    env = connector_env(emulator.url, bootstrap, poll_interval)
    topic = env["KAFKA_TOPIC"]
    proc = ConnectorProcess(env, work / "connector-tail.log")
    consumer: Consumer | None = None
    latencies: list[float | None] = []
    try:
        proc.start()
        wait_metrics(
            proc,
            lambda m: m.get(f"{METRIC}changes_emitted_total", 0) >= sessions,
            300,
            "the tail connector to catch up",
            interval=0.2,
        )
        consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"bench-tail-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": "false",
                "isolation.level": "read_committed",
                # the measuring consumer must not add its own wait to the figure
                "fetch.wait.max.ms": "10",
            }
        )
        metadata = consumer.list_topics(topic, timeout=10)
        partitions = list(metadata.topics[topic].partitions)
        ends = [
            TopicPartition(topic, p, consumer.get_watermark_offsets(TopicPartition(topic, p))[1])
            for p in partitions
        ]
        consumer.assign(ends)
        consumer.consume(100, 0.5)  # the fetch sessions are up before the first change
        decoder = EventDecoder()
        rng = random.Random(17)
        created: list[str] = []
        for n in range(changes):
            # a random phase against the fetcher's poll cycle, so the figure is not biased
            time.sleep(rng.uniform(0, poll_interval))
            if n % 2 == 0 or not created:
                state = emulator.workload.create()
                want = (state.session_id, "created")
                created.append(state.session_id)
            else:
                sid = created.pop(0)
                emulator.workload.discard(sid)
                want = (sid, "status_changed")
            made = time.perf_counter()
            latencies.append(_await_event(consumer, decoder, want, made, timeout=poll_interval + 9))
            if (n + 1) % 50 == 0:
                print(f"  ... {n + 1} changes measured", flush=True)
        return latencies
    finally:
        if consumer is not None:
            consumer.close()
        if proc.alive():
            proc.terminate()
        emulator.stop()


def _await_event(
    consumer: Consumer,
    decoder: EventDecoder,
    want: tuple[str, str],
    made: float,
    timeout: float,
) -> float | None:
    deadline = made + timeout
    while time.perf_counter() < deadline:
        for message in consumer.consume(100, 0.05):
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    raise RuntimeError(f"tail consumer: {error.str()}")
                continue
            event = decoder.decode(message.value() or b"")
            if (event["session_id"], event["change"]) == want:
                return time.perf_counter() - made
    return None


def print_latency(latencies: list[float | None], poll_interval: float) -> None:
    seen = sorted(x for x in latencies if x is not None)
    missing = len(latencies) - len(seen)
    target = poll_interval + 1.0
    if not seen:
        print("tail latency: no event arrived")
        return

    def pct(q: float) -> float:
        return seen[min(len(seen) - 1, round(q * (len(seen) - 1)))]

    print(
        f"tail latency over {len(latencies)} changes (poll interval {poll_interval:g} s, "
        f"one change at a time, random phase):"
    )
    print(f"{'p50 s':>7} {'p95 s':>7} {'p99 s':>7} {'max s':>7} {'mean s':>7} {'missed':>7}")
    print(
        f"{pct(0.5):>7.3f} {pct(0.95):>7.3f} {pct(0.99):>7.3f} {seen[-1]:>7.3f} "
        f"{statistics.fmean(seen):>7.3f} {missing:>7}"
    )
    verdict = "met" if pct(0.99) <= target and not missing else "NOT met"
    print(f"target: p99 <= poll interval + 1 s = {target:g} s: {verdict}")


# --- main --------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sessions", type=int, default=200_000)
    parser.add_argument("--backfill-poll-interval", type=float, default=0.2)
    parser.add_argument("--poll-interval", type=float, default=1.0, help="for tail latency")
    parser.add_argument("--tail-changes", type=int, default=200)
    parser.add_argument("--skip-tail", action="store_true")
    parser.add_argument("--skip-backfill", action="store_true")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="baseline + connector pairs, alternating (the machine's speed drifts)",
    )
    parser.add_argument("--baseline-worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_worker:
        baseline_worker(*args.baseline_worker)
        return

    for line in machine_lines():
        print(line)
    work = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    try:
        with kafka_broker(work) as broker:
            print(f"broker: dev.kafka_broker (Kafka 4, KRaft, JVM {' '.join(_jvm_flags())})")
            if not args.skip_backfill:
                backfill(args, broker, work)
            if not args.skip_tail:
                latencies = tail_latency(
                    broker.bootstrap_servers, work, args.tail_changes, args.poll_interval
                )
                print_latency(latencies, args.poll_interval)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def _jvm_flags() -> tuple[str, ...]:
    from dev import kafka_broker as kb  # noqa: PLC0415

    return kb.jvm_options()


def backfill(args: argparse.Namespace, broker: KafkaBroker, work: Path) -> None:
    sessions = args.sessions
    pairs: list[tuple[Row, Row]] = []
    with emulator_process(sessions, work / "emulator.log") as (emu_pid, url):
        pids = (emu_pid, broker.pid)
        print(
            f"backfill: {sessions:,} sessions in an emulator process (no latency, rate limit "
            f"off), pages of 50; connector poll interval {args.backfill_poll_interval:g} s"
        )
        rows = [fetch_only(url, sessions, pids)]  # also warms the emulator's record cache
        for _ in range(args.repeat):  # baseline and connector alternate: same conditions
            base = baseline(url, broker.bootstrap_servers, pids)
            conn, _topic = connector_backfill(
                url, broker.bootstrap_servers, sessions, work, pids, args.backfill_poll_interval
            )
            rows += [base, conn]
            pairs.append((base, conn))
    print_rows(rows)
    for base, conn in pairs:
        ratio = conn.rate / base.rate if base.rate else float("inf")
        print(
            f"connector / baseline: {ratio:.2f}x "
            f"(target >= 1.5x: {'met' if ratio >= 1.5 else 'NOT met'})"
            f"; connector {conn.rate:,.0f} records/s committed (target >= 15,000: "
            f"{'met' if conn.rate >= 15_000 else 'NOT met'})"
        )
        print(
            f"connector CPU per 1,000 records: {1000 * conn.cpu / conn.records:.3f} s; "
            f"baseline: {1000 * base.cpu / max(1, base.records):.3f} s"
        )
    if len(pairs) > 1:
        ratios = [c.rate / b.rate for b, c in pairs if b.rate]
        print(
            f"over {len(pairs)} alternating pairs: median connector "
            f"{statistics.median(c.rate for _, c in pairs):,.0f} records/s, median ratio "
            f"{statistics.median(ratios):.2f}x (min {min(ratios):.2f}x, max {max(ratios):.2f}x)"
        )


if __name__ == "__main__":
    main()
