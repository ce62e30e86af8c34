"""A real stream processor on the connector's events: the Kafka Streams example's output
equals the emulator's truth, in both value encodings.

emulator → connector process → events topic → ``examples/kafka-streams`` (Java, Kafka
Streams 4, exactly once, event time from ``dt_updated``) → its latest-sessions and
learners topics, read back here and compared with ``emulator.sessions()``. The app runs
once per encoding while the sessions change under it, so its re-keying, its reducer and
its table aggregation (a session moving between statuses is subtracted and added) all
work on live data, not only on a backlog.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from connector.kafka.reader import Received, read_topic
from tests.fixtures.streams_app import BUILD_TIMEOUT_SECONDS, StreamsApp, StreamsAppProcess
from tests.support.connector_proc import wait_for
from tests.support.pipeline import AVRO_DIR, Pipeline

# A cold cache builds the app first (bounded by BUILD_TIMEOUT_SECONDS), inside the test's time.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(BUILD_TIMEOUT_SECONDS + 240)]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: the framing each encoding puts before the Avro body
FRAMING = {"single-object": b"\xc3\x01", "registry": b"\x00"}

#: one of the app's topics: the last JSON value per key, with its message
Output = dict[str, tuple[dict[str, Any], Received]]


def epoch_ms(iso: str | None) -> int | None:
    if iso is None:
        return None
    return (datetime.fromisoformat(iso) - EPOCH) // timedelta(milliseconds=1)


def number(value: Any) -> float | None:
    return None if value is None else float(value)


def truth_sessions(pipeline: Pipeline) -> dict[str, dict[str, Any]]:
    """Each session as the app's latest-sessions topic should show it."""
    return {
        s["session_id"]: {
            "user_id": s["user_id"],
            "activity_id": s["activity_id"],
            "status": s["status"],
            "score": number(s.get("score")),
            "max_score": number(s.get("max_score")),
            "dt_updated": epoch_ms(s.get("dt_updated")),
        }
        for s in pipeline.emulator.sessions()
    }


def truth_learners(sessions: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each learner's summary, computed here from the emulator's sessions."""
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for session in sessions.values():
        grouped[session["user_id"]].append(session)
    learners = {}
    for user_id, own in grouped.items():
        completed = [s for s in own if s["status"] == "Completed"]
        learners[user_id] = {
            "sessions": len(own),
            "completed_sessions": len(completed),
            "sessions_by_status": dict(Counter(s["status"] for s in own)),
            "completed_score": sum(s["score"] or 0.0 for s in completed),
            "completed_max_score": sum(s["max_score"] or 0.0 for s in completed),
        }
    return learners


def latest_by_key(pipeline: Pipeline, topic: str) -> Output:
    """The last committed JSON value per key of one of the app's (compacted) topics."""
    latest: Output = {}
    admin_config: dict[str, str | int | float | bool] = {**pipeline.kafka_config}
    if topic not in AdminClient(admin_config).list_topics(timeout=10).topics:
        return latest  # the app creates it once its JVM is up
    for message in read_topic(pipeline.kafka_config, topic, idle_timeout=1.0):
        assert message.key is not None and message.value is not None, message
        latest[message.key.decode()] = (json.loads(message.value), message)
    return latest


def session_problems(expected: dict[str, dict[str, Any]], out: Output) -> list[str]:
    problems = []
    for session_id, truth in expected.items():
        if session_id not in out:
            problems.append(f"session {session_id}: not in the output")
            continue
        value, message = out[session_id]
        got = {field: value[field] for field in truth}
        if got != truth:
            problems.append(f"session {session_id}: {got} != {truth}")
        elif message.timestamp_ms != truth["dt_updated"]:  # the event time, not the wall clock
            problems.append(
                f"session {session_id}: record time {message.timestamp_ms} != dt_updated"
            )
    problems.extend(f"session {s}: not in the emulator" for s in set(out) - set(expected))
    return problems


def learner_problems(expected: dict[str, dict[str, Any]], out: Output) -> list[str]:
    problems = []
    for user_id, truth in expected.items():
        value = out.get(user_id, ({}, None))[0]
        exact = ("sessions", "completed_sessions", "sessions_by_status")
        # The totals are doubles kept by adding and subtracting: equal up to rounding.
        if any(value.get(k) != truth[k] for k in exact) or not all(
            math.isclose(value.get(k, math.nan), truth[k], abs_tol=1e-9)
            for k in ("completed_score", "completed_max_score")
        ):
            problems.append(f"learner {user_id}: {value} != {truth}")
    problems.extend(f"learner {u}: no sessions in the emulator" for u in set(out) - set(expected))
    return problems


def start_app(
    streams_app: StreamsApp,
    pipeline: Pipeline,
    encoding: str,
    registry_url: str | None,
    work: Path,
) -> tuple[StreamsAppProcess, str, str]:
    sessions_topic = f"{pipeline.topic}.latest-sessions"
    learners_topic = f"{pipeline.topic}.learners"
    args = [
        "--bootstrap-servers",
        pipeline.env["KAFKA_BOOTSTRAP_SERVERS"],
        "--input-topic",
        pipeline.topic,
        "--sessions-topic",
        sessions_topic,
        "--learners-topic",
        learners_topic,
        "--encoding",
        encoding,
        "--schema-dir",
        str(AVRO_DIR),
        "--application-id",
        f"{pipeline.env['CONNECTOR_NAME']}-streams",
        "--state-dir",
        str(work / "streams-state"),
    ]
    if registry_url is not None:
        args += ["--registry-url", registry_url]
    process = streams_app.start(*args, log_file=work / "streams-app.log")
    return process, sessions_topic, learners_topic


@pytest.mark.parametrize("encoding", ["single-object", "registry"])
def test_kafka_streams_output_equals_the_truth(
    encoding: str,
    make_pipeline: Any,
    streams_app: StreamsApp,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    pipeline: Pipeline = make_pipeline(sessions=300, users=40)
    registry_url = None
    overrides = {}
    if encoding == "registry":  # the single-object run starts no registry
        registry_url = request.getfixturevalue("schema_registry").url
        overrides["SCHEMA_REGISTRY_URL"] = registry_url
    connector = pipeline.connector(**overrides)
    connector.wait_ready()  # the events topic exists: the app reads it from the start

    app, sessions_topic, learners_topic = start_app(
        streams_app, pipeline, encoding, registry_url, tmp_path
    )
    # Changes while the app runs: saves, submissions, scoring, discards, reopenings.
    for _ in range(3):
        pipeline.emulator.workload.step(150)
        pipeline.emulator.workload.create_sessions(10)

    sessions = truth_sessions(pipeline)
    learners = truth_learners(sessions)
    problems: list[str] = []

    def matches() -> bool:
        assert app.alive(), f"the app exited with {app.returncode}:\n{app.log_tail()}"
        assert connector.alive(), f"the connector exited:\n{pipeline.logs()}"
        problems[:] = session_problems(sessions, latest_by_key(pipeline, sessions_topic))
        problems.extend(learner_problems(learners, latest_by_key(pipeline, learners_topic)))
        return not problems

    try:
        wait_for(matches, 90, "the Kafka Streams app's output to equal the truth", interval=0.5)
    except AssertionError as failure:
        raise AssertionError(
            f"{failure}: {len(problems)} differences, e.g. {problems[:3]}\n"
            f"--- app log\n{app.log_tail()}\n{pipeline.logs()}"
        ) from None

    # Every event was counted once: the sessions' change counts add up to the topic.
    out = latest_by_key(pipeline, sessions_topic)
    events = list(read_topic(pipeline.kafka_config, pipeline.topic, idle_timeout=1.0))
    assert sum(value["changes"] for value, _ in out.values()) == len(events)
    assert len(events) > len(sessions)  # the live changes are in, not only the backlog
    # ...and the app really read the encoding under test
    assert {e.value[: len(FRAMING[encoding])] for e in events if e.value} == {FRAMING[encoding]}

    assert connector.terminate() == 0, pipeline.logs()
    assert app.stop() in (0, 143), app.log_tail()  # 143: SIGTERM, streams closed by the hook
