"""The fetch process (connector.fetch_side) against the real emulator, over real HTTP.

What the runner relies on: prepared pages arrive in order; a rewind re-reads from the
given cursor and drops what an older generation still sends; the client's metrics reach
the runner's registry; errors arrive as the same error; the child never outlives the
runner, whether it is stopped, killed, or its parent is killed.
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

from connector.emulator import Emulator
from connector.errors import FatalError, SourceFatalError
from connector.fetch_side import PAGES_AHEAD, FetchPlan, FetchProcess, RawPage
from connector.learnosity.fetcher import Fetched
from connector.learnosity.paging import Step
from connector.models import PreparedPage
from connector.observability.metrics import Metrics
from connector.settings import Settings, StartFrom
from tests.support.connector_proc import wait_for

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def settings_for(emulator: Emulator, **overrides: str) -> Settings:
    values: dict[str, Any] = {
        key.lower(): value for key, value in {**emulator.env(), **overrides}.items()
    }
    return Settings(
        **values, kafka_bootstrap_servers="unused:9092", learnosity_poll_interval_seconds=0.2
    )


@pytest.fixture
def start_fetch() -> Iterator[Callable[..., FetchProcess]]:
    started: list[FetchProcess] = []
    stop = threading.Event()

    def start(
        settings: Settings, cursor: str | None = None, metrics: Metrics | None = None
    ) -> FetchProcess:
        process = FetchProcess(
            FetchPlan(settings, StartFrom("earliest")),
            cursor,
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


def next_page(process: FetchProcess) -> Fetched[PreparedPage]:
    item = process.get(timeout=20)
    assert item is not None, "no page within 20 s"
    assert item.error is None, item.error
    return item


def read_to_end(process: FetchProcess) -> list[str]:
    ids: list[str] = []
    while True:
        item = next_page(process)
        assert item.page is not None
        ids += [r.session_id for r in item.page.records]
        if item.step is not Step.MORE:
            return ids


def test_every_session_arrives_prepared_in_order(
    emulator_factory: Callable[..., Emulator], start_fetch: Callable[..., FetchProcess]
) -> None:
    emulator = emulator_factory(sessions=420)
    metrics = Metrics()
    process = start_fetch(settings_for(emulator), metrics=metrics)
    ids = read_to_end(process)
    truth = [s["session_id"] for s in emulator.sessions()]
    assert sorted(ids) == sorted(truth) and len(ids) == 420
    rendered = metrics.render().decode()
    requests = [
        line
        for line in rendered.splitlines()
        if line.startswith('learnosity_connector_api_requests_total{outcome="ok"}')
    ]
    assert requests and float(requests[0].split()[-1]) >= 9  # 420 / 50 pages, forwarded


def test_pages_sent_ahead_ride_through_faults(
    emulator_factory: Callable[..., Emulator], start_fetch: Callable[..., FetchProcess]
) -> None:
    # a failed answer to a request sent ahead is fetched again, in order, once
    emulator = emulator_factory(
        sessions=500, faults={"error_rate": 0.1, "truncate_rate": 0.05, "reset_rate": 0.05}
    )
    metrics = Metrics()
    ids = read_to_end(start_fetch(settings_for(emulator), metrics=metrics))
    assert sorted(ids) == sorted(s["session_id"] for s in emulator.sessions())
    assert len(ids) == len(set(ids)) == 500
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
    process = start_fetch(settings_for(emulator))
    first = next_page(process)
    second = next_page(process)
    assert first.page is not None and second.page is not None
    process.rewind(first.cursor)  # back to after page 1: page 2 comes again
    again = next_page(process)
    assert again.generation == 1 == process.generation
    assert again.page is not None
    assert [r.session_id for r in again.page.records] == [r.session_id for r in second.page.records]


def test_the_child_fetches_ahead_while_the_runner_is_busy(
    emulator_factory: Callable[..., Emulator], start_fetch: Callable[..., FetchProcess]
) -> None:
    emulator = emulator_factory(sessions=3000)
    process = start_fetch(settings_for(emulator))
    # nobody calls get(): as during a commit, pages pile up in the runner's process,
    # up to the bound, and then the child waits
    wait_for(
        lambda: process.pages_ahead >= PAGES_AHEAD,
        timeout=30,
        what=f"{PAGES_AHEAD} pages fetched ahead",
    )
    assert process.pages_ahead == PAGES_AHEAD
    # the first page found the runner waiting, so the child handed it over raw; by the
    # last, pages were piling up in the runner, so the child prepared it (the pipe holds
    # two pages at most: the child saw at least 37 waiting)
    piled = [item.page for item in list(process._pages.queue) if item is not None]
    assert isinstance(piled[0], RawPage) and isinstance(piled[-1], PreparedPage)
    assert sorted(read_to_end(process)) == sorted(s["session_id"] for s in emulator.sessions())


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
from connector.fetch_side import PAGES_AHEAD, FetchPlan, FetchProcess
from connector.observability.metrics import Metrics
from connector.settings import Settings, StartFrom
env = dict(arg.split("=", 1) for arg in sys.argv[1:])
settings = Settings(**{k.lower(): v for k, v in env.items()},
                    kafka_bootstrap_servers="unused:9092", learnosity_poll_interval_seconds=0.2)
process = FetchProcess(FetchPlan(settings, StartFrom("earliest")), None,
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
