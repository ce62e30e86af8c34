"""The planner: slices that cover a gap without a hole, splits, and the estimate of the rest."""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from connector.catchup.lanes import OVERLAP_SECONDS, TAIL_ID, Lane
from connector.catchup.planner import (
    MIN_SPAN_SECONDS,
    MIN_SPLIT_RECORDS,
    SLICES_PER_WORKER,
    Plan,
    density,
    pick_split,
    plan,
    remaining,
    slice_ids,
)

NOW = 1_700_000_000


def planned(tail: Lane, **options: Any) -> Plan:
    """``plan`` with the defaults of these tests: 8 workers, 60 s lag, ids s1, s2, ..."""
    arguments: dict[str, Any] = {
        "now": NOW,
        "earliest": None,
        "workers": 8,
        "lag_seconds": 60.0,
        "ids": slice_ids(()),
        **options,
    }
    return plan(tail, **arguments)


def slice_of(lo: int, end: int, **changes: Any) -> Lane:
    """A slice responsible for [lo, end], asking with maxtime end + OVERLAP_SECONDS."""
    return Lane(**{"id": "s1", "lo": lo, "hi": end + OVERLAP_SECONDS, "end": end, **changes})


def assert_covers(made: Plan, start: int, now: int, tail_seq: int, used: set[str]) -> None:
    """The slices cover [start, now] without a gap, then the tail takes over from now."""
    slices = made.slices
    assert slices, "a gap this wide is sliced"
    assert slices[0].lo == start and slices[-1].end == now
    for lane in slices:
        assert lane.lo is not None and lane.end is not None
        assert lane.hi == lane.end + OVERLAP_SECONDS  # the request's maxtime
        assert lane.end - lane.lo >= MIN_SPAN_SECONDS
        assert not lane.is_tail and not lane.started and not lane.done and lane.seq == 0
    for before, after in itertools.pairwise(slices):
        assert before.end is not None and before.hi is not None and after.lo is not None
        assert after.lo == before.end  # no gap between [lo, end] windows
        assert before.hi - after.lo == OVERLAP_SECONDS  # the requests overlap by a second
    ids = [lane.id for lane in slices]
    assert len(set(ids)) == len(ids) and not set(ids) & used
    assert made.tail.is_tail and made.tail.planned and made.tail.token is None
    assert made.tail.lo == now - OVERLAP_SECONDS and made.tail.seq > tail_seq


# --- plan: nothing to slice --------------------------------------------------------------
def test_one_worker_never_slices_and_the_tail_gets_its_start() -> None:
    made = planned(Lane(TAIL_ID, lo=NOW - 86_400, planned=False, seq=3), workers=1)
    assert made.slices == ()
    assert made.tail == Lane(TAIL_ID, lo=NOW - 86_400, planned=True, seq=4)


def test_a_gap_under_the_lag_is_read_by_the_tail_itself() -> None:
    made = planned(Lane(TAIL_ID, lo=NOW - 60, planned=False), lag_seconds=60.0)
    assert made == Plan(Lane(TAIL_ID, lo=NOW - 60, planned=True, seq=1))


def test_a_planned_tail_close_to_now_is_kept_as_it_is() -> None:
    tail = Lane(TAIL_ID, lo=NOW - 3_600, token="t", position=NOW - 10.5, records=5, seq=9)
    assert planned(tail) == Plan(tail)


def test_a_tail_from_the_earliest_without_any_record_is_only_marked_planned() -> None:
    made = planned(Lane(TAIL_ID, planned=False, seq=2), earliest=None)
    assert made == Plan(Lane(TAIL_ID, lo=None, planned=True, seq=3))


def test_a_tail_from_the_earliest_starts_a_second_before_the_first_record() -> None:
    made = planned(Lane(TAIL_ID, planned=False), earliest=NOW - 30.7, lag_seconds=60.0)
    assert made == Plan(Lane(TAIL_ID, lo=NOW - 31 - OVERLAP_SECONDS, planned=True, seq=1))


# --- plan: slices ------------------------------------------------------------------------
@given(
    start=st.integers(0, 4_000_000_000),
    gap=st.integers(2 * MIN_SPAN_SECONDS, 50 * 365 * 86_400),
    workers=st.integers(2, 64),
    lag_fraction=st.floats(0, 0.999),
    seq=st.integers(0, 1_000),
    used=st.sets(st.sampled_from([f"s{n}" for n in range(1, 40)]), max_size=20),
)
def test_slices_cover_the_gap_of_a_tail_with_a_start(
    start: int, gap: int, workers: int, lag_fraction: float, seq: int, used: set[str]
) -> None:
    """From a start time: slices from it to now, the tail moved to now."""
    now = start + gap
    tail = Lane(TAIL_ID, lo=start, planned=False, seq=seq)
    made = plan(
        tail,
        now=now,
        earliest=None,
        workers=workers,
        lag_seconds=gap * lag_fraction,
        ids=slice_ids(used | {TAIL_ID}),
    )
    assert_covers(made, start, now, seq, used)
    assert len(made.slices) <= workers * SLICES_PER_WORKER


@given(
    position=st.floats(1_000, 2_000_000_000),
    gap=st.integers(2 * MIN_SPAN_SECONDS + 2, 10_000_000),
    workers=st.integers(2, 16),
    seq=st.integers(0, 1_000),
)
def test_slices_cover_the_gap_of_a_tail_that_fell_behind(
    position: float, gap: int, workers: int, seq: int
) -> None:
    """From the tail's position (less a second): its gap up to now is sliced."""
    start = int(position) - OVERLAP_SECONDS
    now = start + gap
    tail = Lane(TAIL_ID, lo=0, token="t", position=position, records=50, seq=seq)
    made = plan(tail, now=now, earliest=None, workers=workers, lag_seconds=0, ids=slice_ids(()))
    assert_covers(made, start, now, seq, set())


@given(earliest=st.floats(0, 2_000_000_000), gap=st.integers(10, 10_000_000))
def test_slices_cover_the_gap_of_a_tail_from_the_earliest(earliest: float, gap: int) -> None:
    start = int(earliest) - OVERLAP_SECONDS
    made = planned(Lane(TAIL_ID, planned=False), now=start + gap, earliest=earliest, lag_seconds=0)
    assert_covers(made, start, start + gap, 0, set())


def test_slices_per_worker_and_never_narrower_than_the_minimum_span() -> None:
    wide = planned(Lane(TAIL_ID, lo=NOW - 86_400, planned=False), workers=4)
    assert len(wide.slices) == 4 * SLICES_PER_WORKER
    narrow = planned(Lane(TAIL_ID, lo=NOW - 12, planned=False), workers=8, lag_seconds=0)
    assert len(narrow.slices) == 12 // MIN_SPAN_SECONDS


def test_slice_ids_skip_the_used_ones() -> None:
    assert list(itertools.islice(slice_ids({"s1", "s3", TAIL_ID}), 3)) == ["s2", "s4", "s5"]


# --- density and remaining ---------------------------------------------------------------
def test_density_is_records_per_second_read_so_far() -> None:
    assert density(slice_of(1000, 2000, records=0, position=1500.0)) is None
    assert density(slice_of(1000, 2000, records=10)) is None  # no position yet
    assert density(slice_of(1000, 2000, records=100, position=1050.0)) == 2.0
    assert density(slice_of(1000, 2000, records=5, position=1000.2)) == 5.0  # at least 1 s


def test_remaining_estimates_each_unfinished_slice_from_its_density_or_the_average() -> None:
    read = slice_of(1000, 1999, records=100, position=1100.0)  # 1/s, 900 s left
    fresh = slice_of(2000, 2999, id="s2")  # unknown: the average, 1/s over 1000 s
    finished = slice_of(3000, 3999, id="s3", records=100, position=3100.0, done=True)
    assert remaining([read, fresh]) == pytest.approx(900 + 1000)
    assert remaining([read, fresh, finished]) == pytest.approx(900 + 1000)
    assert remaining([fresh]) == 0.0  # no density known yet: no estimate
    assert remaining([fresh], 0.5) == pytest.approx(500)  # the finished slices' density
    assert remaining([read, fresh], 0.5) == pytest.approx(900 + 1000)  # their own first
    assert remaining([]) == 0.0


# --- pick_split --------------------------------------------------------------------------
def test_split_cuts_the_busiest_slice_at_the_middle_of_its_unread_part() -> None:
    """The slice with the most records left (its density times its unread span) is cut."""
    sparse = slice_of(0, 100_000, id="s1", records=150, position=1_000.0)  # wide, thin: ~15k left
    dense = slice_of(200_000, 201_000, id="s2", records=10_000, position=200_100.4)  # ~90k left
    cut = pick_split([sparse, dense], "s3")
    assert cut is not None
    lowered, upper = cut
    middle = (200_100 + 201_000) // 2
    # its end lowered; hi, the request's maxtime, never changes
    assert lowered == replace(dense, end=middle, seq=1)
    assert upper == Lane("s3", lo=middle, hi=201_000 + OVERLAP_SECONDS, end=201_000)
    assert upper.lo == lowered.end and upper.end == dense.end


def test_split_by_span_while_no_density_is_known() -> None:
    short, long = slice_of(0, 100, id="s1"), slice_of(1_000, 3_000, id="s2", token="t")
    cut = pick_split([short, long], "s9")
    assert cut is not None and cut[0].id == "s2" and cut[1].lo == 2_000


@pytest.mark.parametrize(
    ("lane", "splits"),
    [
        (slice_of(0, 2 * MIN_SPAN_SECONDS - 1), False),
        (slice_of(0, 2 * MIN_SPAN_SECONDS), True),
        (slice_of(0, 1_000, position=1_000 - 2 * MIN_SPAN_SECONDS + 1.5), False),
        (slice_of(0, 1_000, done=True), False),
        (Lane(TAIL_ID, lo=0), False),
    ],
    ids=["too-narrow", "just-wide-enough", "too-little-unread", "done", "tail"],
)
def test_split_refuses_what_is_too_narrow_to_cut(lane: Lane, splits: bool) -> None:
    assert (pick_split([lane], "s2") is not None) is splits


def test_split_refuses_a_slice_with_too_few_records_left() -> None:
    """At 0.1 records/s, 999 s hold fewer than MIN_SPLIT_RECORDS records: not worth it."""
    few = slice_of(0, 1_998, records=100, position=1_000.0)
    assert pick_split([few], "s2") is None
    many = slice_of(0, 1_998, records=MIN_SPLIT_RECORDS * 10, position=1_000.0)
    assert pick_split([many], "s2") is not None


@given(
    lo=st.integers(0, 10**9),
    width=st.integers(2 * MIN_SPAN_SECONDS, 10**7),
    read=st.floats(0, 1),
    records=st.integers(0, 10**6),
)
def test_a_split_leaves_both_halves_covering_the_unread_part(
    lo: int, width: int, read: float, records: int
) -> None:
    """Whatever was read: the lowered slice and the new one overlap and reach the old end."""
    end = lo + width
    position = lo + read * width if records else None
    lane = slice_of(lo, end, records=records, position=position, token="t" if records else None)
    cut = pick_split([lane], "new")
    assume(cut is not None)
    assert cut is not None
    lowered, upper = cut
    assert lowered.end is not None and upper.lo is not None and upper.end is not None
    assert upper.lo == lowered.end and upper.end == end and upper.hi == lane.hi
    assert lowered.hi == lane.hi and lowered.lo == lane.lo and lowered.token == lane.token
    assert lowered.end - int(lane.reached) >= MIN_SPAN_SECONDS
    assert upper.end - upper.lo >= MIN_SPAN_SECONDS
    assert lowered.seq == lane.seq + 1 and upper.seq == 0 and not upper.started
