"""The change detector: exactly the transitions between distinct states, in order."""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from connector.changes import ChangeDetector, SessionEntry, SessionState, fingerprint
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
            assert result.updates[session] == SessionEntry(fingerprint(last, False), last["status"])


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
