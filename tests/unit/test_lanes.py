"""A lane: one ``next`` cursor, its requests, how a page moves it, and its state entry."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.catchup.lanes import (
    OVERLAP_SECONDS,
    TAIL_ID,
    TAIL_KEY,
    Lane,
    LaneFormatError,
    Step,
    is_lane_key,
    lane_id,
    newest,
    unplanned_tail,
)
from connector.models import Page

BASE: dict[str, Any] = {"sort": "asc", "limit": 3, "status": ["Completed"]}


def page(count: int, token: str | None = "t1", limit: int = 3) -> Page:
    """A page of ``count`` placeholder records (their times are passed to ``advance``)."""
    return Page(tuple({"n": n} for n in range(count)), token if count else None, limit=limit)


def slice_lane(**changes: Any) -> Lane:
    """A slice responsible for [1000, 1100], asking with maxtime 1101."""
    return Lane(**{"id": "s1", "lo": 1000, "hi": 1101, "end": 1100, **changes})


# --- params ------------------------------------------------------------------------------
def test_a_tail_asks_from_its_start_until_it_has_a_token() -> None:
    """A tail sends mintime only before its first token; with a token, only the token."""
    assert Lane(TAIL_ID, lo=500).params(BASE) == {**BASE, "mintime": 500}
    assert Lane(TAIL_ID, lo=500, token="abc").params(BASE) == {**BASE, "next": "abc"}
    assert Lane(TAIL_ID).params(BASE) == BASE  # from the earliest


def test_a_slice_always_sends_its_window_and_its_token_when_it_has_one() -> None:
    """``next`` is always sent with the filters it was issued for (mintime and maxtime)."""
    assert slice_lane().params(BASE) == {**BASE, "mintime": 1000, "maxtime": 1101}
    assert slice_lane(token="x", end=1050).params(BASE) == {
        **BASE,
        "mintime": 1000,
        "maxtime": 1101,
        "next": "x",
    }


def test_params_leave_the_base_alone() -> None:
    base = dict(BASE)
    slice_lane(token="x").params(base)
    assert base == BASE


# --- advance -----------------------------------------------------------------------------
def test_an_empty_page_leaves_the_tail_as_it_is_and_catches_it_up() -> None:
    tail = Lane(TAIL_ID, lo=10, token="t0", position=12.5, records=4, seq=7)
    assert tail.advance(page(0), None) == (tail, Step.CAUGHT_UP)


def test_an_empty_page_finishes_a_slice() -> None:
    lane = slice_lane(token="t0", seq=2)
    moved, step = lane.advance(page(0), None)
    assert step is Step.DONE and moved.done and moved.seq == 3
    assert moved.token == "t0"  # an empty page carries no token: the old one is kept


def test_a_partial_page_finishes_a_slice_and_catches_the_tail_up() -> None:
    moved, step = slice_lane().advance(page(2, "t1"), 1010.5)
    assert step is Step.DONE and moved.done
    assert (moved.token, moved.position, moved.records, moved.seq) == ("t1", 1010.5, 2, 1)
    tail, tail_step = Lane(TAIL_ID, lo=5).advance(page(2, "t1"), 9.0)
    assert tail_step is Step.CAUGHT_UP and not tail.done
    assert (tail.token, tail.position, tail.records, tail.seq) == ("t1", 9.0, 2, 1)


@pytest.mark.parametrize("lane", [slice_lane(), Lane(TAIL_ID, lo=5)], ids=["slice", "tail"])
def test_a_full_page_moves_the_lane_and_asks_for_more(lane: Lane) -> None:
    moved, step = lane.advance(page(3, "t1"), 1020.25)
    assert step is Step.MORE and not moved.done
    assert (moved.token, moved.position, moved.records, moved.seq) == ("t1", 1020.25, 3, 1)
    again, _ = moved.advance(page(3, "t2"), 1030.0)
    assert (again.token, again.position, again.records, again.seq) == ("t2", 1030.0, 6, 2)


def test_a_page_without_times_keeps_the_last_position() -> None:
    moved, step = slice_lane(position=1005.0, token="t0").advance(page(3, "t1"), None)
    assert step is Step.MORE and moved.position == 1005.0 and moved.token == "t1"


@pytest.mark.parametrize(
    ("position", "step"),
    [(1100.999, Step.MORE), (1101.0, Step.DONE), (1101.5, Step.DONE)],
)
def test_a_slice_is_done_once_a_full_page_reaches_the_second_after_its_end(
    position: float, step: Step
) -> None:
    moved, got = slice_lane().advance(page(3, "t1"), position)
    assert got is step and moved.done is (step is Step.DONE)


def test_a_lowered_end_finishes_a_slice_earlier() -> None:
    """A split lowers ``end`` and leaves ``hi``: the slice stops at the new end."""
    moved, step = slice_lane(end=1050).advance(page(3, "t1"), 1051.0)
    assert step is Step.DONE and moved.hi == 1101


@pytest.mark.parametrize("lane", [slice_lane(token="t0"), Lane(TAIL_ID, token="t0")])
def test_the_same_token_back_on_a_page_with_records_is_a_stall(lane: Lane) -> None:
    assert lane.advance(page(3, "t0"), 1020.0) == (lane, Step.STALLED)
    assert lane.advance(page(2, None), 1020.0) == (lane, Step.STALLED)  # no token: not moved


def test_a_restart_drops_the_token_and_asks_from_a_second_before_its_position() -> None:
    lane = slice_lane(token="stuck", position=1042.7, records=9, seq=4)
    again = lane.restarted()
    assert again.token is None and again.lo == 1042 - OVERLAP_SECONDS
    assert (again.hi, again.end, again.records, again.position) == (1101, 1100, 9, 1042.7)
    assert again.seq == 5
    assert again.params(BASE) == {**BASE, "mintime": 1041, "maxtime": 1101}


def test_a_restart_before_any_position_asks_from_the_start_again() -> None:
    again = Lane(TAIL_ID, lo=77, token="stuck").restarted()
    assert again.token is None and again.lo == 77 and again.params({}) == {"mintime": 77}


# --- properties --------------------------------------------------------------------------
def test_reached_started_and_key() -> None:
    assert slice_lane().reached == 1000.0 and slice_lane(position=1003.5).reached == 1003.5
    assert Lane(TAIL_ID).reached == 0.0
    assert not slice_lane().started
    assert slice_lane(token="t").started and slice_lane(records=1).started
    assert Lane(TAIL_ID).key == TAIL_KEY == b"cursor"
    assert slice_lane(id="s42").key == b"slice:s42"
    assert is_lane_key(b"cursor") and is_lane_key(b"slice:s1") and not is_lane_key(b"s:abc")
    assert lane_id(b"cursor") == TAIL_ID and lane_id(b"slice:s42") == "s42"


def test_an_unplanned_tail_starts_from_the_given_second_or_the_earliest() -> None:
    start = datetime(2024, 3, 1, 12, 0, 30, 900_000, tzinfo=UTC)
    tail = unplanned_tail(start)
    assert tail.is_tail and not tail.planned and tail.lo == int(start.timestamp())
    assert unplanned_tail(None) == Lane(TAIL_ID, lo=None, planned=False)


def test_newest_is_the_version_with_the_higher_seq_whatever_the_order() -> None:
    old, new = slice_lane(seq=3), slice_lane(seq=4, position=1001.0)
    assert newest(None, old) is old
    assert newest(old, new) is new and newest(new, old) is new


# --- the state topic ---------------------------------------------------------------------
SECONDS = st.integers(-(2**40), 2**40)
LANES = st.builds(
    Lane,
    id=st.one_of(st.just(TAIL_ID), st.text(min_size=1, max_size=12)),
    lo=st.none() | SECONDS,
    hi=st.none() | SECONDS,
    end=st.none() | SECONDS,
    token=st.none() | st.text(max_size=30),
    position=st.none() | st.floats(allow_nan=False, allow_infinity=False),
    records=st.integers(0, 2**53),
    seq=st.integers(0, 2**53),
    done=st.booleans(),
    planned=st.booleans(),
)


@given(LANES)
def test_a_lane_round_trips_through_its_entry(lane: Lane) -> None:
    value = lane.encode()
    if lane.done and not lane.is_tail:
        assert value is None  # a finished slice is a tombstone
    else:
        assert value is not None
        assert Lane.decode(lane.key, value) == lane


def test_a_finished_tail_is_still_an_entry() -> None:
    assert Lane(TAIL_ID, done=True).encode() is not None
    assert slice_lane(done=True).encode() is None


def test_the_entry_is_compact_json_with_its_format() -> None:
    value = slice_lane(token="t").encode()
    assert value is not None and b" " not in value
    assert json.loads(value)["v"] == 1


@pytest.mark.parametrize(
    "value",
    [
        b'{"v":2,"id":"s1"}',
        b'{"id":"s1"}',
        b'{"v":"1","id":"s1"}',
    ],
)
def test_another_lane_format_is_refused_with_the_remedy(value: bytes) -> None:
    with pytest.raises(LaneFormatError, match="reset"):
        Lane.decode(b"slice:s1", value)


@pytest.mark.parametrize(
    "value",
    [b"not json", b"\xff\xfe", b"[1,2]", b"5", b"null", b'{"v":1,"id":"s1","colour":"red"}'],
)
def test_what_is_not_a_lane_is_refused(value: bytes) -> None:
    with pytest.raises(LaneFormatError, match="slice:s1"):
        Lane.decode(b"slice:s1", value)
