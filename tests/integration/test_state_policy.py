"""What the connector does with a state topic it cannot fully read (issue 14, item 4).

A damaged or foreign session entry is skipped (that session published again as
created) and shown by ``status``; an entry of a newer format stops ``run`` and
``status`` with one line naming the remedy; ``reset --forget-state`` is that remedy.
"""

from __future__ import annotations

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from tests.fixtures.pipeline import MakePipeline
from tests.integration.test_commands import command, status
from tests.support.pipeline import Pipeline

pytestmark = pytest.mark.integration


def write_state(pipeline: Pipeline, *entries: tuple[bytes, bytes]) -> None:
    """Entries written into the state topic from outside, as damage would be."""
    producer = Producer(pipeline.kafka_config)
    for key, value in entries:
        producer.produce(pipeline.env["CONNECTOR_NAME"] + ".state", value, key)
    assert producer.flush(30) == 0


def test_a_state_no_start_can_read_is_reported_and_recovered(make_pipeline: MakePipeline) -> None:
    pipeline = make_pipeline(sessions=60)
    pipeline.env["LEARNOSITY_MAX_CONCURRENCY"] = "1"
    first = pipeline.connector()
    first.wait_ready()
    before = pipeline.converge()
    assert first.terminate() == 0, pipeline.logs()
    damaged = pipeline.emulator.sessions()[0]["session_id"]
    write_state(pipeline, (b"s:" + damaged.encode(), b"\x02short"), (b"foreign", b"x"))

    summary = status(pipeline)
    assert summary["unreadable_entries"] == 2, summary
    assert any(damaged in example for example in summary["unreadable_examples"]), summary

    second = pipeline.connector()  # starts: the damaged session is forgotten, not fatal
    second.wait_ready()
    pipeline.emulator.workload.submit(damaged)
    after = pipeline.converge()
    assert len(after.events) > len(before.events)
    assert second.terminate() == 0, pipeline.logs()

    write_state(pipeline, (b"s:" + damaged.encode(), b"\x09" + bytes(40)))
    for args in (("run",), ("status",)):
        done = command(pipeline.env, *args)
        assert done.returncode == 1, done.stderr
        last = done.stderr.strip().splitlines()[-1]
        assert "newer connector" in last and "reset" in last, done.stderr
        assert "Traceback" not in done.stderr

    reset = command(pipeline.env, "reset", "--to", "earliest", "--forget-state")
    assert reset.returncode == 0, reset.stderr
    assert "forgotten" in reset.stdout
    assert status(pipeline)["sessions_tracked"] == 0
    third = pipeline.connector()
    third.wait_ready()
    pipeline.converge()
    assert third.alive() and third.terminate() == 0, pipeline.logs()


def test_a_state_topic_of_the_wrong_layout_is_refused_before_anything_is_done(
    make_pipeline: MakePipeline,
) -> None:
    """A state topic with 3 partitions was accepted silently; a deleting one too."""
    pipeline = make_pipeline(sessions=10)
    state = pipeline.env["CONNECTOR_NAME"] + ".state"
    admin = AdminClient(dict[str, str | int | float | bool](pipeline.kafka_config))
    for future in admin.create_topics([NewTopic(state, 3, 1)]).values():
        future.result(30)
    done = command(pipeline.env, "run")
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert "has 3 partitions; it must have exactly 1" in last, done.stderr
    assert pipeline.topic not in admin.list_topics(timeout=30).topics  # nothing created
