"""The fetch side's scheduler: worker threads page many lanes at once, under one budget.

    lanes       the tail and the slices (``catchup.lanes``), as this side has read them
    workers     up to ``LEARNOSITY_MAX_CONCURRENCY`` threads; ``target()`` of them work,
                sized from the request budget and the measured latency (Little's law:
                requests in flight = rate x latency), so the budget, not the latency,
                sets the pace. They share one Data API client: one budget, one 429 pause.
    take        the tail first when it is due (it has priority on the budget too), then
                a slice that is not in flight, started ones first; with none left, a
                running slice is split (``planner.pick_split``) so no worker idles while
                work remains
    hand over   each page is prepared (``changes.prepare``) and handed over with its
                lane's new version; a lane is taken again only after its page was
                handed over, so one lane's pages arrive in order

Nothing here is committed: the runner commits lanes with the events they produced and,
after an abort, ``rewind`` puts back the committed lanes under a new generation (the
runner drops whatever an older generation still hands over).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from connector.catchup import planner
from connector.catchup.lanes import TAIL_ID, Lane, Step
from connector.changes.event import TAIL_LANE
from connector.changes.prepare import PagePreparer, page_position
from connector.errors import ConnectorError, FatalError, ShutdownRequested
from connector.models import Page, PreparedPage

log = logging.getLogger(__name__)

#: workers beyond the measured need, for the jitter of latencies
HEADROOM = 1.25
#: workers before any latency is known
INITIAL_WORKERS = 8
#: weight of the newest sample in the latency average
LATENCY_WEIGHT = 0.1


@dataclass(frozen=True)
class Fetched:
    """What the fetch side hands over: lane versions, with a page or an error."""

    generation: int
    lanes: tuple[Lane, ...] = ()
    page: PreparedPage | None = None
    step: Step | None = None
    error: BaseException | None = None


@dataclass(frozen=True)
class CrawlStats:
    in_flight: int
    workers: int
    latency_seconds: float | None


Send = Callable[[Fetched], None]


class PageClient(Protocol):
    """What the workers share (``learnosity.client.DataApiClient``): thread-safe, one
    request budget and one 429 pause for all."""

    def fetch(self, params: dict[str, Any], *, priority: bool = False) -> Page: ...


def lane_source(base: Mapping[str, Any], lane: Lane) -> dict[str, Any]:
    """The source block of the events ``lane`` reads: which lane, backfill or live."""
    name = TAIL_LANE if lane.is_tail else f"slice:{lane.id}"
    return {**base, "lane": name, "backfill": not lane.is_tail}


class Crawl:
    def __init__(
        self,
        client: PageClient,
        *,
        base_params: dict[str, Any],
        prepare: PagePreparer,
        source: Mapping[str, Any],
        send: Send,
        stop: threading.Event,
        max_workers: int,
        rate: float,
        poll_interval: float,
        lag_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._base = base_params
        self._prepare = prepare
        #: the events' source block; each lane's names it (``lane_source``)
        self._source = source
        self._send = send
        self._stop = stop
        self._max_workers = max_workers
        self._rate = rate
        self._poll_interval = poll_interval
        self._lag_seconds = lag_seconds
        self._clock = clock
        self._cond = threading.Condition()
        self._generation = 0
        self._lanes: dict[str, Lane] = {}
        #: every lane id this process has seen: a new slice never takes a finished one's
        #: id (versions of one id are ordered by seq; a reused id would mix two slices)
        self._ids: set[str] = set()
        #: an error was handed over: nothing more of this generation (the runner stops
        #: or rewinds)
        self._failed = False
        self._in_flight: set[str] = set()
        self._tail_due = 0.0
        self._latency: float | None = None
        self._threads: list[threading.Thread] = []

    # --- control (the runner's messages) ------------------------------------------------
    def rewind(self, lanes: tuple[Lane, ...], generation: int | None = None) -> None:
        """Start over from ``lanes`` (the committed ones) under a new generation."""
        with self._cond:
            self._generation = self._generation + 1 if generation is None else generation
            self._lanes = {lane.id: lane for lane in lanes if not lane.done}
            self._ids.update(self._lanes)
            self._failed = False
            self._in_flight.clear()
            self._tail_due = 0.0
            self._cond.notify_all()

    def start(self, lanes: tuple[Lane, ...]) -> None:
        self.rewind(lanes, generation=0)
        for index in range(self._max_workers):
            thread = threading.Thread(
                target=self._work, args=(index,), name=f"fetch-{index}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def stats(self) -> CrawlStats:
        with self._cond:
            return CrawlStats(len(self._in_flight), self.target(), self._latency)

    def observed_latency(self, seconds: float) -> None:
        """A request's round trip (the client's observer reports it)."""
        with self._cond:
            if self._latency is None:
                self._latency = seconds
            else:
                self._latency += LATENCY_WEIGHT * (seconds - self._latency)

    def target(self) -> int:
        """Workers that may work now: enough to keep the budget's rate in flight."""
        if self._latency is None:
            wanted = INITIAL_WORKERS
        else:
            wanted = math.ceil(self._rate * self._latency * HEADROOM) + 1
        return max(1, min(self._max_workers, wanted))

    # --- the workers --------------------------------------------------------------------
    def _work(self, index: int) -> None:
        while not self._stop.is_set():
            task = self._take(index)
            if task is None:
                continue
            generation, lane = task
            try:
                self._run(generation, lane)
            except ShutdownRequested:
                return
            except Exception as exc:  # noqa: BLE001 - handed to the runner, which stops
                error = (
                    exc
                    if isinstance(exc, ConnectorError)
                    else FatalError(f"the fetch side failed: {exc!r}"[:1000])
                )
                self._send(Fetched(generation, error=error))
                self._stop_lanes(generation)
            finally:
                with self._cond:
                    if generation == self._generation:
                        self._in_flight.discard(lane.id)
                    self._cond.notify_all()

    def _stop_lanes(self, generation: int) -> None:
        """After an error: nothing more of this generation (the runner stops or rewinds)."""
        with self._cond:
            if generation == self._generation:
                self._failed = True
                self._lanes.clear()

    def _take(self, index: int) -> tuple[int, Lane] | None:
        announce: tuple[Lane, ...] = ()
        with self._cond:
            while True:
                if self._stop.is_set():
                    return None
                if index < self.target():
                    lane, announce = self._choose()
                    if lane is not None:
                        self._in_flight.add(lane.id)
                        generation = self._generation
                        break
                self._cond.wait(self._wait_time())
        if announce:  # a split: handed over before the new slice's first page
            self._send(Fetched(generation, announce))
        return generation, lane

    def _wait_time(self) -> float:
        due = self._tail_due - self._clock()
        return min(1.0, max(0.01, due)) if due > 0 else 1.0

    def _choose(self) -> tuple[Lane | None, tuple[Lane, ...]]:
        """The next lane to page, and lanes a split changed (under the lock)."""
        tail = self._lanes.get(TAIL_ID)
        if tail is not None and TAIL_ID not in self._in_flight and self._clock() >= self._tail_due:
            return tail, ()
        if tail is not None and not tail.planned:
            return None, ()  # nothing else until the plan is made
        waiting = [
            lane
            for lane in self._lanes.values()
            if not lane.is_tail and lane.id not in self._in_flight
        ]
        if waiting:
            return min(waiting, key=lambda lane: (not lane.started, lane.lo or 0)), ()
        return self._split()

    def _split(self) -> tuple[Lane | None, tuple[Lane, ...]]:
        """Every slice is in flight: cut the one with the most work left."""
        slices = [lane for lane in self._lanes.values() if not lane.is_tail]
        if not slices:
            return None, ()
        cut = planner.pick_split(slices, next(iter(planner.slice_ids(self._ids))))
        if cut is None:
            return None, ()
        lowered, upper = cut
        self._lanes[lowered.id] = lowered
        self._ids.add(upper.id)
        self._lanes[upper.id] = upper
        log.debug("slice split", extra={"slice": lowered.id, "new": upper.id, "at": upper.lo})
        return upper, cut

    def _run(self, generation: int, lane: Lane) -> None:
        if not lane.planned:
            self._plan(generation, lane)
            return
        page = self._client.fetch(lane.params(self._base), priority=lane.is_tail)
        position = page_position(page)
        with self._cond:
            if generation != self._generation or self._failed:
                return  # rewound while the request was in flight, or failed
            current = self._lanes.get(lane.id, lane)
            moved, step = current.advance(page, position)
            extra: tuple[Lane, ...] = ()
            if step is Step.STALLED:
                log.warning(
                    "stalled cursor: the token did not move; asking again from its position",
                    extra={"lane": lane.id, "cursor": current.token},
                )
                moved = current.restarted()
            elif moved.is_tail and step is Step.MORE:
                moved, extra = self._replan_if_behind(moved)
            if moved.done:
                self._lanes.pop(moved.id, None)
            else:
                self._lanes[moved.id] = moved
            self._lanes.update((lane.id, lane) for lane in extra)
            self._ids.update(lane.id for lane in extra)
            if moved.is_tail and step in (Step.CAUGHT_UP, Step.STALLED):
                self._tail_due = self._clock() + self._poll_interval
        prepared = (
            self._prepare(page, lane_source(self._source, lane))
            if step is not Step.STALLED
            else None
        )
        self._send(Fetched(generation, (moved, *extra), prepared, step))

    def _replan_if_behind(self, tail: Lane) -> tuple[Lane, tuple[Lane, ...]]:
        """A tail too far behind has its gap cut into slices and moves to now."""
        now = math.floor(self._clock())
        if tail.position is None or now - tail.position <= self._lag_seconds:
            return tail, ()
        made = planner.plan(
            tail,
            now=now,
            earliest=None,
            workers=self._max_workers,
            lag_seconds=self._lag_seconds,
            ids=planner.slice_ids(self._ids),
        )
        if made.slices:
            log.info(
                "the tail fell behind: its gap is read in slices",
                extra={"slices": len(made.slices), "from": tail.position},
            )
        return made.tail, made.slices

    def _plan(self, generation: int, tail: Lane) -> None:
        earliest = None
        if tail.lo is None:  # from the earliest record: ask for it
            first = self._client.fetch({**self._base, "limit": 1})
            earliest = page_position(first)
            if earliest is None and first.records:
                earliest = 0.0  # records without times: read everything in slices from 0
        made = planner.plan(
            tail,
            now=math.floor(self._clock()),
            earliest=earliest,
            workers=self._max_workers,
            lag_seconds=self._lag_seconds,
            ids=planner.slice_ids(self._ids),
        )
        with self._cond:
            if generation != self._generation:
                return
            self._lanes[TAIL_ID] = made.tail
            self._lanes.update((lane.id, lane) for lane in made.slices)
            self._ids.update(lane.id for lane in made.slices)
        log.info(
            "catch-up planned",
            extra={
                "slices": len(made.slices),
                "from": made.slices[0].lo if made.slices else made.tail.lo,
                "tail_from": made.tail.lo,
            },
        )
        self._send(Fetched(generation, (made.tail, *made.slices)))
