"""``learnosity-connector emulator`` as a separate process: start, serve, files, stop."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from learnosity_sdk.request import DataApi

from connector.emulator.truth import read_truth
from tests.fixtures.emulator import ROOT, EmulatorProcess

pytestmark = pytest.mark.integration

Start = Callable[..., EmulatorProcess]


def all_records(process: EmulatorProcess) -> list[dict[str, object]]:
    pages = DataApi().request_iter(
        process.endpoint_url(),
        {"consumer_key": process.consumer_key, "domain": "localhost"},
        process.consumer_secret,
        {"sort": "asc", "limit": 50},
    )
    return [record for page in pages for record in page["data"]]


def wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def test_serves_saves_and_loads(emulator_process_factory: Start, tmp_path: Path) -> None:
    truth, saved = tmp_path / "truth.jsonl", tmp_path / "saved.jsonl"
    process = emulator_process_factory(
        "--sessions",
        "150",
        "--seed",
        "7",
        "--truth",
        str(truth),
        "--save",
        str(saved),
        "--new-sessions-per-second",
        "0",
        "--changes-per-second",
        "0",
    )
    assert process.url.startswith("http://127.0.0.1:")
    records = all_records(process)
    assert len(records) == 150
    assert process.stop() == 0
    assert [t["change"] for t in read_truth(truth)] == ["created"] * 150
    assert len(saved.read_text().splitlines()) == 150

    again = emulator_process_factory(
        "--load", str(saved), "--new-sessions-per-second", "0", "--changes-per-second", "0"
    )
    assert all_records(again) == records


def test_the_workload_ticks(emulator_process_factory: Start, tmp_path: Path) -> None:
    truth = tmp_path / "truth.jsonl"
    emulator_process_factory(
        "--sessions",
        "20",
        "--truth",
        str(truth),
        "--tick-ms",
        "20",
        "--new-sessions-per-second",
        "50",
        "--changes-per-second",
        "200",
    )
    wait_for(lambda: truth.exists() and len(truth.read_text().splitlines()) > 60)
    kinds = {t["change"] for t in read_truth(truth)}
    assert {"created", "saved", "submitted"} <= kinds


def test_credentials_from_the_environment_and_never_printed(
    emulator_process_factory: Start,
) -> None:
    env = {"LEARNOSITY_CONSUMER_KEY": "acme", "LEARNOSITY_CONSUMER_SECRET": "s3cr3t-value"}
    process = emulator_process_factory("--sessions", "3", env=env)
    assert process.consumer_key == "acme"
    assert len(all_records(process)) == 3
    assert process.stop() == 0
    assert "s3cr3t-value" not in process.stderr_text()


def test_bad_flags_fail_with_one_line_each() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "connector", "emulator", "--port", "0", "--fault-error-rate", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "error_rate" in result.stderr
