"""The metrics the alerts and dashboards read exist from the first scrape."""

from __future__ import annotations

import re
from pathlib import Path

from connector.changes.validate import INVALID_REASONS
from connector.observability.metrics import API_RETRY_REASONS, Metrics

P = "learnosity_connector_"


def series(metrics: Metrics) -> dict[str, float]:
    found = {}
    for line in metrics.render().decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            found[name] = float(value)
    return found


def test_every_labelled_counter_the_alerts_use_is_pre_created() -> None:
    """``increase()`` of a series that appears with 1 is 0: without the zero series, the
    DeadLetters alert missed the first dead letter after every restart."""
    shown = series(Metrics("v"))
    for reason in (*INVALID_REASONS, "invalid_record"):
        assert shown[f'{P}dead_letters_total{{reason="{reason}"}}'] == 0
    for reason in API_RETRY_REASONS:
        assert shown[f'{P}api_retries_total{{reason="{reason}"}}'] == 0
    for outcome in ("committed", "aborted", "failed"):
        assert shown[f'{P}transactions_total{{outcome="{outcome}"}}'] == 0
    for outcome in ("ok", "rate_limited", "transient", "fatal"):
        assert shown[f'{P}api_requests_total{{outcome="{outcome}"}}'] == 0


def test_every_retry_reason_the_client_raises_is_pre_created() -> None:
    """The reasons come from the Data API client's code: a new one must be added here."""
    root = Path(__file__).resolve().parents[2] / "connector" / "learnosity"
    raised: set[str] = set()
    for path in root.glob("*.py"):
        text = path.read_text(encoding="utf-8")
        raised |= set(re.findall(r'TransientError\([^)]*?"([a-z_0-9]+)"\s*,?\s*\)', text, re.S))
        raised |= set(re.findall(r'\.retrying\("([a-z_]+)"', text))
    assert raised, "no retry reason found in connector/learnosity"
    assert raised <= set(API_RETRY_REASONS), raised - set(API_RETRY_REASONS)


def test_process_metrics_are_exported() -> None:
    shown = series(Metrics("v"))
    for name in (
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_start_time_seconds",
        "process_open_fds",
    ):
        assert name in shown, name
    assert shown["process_resident_memory_bytes"] > 0
    assert any(name.startswith("python_info{") for name in shown)
