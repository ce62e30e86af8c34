"""The fetch process (connector.fetch_side) against the real emulator, over real HTTP.

What the runner relies on: every session arrives prepared, each lane's pages in order,
whether one cursor or many slices read them; a rewind re-reads from the given lanes and
drops what an older generation still sends; the client's metrics reach the runner's
registry; errors arrive as the same error; the child never outlives the runner, whether
it is stopped, killed, or its parent is killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from connector.catchup.crawl import Fetched
from connector.catchup.lanes import TAIL_ID, Lane, Step, newest, unplanned_tail
from connector.emulator import Emulator
from connector.errors import FatalError, SourceFatalError
from connector.fetch_side import PAGES_AHEAD, FetchPlan, FetchProcess
from connector.observability.metrics import Metrics
from connector.settings import Settings
from tests.support.connector_proc import wait_for

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def settings_for(emulator: Emulator, **overrides: str) -> Settings:
    values: dict[str, Any] = {
        key.lower(): value for key, value in {**emulator.env(), **overrides}.items()
    }
    values.setdefault("learnosity_catchup_lag_seconds", 60)
    return Settings(
        **values, kafka_bootstrap_servers="unused:9092", learnosity_poll_interval_seconds=0.2
    )


@pytest.fixture
def start_fetch() -> Iterator[Callable[..., FetchProcess]]:
    started: list[FetchProcess] = []
    stop = threading.Event()

    def start(
        settings: Settings, lanes: tuple[Lane, ...] | None = None, metrics: Metrics | None = None
    ) -> FetchProcess:
        process = FetchProcess(
            FetchPlan(settings),
            lanes if lanes is not None else (unplanned_tail(None),),
            observer=metrics or Metrics(),
            stop=stop,
        )
        process.start()
        started.append(process)
        return process

    yield start
    stop.set()
    for process in started:
        process.join(5)


def next_page(process: FetchProcess) -> Fetched:
    """The next item with a page (lane-only items, such as a plan, are skipped)."""
    while True:
        item = process.get(timeout=20)
        assert item is not None, "nothing within 20 s"
        assert item.error is None, item.error
        if item.page is not None:
            return item


def read_to_end(process: FetchProcess) -> list[str]:
    """Session ids in the order read, until every slice is done and the tail caught up;
    each lane's positions must never go back."""
    ids: list[str] = []
    lanes: dict[str, Lane] = {}
    tail_caught_up = False
    while not tail_caught_up or any(not lane.done for lane in lanes.values()):
        item = process.get(timeout=20)
        assert item is not None, "nothing within 20 s"
        assert item.error is None, item.error
        for lane in item.lanes:
            if lane.id != TAIL_ID:
                lanes[lane.id] = newest(lanes.get(lane.id), lane)
        if item.page is None:
            continue
        lane = item.lanes[0]
        positions = [r.updated_ms for r in item.page.records]
        assert positions == sorted(positions), f"lane {lane.id} went back in a page"
        ids += [r.session_id for r in item.page.records]
        if lane.id == TAIL_ID:
            tail_caught_up = tail_caught_up or item.step is Step.CAUGHT_UP
    return ids


@pytest.mark.parametrize("concurrency", ["1", "8"])
def test_every_session_arrives_prepared(
    emulator_factory: Callable[..., Emulator],
    start_fetch: Callable[..., FetchProcess],
    concurrency: str,
) -> None:
    emulator = emulator_factory(sessions=420)
    metrics = Metrics()
    settings = settings_for(emulator, LEARNOSITY_MAX_CONCURRENCY=concurrency)
    process = start_fetch(settings, metrics=metrics)
    ids = read_to_end(process)
    truth = [s["session_id"] for s in emulator.sessions()]
    assert set(ids) == set(truth)  # slices overlap by a second: a few are read twice
    if concurrency == "1":  # one cursor: each exactly once, in the service's order
        assert len(ids) == 420
    rendered = metrics.render().decode()
    requests = [
        line
        for line in rendered.splitlines()
        if line.startswith('learnosity_connector_api_requests_total{outcome="ok"}')
    ]
    assert requests and float(requests[0].split()[-1]) >= 9  # 420 / 50 pages, forwarded


def test_concurrent_fetches_ride_through_faults(
    emulator_factory: Callable[..., Emulator], start_fetch: Callable[..., FetchProcess]
) -> None:
    emulator = emulator_factory(
        sessions=500, faults={"error_rate": 0.1, "truncate_rate": 0.05, "reset_rate": 0.05}
    )
    metrics = Metrics()
    ids = read_to_end(start_fetch(settings_for(emulator), metrics=metrics))
    assert set(ids) == {s["session_id"] for s in emulator.sessions()}
    retried = [
        line
        for line in metrics.render().decode().splitlines()
        if line.startswith("learnosity_connector_api_requests_total{")
        and 'outcome="transient"' in line
    ]
    assert retried and float(retried[0].split()[-1]) > 0  # faults did happen


def test_a_rewind_re_reads_and_drops_the_older_generation(
    emulator_factory: Callable[..., Emulator], start_fetch: Callable[..., FetchProcess]
) -> None:
    emulator = emulator_factory(sessions=300)
    process = start_fetch(settings_for(emulator, LEARNOSITY_MAX_CONCURRENCY="1"))
    first = next_page(process)
    second = next_page(process)
    assert first.page is not None and second.page is not None
    process.rewind((first.lanes[0],))  # back to after page 1: page 2 comes again
    again = next_page(process)
    assert again.generation == 1 == process.generation
    assert again.page is not None
    assert [r.session_id for r in again.page.records] == [r.session_id for r in second.page.records]


def test_the_child_fetches_ahead_while_the_runner_is_busy(
    emulator_factory: Callable[..., Emulator], start_fetch: Callable[..., FetchProcess]
) -> None:
    emulator = emulator_factory(sessions=12000)
    process = start_fetch(settings_for(emulator))
    # nobody calls get(): as during a commit, items pile up in the runner's process, up
    # to the bound, and then the child's workers wait
    wait_for(
        lambda: process._items.qsize() >= PAGES_AHEAD,
        timeout=30,
        what=f"{PAGES_AHEAD} items fetched ahead",
    )
    assert process._items.qsize() == PAGES_AHEAD
    assert set(read_to_end(process)) == {s["session_id"] for s in emulator.sessions()}


def test_a_refused_secret_arrives_as_the_same_error(
    emulator_factory: Callable[..., Emulator], start_fetch: Callable[..., FetchProcess]
) -> None:
    emulator = emulator_factory(sessions=10)
    process = start_fetch(settings_for(emulator, LEARNOSITY_CONSUMER_SECRET="not-the-secret"))
    item = process.get(timeout=20)
    assert item is not None and isinstance(item.error, SourceFatalError)
    assert "not-the-secret" not in str(item.error)


def test_a_child_that_dies_is_a_fatal_error(
    emulator_factory: Callable[..., Emulator], start_fetch: Callable[..., FetchProcess]
) -> None:
    emulator = emulator_factory(sessions=10)
    process = start_fetch(settings_for(emulator))
    next_page(process)
    assert process.pid is not None
    os.kill(process.pid, signal.SIGKILL)
    item = process.get(timeout=20)
    assert item is not None and isinstance(item.error, FatalError)
    assert "exited unexpectedly" in str(item.error)


PARENT = """
import sys, threading
from connector.catchup.lanes import unplanned_tail
from connector.fetch_side import FetchPlan, FetchProcess
from connector.observability.metrics import Metrics
from connector.settings import Settings
env = dict(arg.split("=", 1) for arg in sys.argv[1:])
settings = Settings(**{k.lower(): v for k, v in env.items()},
                    kafka_bootstrap_servers="unused:9092", learnosity_poll_interval_seconds=0.2)
process = FetchProcess(FetchPlan(settings), (unplanned_tail(None),),
                       observer=Metrics(), stop=threading.Event())
process.start()
assert process.get(timeout=20) is not None
print(process.pid, flush=True)
threading.Event().wait()
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead too: it only waits to be reaped
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(") ", 1)[1][:1] != "Z"


def test_the_child_dies_with_a_killed_parent(
    emulator_factory: Callable[..., Emulator],
) -> None:
    emulator = emulator_factory(sessions=10)
    args = [f"{key}={value}" for key, value in emulator.env().items()]
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, *args],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert alive(child)
        parent.kill()  # kill -9: no cleanup code runs in the parent
        parent.wait(10)
        wait_for(lambda: not alive(child), timeout=10, what="the orphaned fetch process to exit")
    finally:
        parent.kill()
        parent.wait(10)
