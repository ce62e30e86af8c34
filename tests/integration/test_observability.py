"""Metrics, probes and logs of a real connector process against the emulator and Kafka.

The emulator does not tick: each test makes the changes itself and waits for the
connector's metrics or the topic to show them, so every count is exact.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from datetime import datetime

import pytest
from prometheus_client.parser import text_string_to_metric_families

from connector import __version__
from dev.kafka_broker import KafkaBroker
from tests.fixtures.pipeline import MakePipeline
from tests.support.connector_proc import ConnectorProcess, wait_for
from tests.support.pipeline import Landed, Pipeline, duplicate_deliveries, read_events

pytestmark = pytest.mark.integration

P = "learnosity_connector_"
#: the only label names our metrics may carry: all of them take values from small fixed sets
ALLOWED_LABELS = {"outcome", "reason", "change", "le", "version", "api_version", "state"}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(connector: ConnectorProcess) -> tuple[str, Samples]:
    status, text = connector.get("/metrics")
    assert status == 200, f"/metrics answered {status}"
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((P + name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == P + name)


def emitted_by_kind(samples: Samples) -> dict[str, int]:
    return {
        dict(labels)["change"]: int(v)
        for (name, labels), v in samples.items()
        if name == P + "changes_emitted_total" and v
    }


def events_by_kind(landed: Landed) -> dict[str, int]:
    return dict(Counter(event["change"] for event in landed.events))


def unix(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def counters_match_the_topic(pipeline: Pipeline, connector: ConnectorProcess) -> Landed:
    """Wait until the committed events' count per kind equals the metric's, and return them."""
    box: list[Landed] = []

    def match() -> bool:
        landed = read_events(pipeline.kafka_config, pipeline.topic, idle=0.5)
        box[:] = [landed]
        return emitted_by_kind(scrape(connector)[1]) == events_by_kind(landed)

    wait_for(match, 30, "changes_emitted_total to equal the events in the topic", interval=0.3)
    return box[0]


def run_check(env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "connector", "check"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_metrics_count_what_was_produced_and_no_secret_leaks(
    make_pipeline: MakePipeline,
) -> None:
    secret = f"obs-secret-{uuid.uuid4().hex}"  # distinctive: any appearance is a leak
    pipeline = make_pipeline(sessions=300, consumer_secret=secret)
    emulator = pipeline.emulator
    connector = pipeline.connector(LOG_LEVEL="DEBUG")
    connector.wait_ready()

    # the initial backfill: one created event per session, counted exactly
    landed = pipeline.converge()
    counters_match_the_topic(pipeline, connector)
    assert events_by_kind(landed) == {"created": 300}

    # live changes of every kind, scraped while the connector works on them
    emulator.workload.step(300)
    during = scrape(connector)[1]
    assert total(during, "changes_emitted_total") >= 300
    landed = pipeline.converge()
    landed = counters_match_the_topic(pipeline, connector)
    assert duplicate_deliveries(landed) == []
    assert set(events_by_kind(landed)) > {"created"}, "the workload made no other change"

    # no-op saves, one batch at a time: each saved session is read once and dropped
    sessions = [s["session_id"] for s in emulator.sessions()]
    for batch, count in enumerate((10, 25)):
        _text, before = scrape(connector)
        seq = emulator.truth.seq
        for session_id in sessions[batch * 40 : batch * 40 + count]:
            emulator.workload.save(session_id)
        saves = [
            r
            for r in emulator.truth_records(seq)
            if r["kind"] == "change" and r["change"] == "saved" and not r["content_changed"]
        ]
        assert len(saves) == count
        fetched0 = value(before, "records_fetched_total")
        repeats0 = value(before, "repeats_dropped_total")

        def dropped(f: float = fetched0, r: float = repeats0, n: int = count) -> bool:
            s = scrape(connector)[1]
            return (
                value(s, "records_fetched_total") >= f + n
                and value(s, "repeats_dropped_total") >= r + n
            )

        wait_for(dropped, 30, f"the {count} saves to be fetched and dropped")
        polls = total(scrape(connector)[1], "api_requests_total")

        def polled(p: float = polls) -> bool:  # more polls: a record read twice shows now
            return total(scrape(connector)[1], "api_requests_total") >= p + 3

        wait_for(polled, 30, "three more polls")
        after = scrape(connector)[1]
        assert value(after, "records_fetched_total") == fetched0 + len(saves)
        assert value(after, "repeats_dropped_total") == repeats0 + len(saves)
        assert emitted_by_kind(after) == emitted_by_kind(before), "a no-op save was emitted"
    final = counters_match_the_topic(pipeline, connector)
    assert len(final.events) == len(landed.events)

    # after the run: the gauges and histograms agree with the source and with each other
    newest = unix(emulator.sessions()[-1]["dt_updated"])
    scraped_after = time.time()
    text, samples = scrape(connector)
    scraped_before = time.time()
    assert value(samples, "cursor_position_seconds") == pytest.approx(newest, abs=0.002)
    # lag is now minus the position, computed at scrape time
    assert scraped_after - newest - 0.01 <= value(samples, "lag_seconds")
    assert value(samples, "lag_seconds") <= scraped_before - newest + 0.01
    assert time.time() - value(samples, "last_successful_poll_timestamp_seconds") < 10
    assert value(samples, "sessions_tracked") == len(emulator.sessions()) > 300
    assert value(samples, "state_restore_duration_seconds") > 0
    assert value(samples, "ready") == 1
    committed = value(samples, "transactions_total", outcome="committed")
    assert committed > 0
    assert value(samples, "transaction_commit_duration_seconds_count") == committed
    requests = total(samples, "api_requests_total")
    assert requests == value(samples, "api_requests_total", outcome="ok") > 0
    assert value(samples, "api_request_duration_seconds_count") == requests
    assert total(samples, "dead_letters_total") == 0
    assert value(samples, "produce_errors_total") == 0
    assert value(samples, "stalled_cursor_total") == 0
    assert value(samples, "build_info", version=__version__, api_version="v2025.2.LTS") == 1, (
        "build_info has no series for this version"
    )

    # Prometheus naming, bounded labels
    ids = {s["session_id"] for s in emulator.sessions()} | {
        s["user_id"] for s in emulator.sessions()
    }
    for family in text_string_to_metric_families(text):
        if family.name.startswith(("process_", "python_")):
            continue  # prometheus-client's standard process and platform collectors
        assert family.name.startswith(P), family.name
        for sample in family.samples:
            if family.type == "counter":
                assert sample.name.endswith("_total"), sample.name
            assert set(sample.labels) <= ALLOWED_LABELS, sample
            assert not set(sample.labels.values()) & ids, f"an id as a label value: {sample}"

    # no secret anywhere: /metrics, the logs (at DEBUG), check's output
    assert secret not in text
    check = run_check(pipeline.env)
    assert check.returncode == 0, check.stdout + check.stderr
    assert secret not in check.stdout + check.stderr
    assert connector.terminate() == 0, pipeline.logs()
    log = connector.log_path.read_text()
    assert secret not in log
    # one JSON event per line, with the stable fields first
    lines = [json.loads(line) for line in log.splitlines() if line.strip()]
    assert any(line["event"] == "state restored" for line in lines)
    for line in lines:
        assert list(line)[:4] == ["ts", "level", "logger", "event"], line


def test_readiness_follows_restore_first_poll_and_the_broker(
    make_pipeline: MakePipeline, kafka_broker: KafkaBroker
) -> None:
    pipeline = make_pipeline(sessions=50)
    seen: list[tuple[int, str]] = []

    def probe() -> tuple[int, str]:
        status, body = pipeline.processes[0].get("/readyz")
        reason = json.loads(body)["reason"] if body else ""
        if status and (not seen or seen[-1] != (status, reason)):  # 0: not listening yet
            seen.append((status, reason))
        return status, reason

    # the Data API cannot answer while its lock is held: the start-up request waits
    # (it comes before the state is restored, so the reason is the restore's)
    with pipeline.emulator.lock:
        connector = pipeline.connector()
        wait_for(lambda: probe()[1] == "restoring state", 60, "start-up pending")
        assert connector.get("/healthz")[0] == 200
        assert connector.metric(P + "ready") == 0
    wait_for(lambda: probe()[0] == 200, 30, "/readyz to answer 200 after the first poll")
    assert all(status == 503 for status, _ in seen[:-1]), seen
    assert seen[-1] == (200, "ok")
    assert connector.metric(P + "ready") == 1

    liveness: list[int] = []

    def not_ready() -> bool:
        liveness.append(connector.get("/healthz")[0])
        return probe()[0] == 503

    kafka_broker.stop()
    try:
        wait_for(not_ready, 60, "/readyz to answer 503 with the broker stopped", interval=0.5)
        assert seen[-1][1].startswith("Kafka unreachable"), seen
        assert connector.metric(P + "ready") == 0
    finally:
        kafka_broker.start()
    wait_for(lambda: probe()[0] == 200, 90, "/readyz to answer 200 again")
    liveness.append(connector.get("/healthz")[0])
    assert set(liveness) == {200}, liveness
    assert connector.alive(), pipeline.logs()
    # and it still works: a change made now arrives
    pipeline.emulator.workload.create_sessions(3)
    pipeline.converge()
    assert connector.terminate() == 0, pipeline.logs()
