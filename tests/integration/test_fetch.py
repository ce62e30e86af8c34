"""The project's own client and `learnosity-connector fetch` against the real emulator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import SecretStr

from connector.catchup.lanes import Step, unplanned_tail
from connector.changes.prepare import page_position
from connector.emulator import Emulator
from connector.learnosity.budget import RequestBudget
from connector.learnosity.client import Credentials, DataApiClient
from connector.learnosity.transport import HttpTransport

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def own_client(emulator: Emulator, secret: str | None = None) -> DataApiClient:
    return DataApiClient(
        emulator.endpoint_url(),
        Credentials(
            emulator.consumer_key, SecretStr(secret or emulator.consumer_secret), "localhost"
        ),
        transport=HttpTransport(),
        budget=RequestBudget(1000),
        stop=threading.Event(),
    )


def run_fetch(
    emulator: Emulator,
    *args: str,
    secret: str | None = None,
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **emulator.env(), "LOG_FORMAT": "json"}
    if secret is not None:
        env["LEARNOSITY_CONSUMER_SECRET"] = secret
    return subprocess.run(
        [sys.executable, "-m", "connector", "fetch", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )


def test_own_client_pages_through_every_session(
    emulator_factory: Callable[..., Emulator],
) -> None:
    emulator = emulator_factory(sessions=2345, users=300)
    client = own_client(emulator)
    lane = unplanned_tail(None)  # the tail from the earliest record
    base = {"sort": "asc", "limit": 50}
    seen: list[str] = []
    sizes: list[int] = []
    while True:
        page = client.fetch(lane.params(base))
        lane, step = lane.advance(page, page_position(page))
        sizes.append(len(page.records))
        seen.extend(r["session_id"] for r in page.records)
        if page.is_empty:
            break
        assert step in (Step.MORE, Step.CAUGHT_UP)
    client.close()
    assert max(sizes) == 50
    assert len(seen) == len(set(seen)) == 2345
    assert set(seen) == {s["session_id"] for s in emulator.sessions()}
    # the long poll: a session updated after the token comes back on the next request
    changed = emulator.workload.submit(seen[0])
    client = own_client(emulator)
    page = client.fetch(lane.params(base))
    assert [r["session_id"] for r in page.records] == [changed.session_id]
    client.close()


def test_fetch_prints_every_session_and_exits_0(
    emulator_factory: Callable[..., Emulator],
) -> None:
    emulator = emulator_factory(sessions=777)
    result = run_fetch(emulator)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert {r["session_id"] for r in records} == {s["session_id"] for s in emulator.sessions()}
    assert len(records) == 777
    assert "caught up" in result.stderr  # logs go to stderr, records alone to stdout


def test_fetch_max_pages_and_start_from(emulator_factory: Callable[..., Emulator]) -> None:
    emulator = emulator_factory(sessions=300)
    assert len(run_fetch(emulator, "--max-pages", "2").stdout.splitlines()) == 100
    # everything the emulator generated lies in the past: from "latest" nothing comes back
    result = run_fetch(emulator, "--start-from", "latest")
    assert result.returncode == 0 and result.stdout == ""


def test_fetch_with_a_wrong_secret_fails_with_one_clear_line(
    emulator_factory: Callable[..., Emulator],
) -> None:
    emulator = emulator_factory(sessions=10)
    result = run_fetch(emulator, secret="not-the-secret-42")
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "41003" in errors[0] and "LEARNOSITY_CONSUMER_SECRET" in errors[0]
    assert "not-the-secret-42" not in result.stderr + result.stdout


def test_fetch_rides_through_transient_faults(emulator_factory: Callable[..., Emulator]) -> None:
    emulator = emulator_factory(
        sessions=400, faults={"error_rate": 0.1, "truncate_rate": 0.05, "reset_rate": 0.05}
    )
    result = run_fetch(emulator)
    assert result.returncode == 0, result.stderr
    assert len({json.loads(line)["session_id"] for line in result.stdout.splitlines()}) == 400
