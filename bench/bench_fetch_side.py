"""The fetch side alone: the fetch process (fetch + prepare) against the client alone.

No Kafka. An emulator process serves ``--sessions`` sessions (no latency, rate limit
off); then, one after the other, on the same emulator data:
    client only    the connector's Data API client in this process: sign, POST on a
                   kept-alive connection, decode (the baseline: the least any reader does)
    fetch process  ``connector.fetch_side.FetchProcess``: the child fetches ahead,
                   validates, fingerprints and encodes, and hands prepared pages over;
                   this process takes them, and prepares the pages the child hands over
                   raw (it does while fewer than two pages wait here: as the runner)
Each reader runs ``--rounds`` times (the first also warms the emulator's record cache);
the table shows every round. CPU is from /proc/<pid>/stat: this process's for the client,
the child's plus this process's for the fetch process.

    .venv/bin/python bench/bench_fetch_side.py                    # 100k sessions, 2 rounds
    .venv/bin/python bench/bench_fetch_side.py --sessions 20000 --rounds 1

Not a test: nothing here passes or fails. It says how fast the fetch side can go when
nothing else competes for the cores (here this process does nothing but take pages, so
it prepares most of them: the runner, busy deciding and producing, prepares fewer).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/bench_fetch_side.py` puts only bench/ there
    sys.path.insert(0, str(ROOT))


from bench.bench_pipeline import (  # noqa: E402
    API_VERSION,
    cpu_seconds,
    emulator_process,
    machine_lines,
    own_client,
)
from connector.emulator.service import DEMO_CONSUMER_KEY, DEMO_CONSUMER_SECRET  # noqa: E402
from connector.fetch_side import FetchPlan, FetchProcess  # noqa: E402
from connector.learnosity.paging import Step  # noqa: E402
from connector.observability.metrics import Metrics  # noqa: E402
from connector.settings import Settings, StartFrom  # noqa: E402


def client_only(url: str, emulator_pid: int) -> tuple[int, float, float, float]:
    """(records, wall s, CPU s of this process, emulator CPU s)."""
    client = own_client(url)
    params: dict[str, Any] = {"sort": "asc", "limit": 50}
    records = 0
    emulator, cpu, wall = cpu_seconds(emulator_pid), time.process_time(), time.perf_counter()
    try:
        while True:
            page = client.fetch(params, max_attempts=3)
            if not page.records:
                break
            records += len(page.records)
            params["next"] = page.next_token
    finally:
        client.close()
    return (
        records,
        time.perf_counter() - wall,
        time.process_time() - cpu,
        cpu_seconds(emulator_pid) - emulator,
    )


def fetch_process(url: str, emulator_pid: int) -> tuple[int, float, float, float]:
    """(records, wall s, CPU s of both processes, emulator CPU s), from the first page."""
    settings = Settings(
        learnosity_base_url=url,
        learnosity_consumer_key=DEMO_CONSUMER_KEY,
        learnosity_consumer_secret=DEMO_CONSUMER_SECRET,  # type: ignore[arg-type]
        learnosity_api_version=API_VERSION,
        learnosity_max_requests_per_second=1_000_000,
        kafka_bootstrap_servers="unused:9092",
        log_format="text",
    )
    stop = threading.Event()
    process = FetchProcess(
        FetchPlan(settings, StartFrom("earliest")), None, observer=Metrics(), stop=stop
    )
    process.start()
    try:
        first = process.get(timeout=60)  # start-up (spawn, imports) is not measured
        assert first is not None and first.page is not None, "no first page"
        assert process.pid is not None
        records = 0  # counted from the second page: the clock starts now
        emulator, cpu = cpu_seconds(emulator_pid), cpu_seconds(process.pid) + time.process_time()
        wall = time.perf_counter()
        step = first.step
        while step is Step.MORE:
            item = process.get(timeout=60)
            assert item is not None and item.page is not None, f"stopped: {item}"
            records += item.page.fetched
            step = item.step
        return (
            records,
            time.perf_counter() - wall,
            cpu_seconds(process.pid) + time.process_time() - cpu,
            cpu_seconds(emulator_pid) - emulator,
        )
    finally:
        stop.set()
        process.join(5)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    print(machine_lines()[0])
    with tempfile.TemporaryDirectory(prefix="bench-fetch-side-") as work:
        log = Path(work) / "emulator.log"
        with emulator_process(args.sessions, log) as (emulator_pid, url):
            print(
                f"{args.sessions:,} sessions in an emulator process (no latency, rate limit "
                "off), pages of 50; no Kafka"
            )
            print(
                f"{'reader':<16} {'round':>5} {'records':>9} {'wall s':>7} {'records/s':>10} "
                f"{'us CPU/rec':>10} {'emulator us/rec':>15}"
            )
            for name, reader in (("client only", client_only), ("fetch process", fetch_process)):
                for round_ in range(1, args.rounds + 1):
                    records, wall, cpu, emulator = reader(url, emulator_pid)
                    print(
                        f"{name:<16} {round_:>5} {records:>9,} {wall:>7.2f} "
                        f"{records / wall:>10,.0f} {1e6 * cpu / records:>10.1f} "
                        f"{1e6 * emulator / records:>15.1f}"
                    )


if __name__ == "__main__":
    main()
