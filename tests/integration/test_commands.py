"""The operator commands against the real broker, registry and emulator: status, reset, check.

Each command runs as operators run it, ``python -m connector COMMAND`` in its own process
with the connector's environment; the state topic it reads or writes is a real one,
written by a real connector run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from dev.registry import SchemaRegistry
from tests.fixtures.pipeline import MakePipeline
from tests.support.connector_proc import ConnectorProcess, free_port, wait_for
from tests.support.pipeline import Landed, Pipeline, duplicate_deliveries, read_events

pytestmark = pytest.mark.integration

P = "learnosity_connector_"


def command(env: Mapping[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "connector", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def started(env: Mapping[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "connector", *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def status(pipeline: Pipeline) -> dict[str, Any]:
    done = command(pipeline.env, "status", "--json")
    assert done.returncode == 0, done.stderr
    summary: dict[str, Any] = json.loads(done.stdout)
    return summary


def unix(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def assert_no_duplicates(landed: Landed) -> None:
    assert duplicate_deliveries(landed) == [], "an event was delivered twice"


def metrics_reach(connector: ConnectorProcess, **wanted: float) -> None:
    """Wait until each counter reached its value, then for three more polls, so that
    anything counted beyond it (a record read twice, an extra event) would show too."""
    wait_for(
        lambda: all(connector.metric(P + name) >= v for name, v in wanted.items()),
        30,
        f"counters to reach {wanted}",
    )
    polls = connector.metric(P + "api_requests_total")
    wait_for(
        lambda: connector.metric(P + "api_requests_total") >= polls + 3,
        30,
        "three more polls",
    )


def test_status_reads_the_state_without_disturbing_a_running_connector(
    make_pipeline: MakePipeline,
) -> None:
    pipeline = make_pipeline(sessions=200)
    pipeline.env["LEARNOSITY_MAX_CONCURRENCY"] = "1"  # one cursor (slices: test_catchup)
    before = status(pipeline)  # nothing stored yet: no topic, no cursor
    assert before["cursor"] is None and before["sessions_tracked"] == 0
    assert before["running_instances"] == []

    connector = pipeline.connector()
    connector.wait_ready()
    pipeline.converge()
    committed = connector.metric(P + "transactions_total")
    summary = status(pipeline)
    newest = unix(pipeline.emulator.sessions()[-1]["dt_updated"])
    assert summary["cursor"], summary
    assert summary["sessions_tracked"] == 200
    assert unix(summary["position"]) == pytest.approx(newest, abs=0.002)
    assert 0 <= summary["lag_seconds"] <= time.time() - newest + 1
    assert time.time() - unix(summary["last_commit"]) < 60
    assert len(summary["running_instances"]) == 1, summary

    # the plain-text form carries the same facts
    text = command(pipeline.env, "status")
    assert text.returncode == 0, text.stderr
    assert "sessions tracked: 200" in text.stdout
    assert f"cursor: {summary['cursor']}" in text.stdout

    # the connector went on undisturbed: it commits new changes, nothing was fenced
    pipeline.emulator.workload.step(50)
    landed = pipeline.converge()
    assert_no_duplicates(landed)
    assert connector.metric(P + "transactions_total") > committed
    assert connector.alive()
    assert connector.terminate() == 0, pipeline.logs()
    assert "fenced" not in connector.log_tail(200)
    assert status(pipeline)["running_instances"] == []


def test_reset_to_a_time_re_reads_from_it_without_re_emitting(
    make_pipeline: MakePipeline,
) -> None:
    pipeline = make_pipeline(sessions=200)
    pipeline.env["LEARNOSITY_MAX_CONCURRENCY"] = "1"  # every record read exactly once
    emulator = pipeline.emulator
    first = pipeline.connector()
    first.wait_ready()
    before = pipeline.converge()
    stored = status(pipeline)

    # refused while an instance runs, and nothing changed
    refused = command(pipeline.env, "reset", "--to", "earliest")
    assert refused.returncode == 1
    assert "refusing to reset: an instance is running" in refused.stderr
    assert status(pipeline)["cursor"] == stored["cursor"]
    assert first.terminate() == 0, pipeline.logs()

    # while stopped: three new sessions; then back to the 151st oldest session's time
    emulator.workload.create_sessions(3)
    sessions = emulator.sessions()
    target = sessions[150]["dt_updated"]
    reread = [s for s in sessions if s["dt_updated"] >= target]
    done = command(pipeline.env, "reset", "--to", target)
    assert done.returncode == 0, done.stderr
    when = datetime.fromisoformat(target.replace("Z", "+00:00")).isoformat()
    assert f"{stored['cursor']} -> start from {when}" in done.stdout
    assert f"position was {stored['position']}" in done.stdout
    assert "200 session fingerprints kept" in done.stdout
    moved = status(pipeline)
    # the Data API's mintime is whole seconds: the reset starts from the second it is in
    start = datetime.fromtimestamp(int(unix(target)), UTC).isoformat()
    assert moved["cursor"] is None and moved["start_from"] == start
    assert moved["sessions_tracked"] == 200

    second = pipeline.connector()
    second.wait_ready()
    metrics_reach(
        second,
        records_fetched_total=len(reread),
        changes_emitted_total=3,
        repeats_dropped_total=len(reread) - 3,
    )
    after = read_events(pipeline.kafka_config, pipeline.topic)
    fetched = second.metric(P + "records_fetched_total")
    # it started at the time (not from the beginning), and emitted only the new sessions
    assert fetched == len(reread) < len(sessions)
    assert second.metric(P + "changes_emitted_total") == 3
    assert second.metric(P + "repeats_dropped_total") == len(reread) - 3
    assert len(after.events) == len(before.events) + 3
    assert {e["event_id"] for e in before.events} < {e["event_id"] for e in after.events}
    assert_no_duplicates(after)
    assert status(pipeline)["cursor"], "the run committed a cursor again"
    assert second.terminate() == 0, pipeline.logs()


def test_reset_to_latest_and_earliest(make_pipeline: MakePipeline) -> None:
    pipeline = make_pipeline(sessions=100)
    pipeline.env["LEARNOSITY_MAX_CONCURRENCY"] = "1"  # every record read exactly once
    first = pipeline.connector()
    first.wait_ready()
    before = pipeline.converge()

    # --force against a running instance: the cursor moves, the instance is fenced
    forced = command(pipeline.env, "reset", "--to", "latest", "--force")
    assert forced.returncode == 0, forced.stderr
    changed = {s.session_id for s in pipeline.emulator.workload.step(20)}  # commit refused
    assert first.wait_exit(60) == 1, pipeline.logs()
    assert "fenced" in first.log_tail(), first.log_tail()
    latest = status(pipeline)["start_from"]
    assert abs(unix(latest) - time.time()) < 120

    # from latest: only the sessions changed since the reset are read, nothing older
    second = pipeline.connector()
    second.wait_ready()
    metrics_reach(second, records_fetched_total=len(changed))
    assert second.metric(P + "records_fetched_total") == len(changed)
    emitted = second.metric(P + "changes_emitted_total")
    pipeline.emulator.workload.create_sessions(2)
    wait_for(
        lambda: second.metric(P + "changes_emitted_total") == emitted + 2, 30, "two new sessions"
    )
    assert second.terminate() == 0, pipeline.logs()

    # from earliest: every session read again, none emitted again
    done = command(pipeline.env, "reset", "--to", "earliest")
    assert done.returncode == 0, done.stderr
    assert "-> start from earliest" in done.stdout
    assert status(pipeline)["start_from"] == "earliest"
    third = pipeline.connector()
    third.wait_ready()
    total = len(pipeline.emulator.sessions())
    metrics_reach(third, records_fetched_total=total, repeats_dropped_total=total)
    assert third.metric(P + "records_fetched_total") == total
    assert third.metric(P + "changes_emitted_total") == 0
    assert third.metric(P + "repeats_dropped_total") == total
    # the step(20) the fenced instance could not commit was emitted by the second run
    landed = read_events(pipeline.kafka_config, pipeline.topic)
    assert_no_duplicates(landed)
    assert len(landed.events) > len(before.events)
    assert third.terminate() == 0, pipeline.logs()


def test_check_says_what_is_wrong_in_plain_words(
    make_pipeline: MakePipeline, schema_registry: SchemaRegistry
) -> None:
    secret = f"check-secret-{uuid.uuid4().hex}"
    wrong_secret = f"wrong-secret-{uuid.uuid4().hex}"
    pipeline = make_pipeline(sessions=20, consumer_secret=secret)
    env = {**pipeline.env, "SCHEMA_REGISTRY_URL": schema_registry.url}
    nowhere = f"127.0.0.1:{free_port()}"

    # a subject holding an incompatible schema, under BACKWARD compatibility
    incompatible_topic = f"{pipeline.topic}.incompatible"
    registry = SchemaRegistryClient({"url": schema_registry.url})
    subject = f"{incompatible_topic}-value"
    registry.set_compatibility(subject_name=subject, level="BACKWARD")
    old = {
        "type": "record",
        "name": "SessionScoreChanged",
        "namespace": "com.learnosity.connector",
        "fields": [{"name": "legacy", "type": "string"}],
    }
    registry.register_schema(subject, Schema(json.dumps(old), "AVRO"))

    cases = {
        "ok": env,
        "wrong secret": {**env, "LEARNOSITY_CONSUMER_SECRET": wrong_secret},
        "no broker": {**env, "KAFKA_BOOTSTRAP_SERVERS": nowhere},
        "no registry": {**env, "SCHEMA_REGISTRY_URL": f"http://{nowhere}"},
        "incompatible": {**env, "KAFKA_TOPIC": incompatible_topic},
        "no secret": {**env, "LEARNOSITY_CONSUMER_SECRET": "", "HTTP_PORT": "70000"},
    }
    running = {name: started(case, "check") for name, case in cases.items()}
    results = {}
    for name, process in running.items():
        out, err = process.communicate(timeout=90)
        results[name] = (process.returncode, out, err)

    def lines(name: str) -> dict[str, str]:
        """check's lines by what they are about: 'OK' or 'FAIL' + the words."""
        out = results[name][1]
        found = {}
        for line in out.splitlines():
            verdict, _, rest = line.partition(" ")
            subject_, _, words = rest.strip().partition(": ")
            found[subject_ or rest.strip()] = f"{verdict} {words}".strip()
        return found

    for name, (_code, out, err) in results.items():
        assert secret not in out + err, f"{name}: the secret was printed"
        assert wrong_secret not in out + err, f"{name}: the wrong secret was printed"

    code, out, err = results["ok"]
    assert code == 0, out + err
    ok = lines("ok")
    assert set(ok) == {"configuration", "learnosity", "kafka", "schema registry"}, out
    assert all(v.startswith("OK") for v in ok.values()), out

    code, out, err = results["wrong secret"]
    assert code == 1, out + err
    assert lines("wrong secret")["learnosity"].startswith("FAIL a signed request to http"), out
    assert lines("wrong secret")["kafka"].startswith("OK"), out

    code, out, err = results["no broker"]
    assert code == 1, out + err
    assert lines("no broker")["kafka"].startswith("FAIL"), out
    assert f"no answer from Kafka at {nowhere} within 15 s" in lines("no broker")["kafka"], out
    assert "Connection refused" in lines("no broker")["kafka"], out
    assert lines("no broker")["learnosity"].startswith("OK"), out  # every check ran
    assert lines("no broker")["schema registry"].startswith("OK"), out

    code, out, err = results["no registry"]
    assert code == 1, out + err
    assert lines("no registry")["schema registry"].startswith("FAIL"), out
    assert "unreachable" in lines("no registry")["schema registry"], out

    code, out, err = results["incompatible"]
    assert code == 1, out + err
    assert lines("incompatible")["schema registry"].startswith("FAIL"), out
    assert "incompatible" in lines("incompatible")["schema registry"], out

    # bad configuration: one plain line per problem, nothing reached, exit 2
    code, out, err = results["no secret"]
    assert code == 2, out + err
    problems = [line for line in err.splitlines() if line.startswith("config error: ")]
    assert len(problems) == 2, err
    assert any("LEARNOSITY_CONSUMER_SECRET" in p for p in problems), err
    assert any("HTTP_PORT" in p for p in problems), err
