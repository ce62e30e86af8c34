"""The workload, the store's index and the truth log, without HTTP."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.emulator import Emulator
from connector.emulator.cursor import decode_token, encode_token
from connector.emulator.persist import load_workload, save_workload
from connector.emulator.records import COMPLETED, INCOMPLETE, PENDING_SCORING
from connector.emulator.store import SessionStore, Window
from connector.emulator.truth import read_truth
from tests.fixtures.emulator import make_config


def fake_clock(start: float = 1_750_000_000.0, step: float = 0.25) -> Callable[[], float]:
    now = [start]

    def clock() -> float:
        now[0] += step
        return now[0]

    return clock


def make(clock: Callable[[], float] | None = None, **options: Any) -> Emulator:
    return Emulator(make_config(**options), clock=clock or fake_clock())


def content(record: dict[str, Any]) -> dict[str, Any]:
    """What matters in a record: everything but the times."""
    return {k: v for k, v in record.items() if not k.startswith("dt_")}


def test_same_seed_and_clock_give_the_same_history() -> None:
    runs = []
    for _ in range(2):
        em = make(fake_clock(), sessions=50, seed=9)
        em.workload.create_sessions(5)
        em.workload.step(200)
        runs.append(em.truth_records())
    assert runs[0] == runs[1]
    other = make(fake_clock(), sessions=50, seed=10)
    assert other.truth_records() != runs[0][:50]


def test_initial_sessions_are_sorted_unique_and_in_the_past() -> None:
    clock = fake_clock()
    em = make(clock, sessions=2000, history_days=3)
    states = list(em.store.sessions())
    times = [s.updated_us for s in states]
    assert times == sorted(times) and len(set(times)) == len(times)
    assert len({s.session_id for s in states}) == 2000
    now_us = clock() * 1e6
    assert now_us - 3.01 * 86_400e6 < times[0] < times[-1] < now_us
    assert all(s.started_us < s.updated_us for s in states)
    statuses = {s.status for s in states}
    assert statuses == {"Completed", "Incomplete", "Pending Scoring", "Discarded"}


def test_save_changes_only_the_times() -> None:
    em = make(sessions=0)
    created = em.workload.create()
    saved = em.workload.save(created.session_id)
    assert content(saved.to_record()) == content(created.to_record())
    assert saved.updated_us > created.updated_us
    assert saved.saved_us > created.saved_us
    assert created.superseded and not saved.superseded
    last = em.truth_records()[-1]
    assert (last["change"], last["content_changed"]) == ("saved", False)


def test_lifecycle_statuses_and_scores() -> None:
    em = make(sessions=0)
    w = em.workload
    created = w.create()
    assert created.status == INCOMPLETE and created.score is None
    assert all(s["score"] is None for s in created.to_record()["subscores"])

    pending = w.submit(created.session_id, pending=True)
    assert pending.status == PENDING_SCORING and pending.score is None
    assert any(s["score"] is None for s in pending.to_record()["subscores"])
    assert pending.completed_us is not None

    scored = w.finish_scoring(created.session_id)
    assert scored.status == COMPLETED and scored.score is not None
    assert all(s["score"] is not None for s in scored.to_record()["subscores"])

    rescored = w.rescore(created.session_id)
    assert rescored.status == COMPLETED
    assert rescored.marks != scored.marks

    discarded = w.discard(created.session_id)
    assert discarded.status == "Discarded"
    reopened = w.reopen(w.submit(w.create().session_id, pending=False).session_id)
    assert reopened.status == INCOMPLETE

    changes = [(t["change"], t["previous_status"], t["status"]) for t in em.truth_records()]
    assert changes[:5] == [
        ("created", None, INCOMPLETE),
        ("submitted", INCOMPLETE, PENDING_SCORING),
        ("scored", PENDING_SCORING, COMPLETED),
        ("rescored", COMPLETED, COMPLETED),
        ("discarded", COMPLETED, "Discarded"),
    ]


def test_step_mixes_every_kind_of_change() -> None:
    em = make(sessions=300)
    em.workload.create_sessions(50)
    em.workload.step(2000)
    kinds = {t["change"] for t in em.truth_records()}
    assert kinds == {
        "created",
        "saved",
        "submitted",
        "scored",
        "rescored",
        "discarded",
        "reopened",
    }


def test_every_change_gets_a_strictly_later_time_even_with_a_frozen_clock() -> None:
    em = make(lambda: 1_750_000_000.0, sessions=10)
    before = em.store.last_us
    states = em.workload.step(100)
    times = [s.updated_us for s in states]
    assert times == sorted(times) and len(set(times)) == 100 and times[0] > before


def test_advance_applies_the_configured_rates() -> None:
    em = make(sessions=20, new_sessions_per_second=10, changes_per_second=40)
    seq = em.truth.seq
    assert em.workload.advance(0.05) == 2  # 0.5 new, 2 changes
    assert em.workload.advance(0.05) == 3  # the half session is carried over
    assert em.truth.seq == seq + 5


def test_truth_file_matches_memory(tmp_path: Path) -> None:
    path = tmp_path / "truth.jsonl"
    em = make(sessions=30, truth_path=str(path))
    em.workload.step(40)
    em.truth.flush()
    assert read_truth(path) == em.truth_records()
    since = em.truth.seq
    em.workload.create()
    assert [r["change"] for r in em.truth_records(since)] == ["created"]
    initial = [r for r in em.truth_records() if r.get("initial")]
    assert len(initial) == 30


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    em = make(sessions=100, seed=4)
    em.workload.step(50)
    path = tmp_path / "workload.jsonl"
    save_workload(path, em.store.sessions())
    loaded = make(sessions=0, load_path=str(path))
    assert loaded.sessions(True) == em.sessions(True)
    loaded.workload.step(20)  # a loaded workload lives on


def test_load_keeps_unknown_fields_and_orders_by_time(tmp_path: Path) -> None:
    path = tmp_path / "w.jsonl"
    base = {
        "user_id": "u1",
        "activity_id": "chem",
        "status": "Completed",
        "score": 1.5,
        "max_score": 2,
        "subscores": [
            {
                "id": "s1",
                "title": "Stöchiometrie",
                "num_questions": 2,
                "num_attempted": 2,
                "score": 1.5,
                "max_score": 2,
                "attempted_max_score": 2,
                "items": ["i1", "i2"],
            }
        ],
        "dt_started": "2024-01-01T00:00:00Z",
        "dt_saved": "2024-01-01T00:10:00Z",
        "dt_completed": "2024-01-01T00:10:00Z",
        "grade": "B",
    }
    lines = [
        {**base, "session_id": "b", "dt_updated": "2024-01-01T00:10:00.000Z"},
        {**base, "session_id": "a", "dt_updated": "2024-01-01T00:10:00.000Z"},
    ]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    states = load_workload(path)
    assert [s.session_id for s in states] == ["a", "b"]
    assert states[0].updated_us < states[1].updated_us
    record = states[0].to_record()
    assert record["grade"] == "B"
    assert content(record) == content({**base, "session_id": "a"})


def test_token_round_trip() -> None:
    assert decode_token(encode_token(1_387_312_240_001_410)) == 1_387_312_240_001_410
    assert encode_token(1_387_312_240_001_410) == "1387312240.001410"
    assert decode_token("1387312240.1410") is None
    assert decode_token("abc") is None


@settings(max_examples=60, deadline=None)
@given(
    initial=st.integers(0, 40),
    updates=st.lists(st.integers(0, 1000), max_size=120),
    limit=st.integers(1, 7),
    cut=st.integers(0, 200),
)
def test_store_pages_see_each_session_once_in_order(
    initial: int, updates: list[int], limit: int, cut: int
) -> None:
    """Paging from any position returns exactly the sessions updated after it, in order,
    however many versions the index holds (and across compactions)."""
    em = make(lambda: 1_750_000_000.0, sessions=initial)
    store: SessionStore = em.store
    w = em.workload
    ids = [s.session_id for s in store.sessions()] or [w.create().session_id]
    store.compact_min_stale = 4
    position = store.last_us
    for n, pick in enumerate(updates):
        if n == cut:
            position = store.last_us
        if pick % 7 == 0:
            ids.append(w.create().session_id)
        else:
            w.save(ids[pick % len(ids)])
    if cut >= len(updates):
        position = store.last_us

    expected = [s.session_id for s in store.sessions() if s.updated_us > position]
    seen: list[str] = []
    token = position
    while True:
        states = store.page(Window(position_us=token), limit)
        if not states:
            break
        seen.extend(s.session_id for s in states)
        token = states[-1].updated_us
    assert seen == expected
    everything = store.page(Window(), 10**6)
    assert [s.session_id for s in everything] == [s.session_id for s in store.sessions()]
    assert len(everything) == len(store)


def test_compaction_drops_superseded_entries() -> None:
    em = make(lambda: 1_750_000_000.0, sessions=10)
    em.store.compact_min_stale = 16
    ids = [s.session_id for s in em.store.sessions()]
    for _ in range(30):
        for session_id in ids:
            em.workload.save(session_id)
    assert em.store.index_size < 10 * 31
    em.store.compact()
    assert em.store.index_size == 10


@pytest.mark.parametrize("bad", ["users", "activities"])
def test_a_workload_needs_users_and_activities(bad: str) -> None:
    with pytest.raises(ValueError, match="at least one"):
        make(None, **{bad: 0})


def test_cached_json_is_the_record_encoded() -> None:
    """The fast encoder writes exactly what encoding the record dict would."""
    em = make(sessions=400, seed=12)
    em.workload.create_sessions(20)
    em.workload.step(400)
    for state in em.store.sessions():
        for responses in (False, True):
            assert json.loads(state.json(responses)) == state.to_record(responses)
            assert (
                state.json(responses)
                == json.dumps(
                    state.to_record(responses), ensure_ascii=False, separators=(",", ":")
                ).encode()
            )
