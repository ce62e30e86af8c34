"""The change detector: exactly the transitions between distinct states, in order."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.changes import ChangeDetector, SessionEntry, SessionState, fingerprint
from connector.changes import state as state_module
from connector.changes.state import iter_encoded
from connector.models import Change, ChangeKind, ScoreRecord

STATUSES = ["Incomplete", "Completed", "Pending Scoring", "Something New"]


def record(
    session: str = "s1", status: str = "Incomplete", score: Any = None, **more: Any
) -> dict[str, Any]:
    return {
        "session_id": session,
        "user_id": f"user-of-{session}",
        "activity_id": "act",
        "status": status,
        "score": score,
        "max_score": 10,
        **more,
    }


def committed(
    detector: ChangeDetector, state: SessionState, records: list[Any]
) -> list[Change[ScoreRecord]]:
    """Detect one batch and commit it (apply its updates), as the runner does."""
    result = detector.detect(records, state)
    state.apply(result.updates)
    return result.changes


def expected_transitions(records: list[dict[str, Any]]) -> list[tuple[ChangeKind, str | None]]:
    """The reference model: drop consecutive repeats, classify the rest."""
    out: list[tuple[ChangeKind, str | None]] = []
    previous: dict[str, Any] | None = None
    for rec in records:
        if previous is None:
            out.append((ChangeKind.CREATED, None))
        elif fingerprint(rec, False) == fingerprint(previous, False):
            continue
        elif rec["status"] != previous["status"]:
            out.append((ChangeKind.STATUS_CHANGED, previous["status"]))
        else:
            out.append((ChangeKind.SCORE_CHANGED, previous["status"]))
        previous = rec
    return out


SESSION_STATES = st.builds(
    record,
    st.just("s1"),
    st.sampled_from(STATUSES[:3]),
    st.sampled_from([None, 0, 5, 5.0, 7.5]),
    dt_saved=st.sampled_from(["t1", "t2", "t3"]),  # volatile: never a change on its own
)


@given(st.lists(SESSION_STATES, max_size=25))
def test_one_batch_yields_exactly_the_distinct_transitions(records: list[dict[str, Any]]) -> None:
    result = ChangeDetector().detect(records, SessionState())
    kinds = [(c.kind, c.previous_status) for c in result.changes]
    assert kinds == expected_transitions(records)
    assert result.repeats == len(records) - len(result.changes)
    assert [c.record.raw for c in result.changes] == [
        records[i] for i in _change_positions(records)
    ]


def _change_positions(records: list[dict[str, Any]]) -> list[int]:
    positions, last = [], None
    for i, rec in enumerate(records):
        fp = fingerprint(rec, False)
        if fp != last:
            positions.append(i)
        last = fp
    return positions


@settings(max_examples=150)
@given(st.lists(SESSION_STATES, max_size=25), st.lists(st.integers(0, 25), max_size=5))
def test_splitting_into_committed_batches_changes_nothing(
    records: list[dict[str, Any]], cuts: list[int]
) -> None:
    detector = ChangeDetector()
    whole = detector.detect(records, SessionState()).changes
    state = SessionState()
    bounds = sorted({0, len(records), *(c for c in cuts if c <= len(records))})
    pieces: list[Change[ScoreRecord]] = []
    for start, end in itertools.pairwise(bounds):
        pieces += committed(detector, state, records[start:end])
    assert pieces == whole  # same kinds, previous states and event ids


@settings(max_examples=150)
@given(st.lists(SESSION_STATES, max_size=25), st.integers(0, 25))
def test_pages_of_one_uncommitted_batch_see_each_other_through_pending(
    records: list[dict[str, Any]], cut: int
) -> None:
    detector = ChangeDetector()
    whole = detector.detect(records, SessionState()).changes
    state = SessionState()
    first = detector.detect(records[:cut], state)
    second = detector.detect(records[cut:], state, first.updates)
    assert first.changes + second.changes == whole
    assert len(state) == 0  # nothing applied: nothing was committed


@given(
    st.lists(
        st.builds(
            record,
            st.sampled_from(["a", "b", "c"]),
            st.sampled_from(STATUSES),
            st.sampled_from([None, 1, 2]),
        ),
        max_size=30,
    )
)
def test_interleaved_sessions_are_decided_independently(records: list[dict[str, Any]]) -> None:
    result = ChangeDetector().detect(records, SessionState())
    for session in ("a", "b", "c"):
        own = [r for r in records if r["session_id"] == session]
        changes = [c for c in result.changes if c.session_id == session]
        assert [(c.kind, c.previous_status) for c in changes] == expected_transitions(own)
        if own:
            last = own[-1]
            assert result.updates[session] == SessionEntry(
                fingerprint(last, False),
                last["status"],
                -1,  # no dt_updated
                None if last["score"] is None else float(last["score"]),
                10.0,
            )


def test_state_is_not_touched_until_the_caller_applies_updates() -> None:
    state = SessionState()
    state.apply({"s1": SessionEntry(fingerprint(record(score=1), False), "Incomplete")})
    result = ChangeDetector().detect([record(score=2), record("s2")], state)
    assert state.get("s1") == SessionEntry(fingerprint(record(score=1), False), "Incomplete")
    assert "s2" not in state
    assert [c.kind for c in result.changes] == [ChangeKind.SCORE_CHANGED, ChangeKind.CREATED]


def test_status_and_score_changing_together_is_a_status_change_with_new_scores() -> None:
    state = SessionState()
    committed(ChangeDetector(), state, [record(status="Incomplete", score=None)])
    (change,) = ChangeDetector().detect([record(status="Completed", score=9)], state).changes
    assert change.kind is ChangeKind.STATUS_CHANGED
    assert change.previous_status == "Incomplete"
    assert change.record.raw["score"] == 9


def test_a_repeat_against_committed_state_is_counted_and_dropped() -> None:
    state = SessionState()
    committed(ChangeDetector(), state, [record(score=3, dt_saved="t1")])
    result = ChangeDetector().detect([record(score=3.0, dt_saved="t2")], state)
    assert result.changes == [] and result.repeats == 1 and result.updates == {}


def test_invalid_records_are_set_aside_and_the_rest_goes_on() -> None:
    bad = [None, "text", {"session_id": "x"}, record(score="ten")]
    result = ChangeDetector().detect([bad[0], record(), *bad[1:], record("s2")], SessionState())
    assert [item for item, _ in result.invalid] == bad
    assert [error.reason for _, error in result.invalid] == [
        "not_an_object",
        "not_an_object",
        "missing_field",
        "wrong_type",
    ]
    assert [c.session_id for c in result.changes] == ["s1", "s2"]


def test_response_scores_count_when_the_detector_is_asked_to() -> None:
    one = record(responses=[{"response_id": "r", "score": 1}])
    two = record(responses=[{"response_id": "r", "score": 0}])
    assert (
        len(ChangeDetector(include_responses=False).detect([one, two], SessionState()).changes) == 1
    )
    with_responses = ChangeDetector(include_responses=True).detect([one, two], SessionState())
    assert [c.kind for c in with_responses.changes] == [
        ChangeKind.CREATED,
        ChangeKind.SCORE_CHANGED,
    ]


def test_change_fields() -> None:
    state = SessionState()
    (created,) = committed(ChangeDetector(), state, [record(score=1)])
    (changed,) = ChangeDetector().detect([record(score=2)], state).changes
    assert created.previous_fingerprint is None and created.previous_status is None
    assert changed.previous_fingerprint == created.fingerprint
    assert changed.user_id == "user-of-s1" and changed.session_id == "s1"
    assert changed.event_id != created.event_id


# --- updated times: stale records ----------------------------------------------------------
T1, T2, T3 = "2024-05-01T10:00:00.100Z", "2024-05-01T10:00:00.200Z", "2024-05-01T10:00:01.000Z"
T2_MS = 1_714_557_600_200


def test_a_record_older_than_the_published_one_is_stale_dropped_and_counted() -> None:
    """A slice may deliver an old version after the tail published a newer one."""
    state = SessionState()
    committed(ChangeDetector(), state, [record(score=2, dt_updated=T2)])
    result = ChangeDetector().detect([record(score=1, dt_updated=T1)], state)
    assert result.stale == 1 and result.changes == [] and result.updates == {}
    assert result.repeats == 0


def test_stale_records_are_told_within_a_batch_and_against_pending_pages() -> None:
    newer, older = record(score=2, dt_updated=T2), record(score=1, dt_updated=T1)
    one_batch = ChangeDetector().detect([newer, older], SessionState())
    assert [c.kind for c in one_batch.changes] == [ChangeKind.CREATED] and one_batch.stale == 1
    pending = ChangeDetector().detect([newer], SessionState()).updates
    later_page = ChangeDetector().detect([older], SessionState(), pending)
    assert later_page.stale == 1 and later_page.changes == []


def test_a_record_at_the_same_time_is_not_stale() -> None:
    state = SessionState()
    committed(ChangeDetector(), state, [record(score=1, dt_updated=T2)])
    result = ChangeDetector().detect([record(score=2, dt_updated=T2)], state)
    assert result.stale == 0 and [c.kind for c in result.changes] == [ChangeKind.SCORE_CHANGED]


def test_a_repeat_with_a_newer_time_moves_the_entrys_time_on() -> None:
    """Nothing is emitted, but the session's entry remembers how far it has come, so an
    older version read later is stale."""
    state = SessionState()
    committed(ChangeDetector(), state, [record(score=1, dt_updated=T1)])
    before = state.get("s1")
    assert before is not None
    result = ChangeDetector().detect([record(score=1, dt_updated=T2)], state)
    assert result.changes == [] and result.repeats == 1 and result.stale == 0
    assert result.updates == {"s1": before._replace(updated_ms=T2_MS)}
    state.apply(result.updates)
    assert ChangeDetector().detect([record(score=5, dt_updated=T1)], state).stale == 1


def test_a_repeat_with_an_older_time_is_stale_and_changes_nothing() -> None:
    state = SessionState()
    committed(ChangeDetector(), state, [record(score=1, dt_updated=T2)])
    result = ChangeDetector().detect([record(score=1, dt_updated=T1)], state)
    assert result.stale == 1 and result.repeats == 0 and result.updates == {}


def test_a_record_without_a_time_is_never_stale() -> None:
    state = SessionState()
    committed(ChangeDetector(), state, [record(score=1, dt_updated=T3)])
    changed = ChangeDetector().detect([record(score=2)], state)
    assert changed.stale == 0 and [c.kind for c in changed.changes] == [ChangeKind.SCORE_CHANGED]
    repeated = ChangeDetector().detect([record(score=1, dt_updated="not a time")], state)
    assert repeated.stale == 0 and repeated.repeats == 1 and repeated.updates == {}


def test_updates_carry_the_records_updated_time() -> None:
    result = ChangeDetector().detect([record(score=1, dt_updated=T2), record("s2")], SessionState())
    assert result.updates["s1"].updated_ms == T2_MS
    assert result.updates["s2"].updated_ms == -1  # no time: unknown


# --- previous scores: what the last published event of the session carried -----------------
def expected_previous_scores(
    records: list[dict[str, Any]],
) -> list[tuple[float | None, float | None]]:
    """The reference model: each change's previous scores are the last change's scores."""
    out: list[tuple[float | None, float | None]] = []
    published: dict[str, Any] | None = None
    for rec in records:
        if published is not None and fingerprint(rec, False) == fingerprint(published, False):
            continue
        if published is None:
            out.append((None, None))
        else:
            score, top = published["score"], published["max_score"]
            out.append((None if score is None else float(score), float(top)))
        published = rec
    return out


@given(st.lists(SESSION_STATES, max_size=25))
def test_each_change_carries_the_scores_of_the_last_published_one(
    records: list[dict[str, Any]],
) -> None:
    """In one batch; across committed batches (the scores then come back from the state)
    ``test_splitting_into_committed_batches_changes_nothing`` holds the changes equal,
    previous scores included."""
    changes = ChangeDetector().detect(records, SessionState()).changes
    previous = [(c.previous_score, c.previous_max_score) for c in changes]
    assert previous == expected_previous_scores(records)


def test_created_has_no_previous_scores_and_a_change_has_the_last_ones() -> None:
    state = SessionState()
    (created,) = committed(ChangeDetector(), state, [record(score=3, max_score=10)])
    assert (created.previous_score, created.previous_max_score) == (None, None)
    (changed,) = committed(ChangeDetector(), state, [record(score=7, max_score=12)])
    assert (changed.previous_score, changed.previous_max_score) == (3.0, 10.0)
    (unscored,) = committed(ChangeDetector(), state, [record(score=None, max_score=None)])
    assert (unscored.previous_score, unscored.previous_max_score) == (7.0, 12.0)
    (again,) = ChangeDetector().detect([record(score=1)], state).changes
    assert (again.previous_score, again.previous_max_score) == (None, None)  # it had none


def test_a_repeat_does_not_move_the_previous_scores() -> None:
    state = SessionState()
    committed(ChangeDetector(), state, [record(score=3, dt_updated=T1)])
    # the same state again, later: a repeat (only the time moves on)
    assert committed(ChangeDetector(), state, [record(score=3.0, dt_updated=T2)]) == []
    (changed,) = committed(ChangeDetector(), state, [record(score=4, dt_updated=T3)])
    assert (changed.previous_score, changed.previous_max_score) == (3.0, 10.0)


@pytest.mark.parametrize("way_in", ["restore_raw", "restore_entry"])
def test_previous_scores_survive_the_state_topic(way_in: str) -> None:
    """Committed, written as state entries, read back by a new instance: the next change
    still names the scores of the last event published."""
    before = SessionState()
    committed(ChangeDetector(), before, [record("a", score=3, max_score=10), record("b")])
    updates = {sid: before.get(sid) for sid in ("a", "b")}
    restored = SessionState()
    for key, value in iter_encoded(updates):
        if way_in == "restore_raw":
            restored.restore_raw(key, value)
        else:
            restored.restore_entry(*state_module.decode_entry(key, value))
    a, b = ChangeDetector().detect([record("a", score=5), record("b", score=1)], restored).changes
    assert (a.kind, a.previous_score, a.previous_max_score) == (ChangeKind.SCORE_CHANGED, 3.0, 10.0)
    assert (b.kind, b.previous_score, b.previous_max_score) == (
        ChangeKind.SCORE_CHANGED,
        None,
        10.0,
    )


# --- the id check: a session sharing another's in-memory key ----------------------------------
@pytest.mark.parametrize("restore", [False, True])
@pytest.mark.parametrize(
    ("when", "otherwise"), [(T3, "a repeat"), (T1, "stale")], ids=["same-time", "older"]
)
def test_a_session_colliding_with_another_is_created_never_dropped(
    monkeypatch: pytest.MonkeyPatch, restore: bool, when: str, otherwise: str
) -> None:
    """Two session ids forced to one ``SessionState`` key (a 64-bit hash() collision): the
    second is unseen, so it is published as created; without the id check it would be
    dropped as ``otherwise`` (the same content, so the same fingerprint; or older)."""
    monkeypatch.setattr(state_module, "session_key", lambda session_id: 7)
    state = SessionState()
    first = record("first", status="Completed", score=5, dt_updated=T3)
    if restore:  # the first came back from the state topic
        (entry,) = ChangeDetector().detect([first], state).updates.items()
        state.restore_raw(*state_module.encode_entry(*entry))
    else:
        committed(ChangeDetector(), state, [first])
    assert state.get("first") is not None
    second = {**first, "session_id": "second", "dt_updated": when}
    assert fingerprint(second, False) == fingerprint(first, False)  # the id is not in it
    result = ChangeDetector().detect([second], state)
    assert [(c.kind, c.session_id) for c in result.changes] == [(ChangeKind.CREATED, "second")]
    (change,) = result.changes
    assert change.previous_fingerprint is None and change.previous_status is None
    assert (change.previous_score, change.previous_max_score) == (None, None)
    assert result.repeats == 0 and result.stale == 0, otherwise
