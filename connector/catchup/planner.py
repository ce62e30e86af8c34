"""Where the slices go, which running slice to split, and how long the rest will take. Pure.

    plan        an unplanned tail, or a tail that fell behind, and the time now: either
                nothing to slice (a gap one cursor closes quickly, or one cursor allowed),
                or slices covering the gap with the tail moved to now
    pick_split  the slice with the most work left, cut in two at the middle of what it
                has not read yet, so idle workers get work until the very end
    remaining   an estimate of the records left, from each slice's density so far

Slices cover ``[lo, end]`` and neighbours overlap by ``OVERLAP_SECONDS`` (see ``lanes``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Final

from connector.catchup.lanes import OVERLAP_SECONDS, TAIL_ID, Lane

#: a slice narrower than this is never cut again (a dense second cannot be split)
MIN_SPAN_SECONDS: Final = 4
#: a slice with fewer records than this left is not worth a split (two pages)
MIN_SPLIT_RECORDS: Final = 100
#: initial slices per worker: a little more than one, so an early empty one frees a worker
SLICES_PER_WORKER: Final = 2


@dataclass(frozen=True)
class Plan:
    tail: Lane
    slices: tuple[Lane, ...] = ()


def slice_ids(used: Iterable[str]) -> Iterable[str]:
    """Fresh slice ids, never one in ``used``."""
    taken = set(used)
    return (f"s{n}" for n in itertools.count(1) if f"s{n}" not in taken)


def plan(
    tail: Lane,
    *,
    now: int,
    earliest: float | None,
    workers: int,
    lag_seconds: float,
    ids: Iterable[str],
) -> Plan:
    """Slices for the gap between the tail's start (or position) and ``now``.

    ``earliest`` is the updated time of the first record (for a tail from the earliest);
    None when there is no record at all. ``ids`` yields fresh slice ids.
    """
    if tail.planned and tail.position is not None:
        start = math.floor(tail.position) - OVERLAP_SECONDS
    elif tail.lo is not None:
        start = tail.lo
    elif earliest is not None:
        start = math.floor(earliest) - OVERLAP_SECONDS
    else:  # nothing to read yet: the tail starts from the earliest, whenever it comes
        return Plan(replace(tail, planned=True, seq=tail.seq + 1))
    gap = now - start
    if workers <= 1 or gap <= lag_seconds or gap < 2 * MIN_SPAN_SECONDS:
        # one cursor closes this gap soon enough: the tail reads it as it is
        kept = tail if tail.planned else replace(tail, lo=start, planned=True, seq=tail.seq + 1)
        return Plan(kept)
    count = max(1, min(workers * SLICES_PER_WORKER, gap // MIN_SPAN_SECONDS))
    bounds = [start + (gap * i) // count for i in range(count + 1)]
    ids = iter(ids)
    slices = tuple(
        Lane(next(ids), lo=lo, hi=end + OVERLAP_SECONDS, end=end)
        for lo, end in itertools.pairwise(bounds)
    )
    moved = Lane(TAIL_ID, lo=now - OVERLAP_SECONDS, seq=tail.seq + 1)
    return Plan(moved, slices)


def density(lane: Lane) -> float | None:
    """Records per second of updated time this slice has shown so far."""
    if lane.position is None or lane.lo is None or lane.records == 0:
        return None
    return lane.records / max(1.0, lane.position - lane.lo)


def left(lane: Lane, default_density: float | None) -> float:
    """The records this slice still has to read, estimated; its seconds left if unknown."""
    end = lane.end if lane.end is not None else lane.hi
    if end is None:
        return 0.0
    span = max(0.0, end + OVERLAP_SECONDS - lane.reached)
    rate = density(lane) or default_density
    return span * rate if rate is not None else span


def average_density(lanes: Iterable[Lane]) -> float | None:
    records = seconds = 0.0
    for lane in lanes:
        if density(lane) is not None:
            assert lane.position is not None and lane.lo is not None
            records += lane.records
            seconds += max(1.0, lane.position - lane.lo)
    return records / seconds if seconds else None


def remaining(slices: Sequence[Lane], prior: float | None = None) -> float:
    """Records the unfinished slices still have to read, estimated from their density so
    far, else ``prior`` (the finished slices'); 0 with no density at all."""
    average = average_density(slices) or prior
    if average is None:
        return 0.0
    return sum(left(lane, average) for lane in slices if not lane.done)


def pick_split(slices: Sequence[Lane], new_id: str) -> tuple[Lane, Lane] | None:
    """Cut the slice with the most work left in two: (it, lowered; the new one), or None."""
    average = average_density(slices)
    best: tuple[float, Lane] | None = None
    for lane in slices:
        if lane.done or lane.end is None or lane.lo is None:
            continue
        from_second = math.floor(lane.reached)
        if lane.end - from_second < 2 * MIN_SPAN_SECONDS:
            continue
        work = left(lane, average)
        if average is not None and work < MIN_SPLIT_RECORDS:
            continue
        if best is None or work > best[0]:
            best = (work, lane)
    if best is None:
        return None
    lane = best[1]
    assert lane.end is not None
    middle = (math.floor(lane.reached) + lane.end) // 2
    lowered = replace(lane, end=middle, seq=lane.seq + 1)
    upper = Lane(new_id, lo=middle, hi=lane.end + OVERLAP_SECONDS, end=lane.end)
    return lowered, upper
