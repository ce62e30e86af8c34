"""Issue 14 end to end: what the Data API sends cannot stop the pipeline.

Emulator (with faults) → connector process → the real broker, checked by independent
readers. Each test makes its changes itself and waits for Kafka or the metrics to show
them (no sleeps); the connector must never exit.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from connector.emulator.faults import FaultConfig
from connector.emulator.service import Emulator
from connector.kafka.reader import read_topic
from tests.support.connector_proc import ConnectorProcess, wait_for
from tests.support.pipeline import (
    Landed,
    Pipeline,
    assert_stream_is_clean,
    mismatched_sessions,
    read_events,
)

pytestmark = pytest.mark.integration

#: each malformed kind of the emulator and the dead-letter reason it must get
POISON_REASONS = {
    "non_utf8": "invalid_value",  # user_id: the validator's "not UTF-8" path
    "lone_surrogate": "invalid_value",  # status: the walk over every value
    "nan": "invalid_value",  # score: the validator's "not a finite number" path
    "overflow": "invalid_value",  # max_score 1e400
    "nested": "too_deep",  # 1,000 deep: orjson reads the page, the event mapping refuses
    "nested_past_limit": "too_deep",  # 1,100 deep: orjson refuses the page
}
#: what a poisoned record's bytes hold, as served (the dead letter keeps them)
POISON_BYTES = {
    "non_utf8": b'\xc3("',
    "lone_surrogate": b"\\ud83d",
    "nan": b"NaN",
    "overflow": b"1e400",
    "nested": b"[" * 1000,
    "nested_past_limit": b"[" * 1100,
}
METRIC = "learnosity_connector_"


def faults_served(emulator: Emulator, fault: str) -> list[dict[str, Any]]:
    return [t for t in emulator.truth_records() if t["kind"] == "fault" and t["fault"] == fault]


def converged_but_for(pipeline: Pipeline, allowed: set[str]) -> tuple[bool, Landed]:
    landed = read_events(pipeline.kafka_config, pipeline.topic, idle=1.0)
    return set(mismatched_sessions(pipeline.emulator, landed)) <= allowed, landed


def test_poison_records_mixed_into_good_pages(make_pipeline) -> None:  # type: ignore[no-untyped-def]
    """Every good record arrives, every bad one is a dead letter with its reason, and the
    process never exits. Before: a field 1,000 deep was a RecursionError in the fetch
    process (exit 1 on every restart), and the other kinds made their whole page invalid
    JSON, retried forever with /readyz 200."""
    every_kind = tuple(POISON_REASONS)
    pipeline = make_pipeline(
        sessions=300, faults=FaultConfig(malformed_rate=1.0, malformed_kinds=every_kind)
    )
    emulator = pipeline.emulator
    # off while the connector starts: its probes (one record, to check the credentials and
    # find the earliest record) read records they do not process, poisoned or not
    emulator.faults.enabled = False
    connector = pipeline.connector()
    connector.wait_ready()
    pipeline.converge()
    emulator.faults.enabled = True

    def all_dead_lettered() -> bool:
        served = len(faults_served(emulator, "malformed"))
        return bool(connector.metric(f"{METRIC}dead_letters_total") == served > 0)

    # every page of live changes holds one bad record among good ones: each kind in
    # turn, then any kind
    for kinds in [*((kind,) for kind in every_kind), every_kind]:
        emulator.faults.config = FaultConfig(malformed_rate=1.0, malformed_kinds=kinds)
        before = len(faults_served(emulator, "malformed"))
        emulator.workload.step(60 * len(kinds))
        wait_for(
            lambda before=before: (  # type: ignore[misc]
                len(faults_served(emulator, "malformed")) > before and all_dead_lettered()
            ),
            60,
            f"a {'/'.join(kinds)} record served and dead-lettered",
        )
    assert connector.alive(), pipeline.logs()

    # every good record arrived: the only sessions whose last state is missing are those
    # whose last version was served poisoned
    poisoned = faults_served(emulator, "malformed")
    poisoned_ids = {f["session_id"] for f in poisoned}
    box: list[Landed] = []

    def good_ones_arrived() -> bool:
        done, landed = converged_but_for(pipeline, poisoned_ids)
        box[:] = [landed]
        return done

    wait_for(good_ones_arrived, 60, "every good record in the topic", interval=0.5)
    assert_stream_is_clean(box[0])

    # every bad one is a dead letter with its reason, as served
    dead = list(read_topic(pipeline.kafka_config, f"{pipeline.topic}.dlq", idle_timeout=1.0))
    assert len(dead) == len(poisoned) == connector.metric(f"{METRIC}dead_letters_total")
    reasons = Counter(dict(d.headers)["error.reason"].decode() for d in dead)
    assert reasons == Counter(POISON_REASONS[f["how"]] for f in poisoned)
    assert {f["how"] for f in poisoned} == set(every_kind)
    by_key: dict[bytes | None, list[bytes]] = {}
    for letter in dead:
        by_key.setdefault(letter.key, []).append(letter.value or b"")
    for fault in poisoned:
        sid = fault["session_id"].encode()
        # 1,100 deep is never parsed: no session id to key it by
        values = by_key[None if fault["how"] == "nested_past_limit" else sid]
        assert any(POISON_BYTES[fault["how"]] in v and sid in v for v in values), (
            f"no dead letter holds the {fault['how']} record of {fault['session_id']}"
        )

    # the poisoned sessions' next versions (served clean) arrive too: nothing is stuck
    emulator.faults.enabled = False
    for session_id in poisoned_ids:
        emulator.workload.save(session_id)
    landed = pipeline.converge(timeout=60)
    assert_stream_is_clean(landed)
    assert connector.get("/readyz")[0] == 200
    assert connector.alive(), pipeline.logs()
    assert connector.terminate() == 0, pipeline.logs()


def _fetch_process(connector: ConnectorProcess) -> int:
    """The pid of the connector's fetch process (multiprocessing's spawned child)."""
    assert connector.process is not None
    root = connector.process.pid
    for task in Path(f"/proc/{root}/task").iterdir():
        for child in (task / "children").read_text().split():
            command = Path(f"/proc/{child}/cmdline").read_bytes()
            if b"spawn_main" in command:
                return int(child)
    raise AssertionError("no fetch process")


def _peak_mib(pid: int) -> float:
    """The peak resident size of ``pid`` so far (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for {pid}")


RECORD_PADDING = 400_000  # bytes per record: 20 MB a page of 50, an event of 0.4 MB
MAX_RESPONSE_BYTES = 2_000_000
#: what the fetch process may grow by reading oversized records, over reading small ones.
#: Measured: about 16 MiB with the 2 MB bound (pages of 3 records, 2 workers); 57 MiB
#: when the 20 MB pages are read whole (the bound at its 64 MiB default)
GROWTH_MIB = 30


def _oversized_run(make_pipeline: Any, padding: int) -> tuple[Pipeline, ConnectorProcess]:
    """80 sessions, each record served ``padding`` bytes larger, read to the end."""
    pipeline = make_pipeline(
        sessions=80, faults=FaultConfig(oversized_rate=1.0, oversized_bytes=padding)
    )
    connector = pipeline.connector(
        LEARNOSITY_MAX_RESPONSE_BYTES=str(MAX_RESPONSE_BYTES), LEARNOSITY_MAX_CONCURRENCY="2"
    )
    connector.wait_ready()
    landed = pipeline.converge(timeout=120)
    assert_stream_is_clean(landed)
    assert all(len(json.loads(e["extra_fields_json"])["padding"]) == padding for e in landed.events)
    return pipeline, connector


def test_a_page_too_large_is_refused_and_asked_again_smaller(make_pipeline) -> None:  # type: ignore[no-untyped-def]
    """Every record is 0.4 MB: a page of 50 would be 20 MB. The transport stops reading at
    LEARNOSITY_MAX_RESPONSE_BYTES (2 MB), the client halves the limit until a page fits
    (3 records), says so in a warning line, and every session arrives; the fetch process
    never holds a whole page. Before the bound: a 40 MB page took the fetch process to
    194 MB."""
    small, baseline = _oversized_run(make_pipeline, 10)
    baseline_mib = _peak_mib(_fetch_process(baseline))
    assert baseline.terminate() == 0, small.logs()

    pipeline, connector = _oversized_run(make_pipeline, RECORD_PADDING)
    grown = _peak_mib(_fetch_process(connector)) - baseline_mib
    warnings = [
        json.loads(line)
        for line in connector.log_path.read_text(errors="replace").splitlines()
        if "response too large" in line
    ]
    assert warnings, pipeline.logs()
    assert {w["level"] for w in warnings} == {"warning"}
    limits = sorted({(w["limit"], w["new_limit"]) for w in warnings}, reverse=True)
    assert limits[0] == (50, 25), limits
    assert limits[-1][1] * RECORD_PADDING < MAX_RESPONSE_BYTES, limits
    assert grown < GROWTH_MIB, f"the fetch process grew {grown:.0f} MiB"
    assert connector.alive(), pipeline.logs()
    assert connector.terminate() == 0, pipeline.logs()


def test_a_frozen_cursor_is_detected_and_recovered(make_pipeline) -> None:  # type: ignore[no-untyped-def]
    """The token comes back unchanged while the records differ (only dt_saved moves).
    Before: 598 requests in 30 s with the same token, stalled_cursor_total 0, no warning."""
    pipeline = make_pipeline(
        sessions=300, faults=FaultConfig(frozen_cursor_rate=0.3, frozen_cursor_length=5)
    )
    connector = pipeline.connector()
    connector.wait_ready()
    pipeline.emulator.workload.step(300)
    landed = pipeline.converge(timeout=120)  # every session still arrives
    assert_stream_is_clean(landed)
    assert pipeline.emulator.stats()["faults"].get("frozen_cursor", 0) > 0
    wait_for(
        lambda: connector.metric(f"{METRIC}stalled_cursor_total") > 0,
        30,
        "stalled_cursor_total to count the frozen cursor",
    )
    log = connector.log_path.read_text(errors="replace")
    stalled = [json.loads(x) for x in log.splitlines() if "stalled cursor" in x]
    assert stalled and all(s["level"] == "warning" for s in stalled), pipeline.logs()
    assert connector.alive(), pipeline.logs()
    assert connector.terminate() == 0, pipeline.logs()
