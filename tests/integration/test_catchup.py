"""Catching up by time slices, end to end: emulator → connector process → real Kafka.

What a backfill in slices must hold, whatever order the slices finish in: every session
arrives and its last event is its final state; no event twice, none older than the one
before it; a restart after ``kill -9`` resumes every unfinished slice; a record exactly
on a slice boundary is emitted once; a 429 pauses every worker and the budget is never
exceeded; ``status`` shows the slices and an ETA while it runs.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from connector.emulator.faults import FaultConfig
from connector.emulator.requestlog import read_request_log
from tests.support.connector_proc import ConnectorProcess, wait_for
from tests.support.pipeline import Pipeline, assert_stream_is_clean

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
METRIC = "learnosity_connector_"

MakePipeline = Callable[..., Pipeline]


@pytest.fixture
def make(make_pipeline: MakePipeline) -> MakePipeline:
    """A pipeline sliced at once (8 workers, slices past 30 s), whose emulator has the
    given latency, quota, clock and request log."""

    def start(
        sessions: int = 2000,
        latency_ms: float = 0.0,
        rate_limit: int = 0,
        clock: Callable[[], float] | None = None,
        request_log: Path | None = None,
    ) -> Pipeline:
        return make_pipeline(
            sessions,
            80,
            FaultConfig(latency_ms=latency_ms),
            5,
            env={"LEARNOSITY_MAX_CONCURRENCY": "8", "LEARNOSITY_CATCHUP_LAG_SECONDS": "30"},
            rate_limit=rate_limit,
            clock=clock,
            request_log=request_log,
        )

    return start


def metric(connector: ConnectorProcess, name: str) -> float:
    return connector.metric(METRIC + name)


def slices_left(connector: ConnectorProcess) -> float:
    return sum(metric(connector, f'slices{{state="{s}"}}') for s in ("pending", "running"))


def backfill_done(connector: ConnectorProcess) -> bool:
    return metric(connector, 'slices{state="done"}') > 0 and slices_left(connector) == 0


def test_a_sliced_backfill_while_sessions_change_converges_to_the_truth(
    make: MakePipeline,
) -> None:
    pipeline = make(sessions=3000, latency_ms=30)
    connector = pipeline.connector(LEARNOSITY_MAX_REQUESTS_PER_SECOND="100")
    connector.wait_ready()
    rounds = 0
    while not backfill_done(connector):  # sessions change while the slices are read
        fetched = metric(connector, "records_fetched_total")
        pipeline.emulator.workload.step(40)
        rounds += 1
        wait_for(
            lambda f=fetched: (
                metric(connector, "records_fetched_total") > f  # type: ignore[misc]
                or backfill_done(connector)
            ),
            30,
            "more records read",
        )
    assert rounds >= 2, "the backfill ended before sessions changed under it"
    assert metric(connector, 'slices{state="done"}') >= 8, "the backfill was not sliced"
    pipeline.emulator.workload.step(200)  # and after it, through the live tail
    landed = pipeline.converge()
    assert_stream_is_clean(landed)
    assert metric(connector, "changes_emitted_total") == len(landed.events)
    assert connector.terminate() == 0, pipeline.logs()


def test_kill_9_twice_during_a_sliced_backfill_resumes_every_unfinished_slice(
    make: MakePipeline,
) -> None:
    pipeline = make(sessions=4000, latency_ms=40)
    env = {"LEARNOSITY_MAX_REQUESTS_PER_SECOND": "15", "KAFKA_COMMIT_INTERVAL_MS": "700"}
    resumed: list[float] = []
    for round_ in range(2):
        connector = pipeline.connector(**env)
        connector.wait_ready()
        resumed.append(slices_left(connector))  # restored before the first fetch
        start = metric(connector, "records_fetched_total")
        wait_for(
            lambda c=connector, s=start: (  # type: ignore[misc]
                metric(c, "records_fetched_total") >= s + 600
                and metric(c, 'transactions_total{outcome="committed"}') >= 2
            ),
            60,
            f"records read and committed in round {round_}",
        )
        assert slices_left(connector) > 0, "the backfill finished before the kill"
        pipeline.emulator.workload.step(30)
        connector.kill()
    assert resumed[1] > 0, "the second start restored no unfinished slice"
    survivor = pipeline.connector()
    survivor.wait_ready()
    assert slices_left(survivor) > 0, "the third start restored no unfinished slice"
    landed = pipeline.converge()
    assert_stream_is_clean(landed)
    assert survivor.terminate() == 0, pipeline.logs()


def test_a_record_exactly_on_a_slice_boundary_is_emitted_once(make: MakePipeline) -> None:
    # one session at every whole second of the past hour: whatever the slices' bounds,
    # (whole seconds) some records are exactly on them, and on the tail's start
    now = math.floor(time.time())
    fixed: list[float | None] = [None]  # the emulator's clock: set while creating

    def clock() -> float:
        return fixed[0] if fixed[0] is not None else time.time()

    pipeline = make(sessions=0, clock=clock)
    span = 3600
    for second in range(now - span, now):
        fixed[0] = float(second)
        pipeline.emulator.workload.create()
    fixed[0] = None
    ids = {s["session_id"] for s in pipeline.emulator.sessions()}
    assert len(ids) == span
    updated = {s["dt_updated"] for s in pipeline.emulator.sessions()}
    assert all(t.endswith(".000Z") for t in updated), sorted(updated)[:3]
    connector = pipeline.connector(LEARNOSITY_CATCHUP_LAG_SECONDS="10")
    connector.wait_ready()
    landed = pipeline.converge()
    assert metric(connector, 'slices{state="done"}') >= 16
    created = [e["session_id"] for e in landed.events if e["change"] == "created"]
    assert sorted(created) == sorted(ids), "a session missing or emitted twice"
    assert len(landed.events) == span
    assert connector.terminate() == 0, pipeline.logs()


def test_a_429_storm_pauses_every_worker_and_the_budget_is_never_exceeded(
    make: MakePipeline, tmp_path: Path
) -> None:
    log = tmp_path / "requests.log"
    quota, window = 60, 5.0
    pipeline = make(sessions=5000, latency_ms=20, rate_limit=quota, request_log=log)
    budget = 40  # per second: 200 per 5 s, far over the quota of 60
    connector = pipeline.connector(LEARNOSITY_MAX_REQUESTS_PER_SECOND=str(budget))
    connector.wait_ready()
    pipeline.converge(timeout=180)
    assert metric(connector, 'api_requests_total{outcome="rate_limited"}') > 0
    assert connector.terminate() == 0, pipeline.logs()
    pipeline.emulator.stop()  # the request log reaches its file
    requests = read_request_log(log)
    times = [ms / 1000 for ms, _ in requests]
    limited = [ms / 1000 for ms, status in requests if status == 429]
    assert limited, "no 429 in the request log"
    for t in limited:
        # requests already in flight arrive within the latency; after that, every worker
        # waits out the window (5 s, as the service sends no Retry-After)
        quiet = [x for x in times if t + 0.5 <= x < t + window - 0.5]
        assert not quiet, f"{len(quiet)} requests arrived while paused after a 429 at {t}"
    # never more than the budget in any 5 s window (the quota's window), to the ms
    start = 0
    for end, t in enumerate(times):
        while times[start] <= t - window:
            start += 1
        assert end - start + 1 <= budget * window + 1, "the request budget was exceeded"


def status(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, check=False, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def test_status_during_a_backfill_shows_the_slices_and_an_eta(make: MakePipeline) -> None:
    pipeline = make(sessions=4000, latency_ms=40)
    connector = pipeline.connector(LEARNOSITY_MAX_REQUESTS_PER_SECOND="12")
    connector.wait_ready()
    wait_for(
        lambda: (
            metric(connector, 'slices{state="done"}') >= 1
            and math.isfinite(metric(connector, "catchup_eta_seconds"))
            and metric(connector, "catchup_eta_seconds") > 0
        ),
        60,
        "a slice done and an ETA",
    )
    command = [sys.executable, "-m", "connector", "status"]
    env = {**pipeline.env, "LOG_LEVEL": "WARNING"}
    shown = status([*command, "--json"], env)
    assert shown.returncode == 0, shown.stderr
    summary = json.loads(shown.stdout)
    assert summary["slices_pending"] + summary["slices_running"] > 0
    assert summary["slices_done"] >= 1
    assert summary["backfill_eta"] not in (None, "?")
    assert summary["slices"] and all(
        s["state"] in ("pending", "running") for s in summary["slices"]
    )
    text = status(command, env)
    assert text.returncode == 0, text.stderr
    assert "slice s" in text.stdout and "backfill eta" in text.stdout
    assert connector.terminate() == 0, pipeline.logs()
