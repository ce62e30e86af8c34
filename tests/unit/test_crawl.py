"""The crawl: worker threads paging the tail and slices of updated time, against a fake API.

``FakeDataApi`` serves an in-memory list of records the way ``/sessions/scores`` does
(``connector/emulator``): in (updated time, session id) order, ``mintime``/``maxtime`` as
inclusive whole seconds, ``next`` as "strictly after this position", at most ``limit``
records, no token on an empty page. It counts the requests in flight at once.

Every wait is bounded (``Collector.wait_for``); every crawl is stopped and joined.
"""

from __future__ import annotations

import bisect
import math
import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from connector.catchup.crawl import HEADROOM, INITIAL_WORKERS, LATENCY_WEIGHT, Crawl, Fetched
from connector.catchup.lanes import OVERLAP_SECONDS, TAIL_ID, Lane, Step, unplanned_tail
from connector.changes.event import source_fields
from connector.changes.prepare import PagePreparer
from connector.checkpoint import Checkpoint
from connector.errors import SourceFatalError
from connector.kafka.serde import BodyEncoder
from connector.learnosity.client import DataApiClient
from connector.models import EventSource, Page
from tests.support.records import documented_record

pytestmark = pytest.mark.timeout(60)

DAY_MS = 86_400_000
#: the first record's updated time (ms); the data spans three days from it
FIRST_MS = 1_700_000_000_000
LAST_MS = FIRST_MS + 3 * DAY_MS
#: the crawl's clock: ten minutes after the last record
NOW = (LAST_MS + 600_000) / 1000
#: how long a test waits for the crawl to get somewhere, at the most
WAIT_SECONDS = 30.0


def iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def make_records(count: int, *, recent_share: float, seed: int = 7) -> list[dict[str, Any]]:
    """``count`` sessions over three days, ``recent_share`` of them in the last hour."""
    rng = random.Random(seed)
    recent = int(count * recent_share)
    times = [rng.randrange(FIRST_MS, LAST_MS - 3_600_000) for _ in range(count - recent)]
    times += [rng.randrange(LAST_MS - 3_600_000, LAST_MS + 1) for _ in range(recent)]
    times[0] = FIRST_MS  # a record at each end of the span
    times[-1] = LAST_MS
    return [
        documented_record(
            session_id=f"session-{n:05d}",
            user_id=f"user-{n % 97}",
            dt_updated=iso_ms(ms),
        )
        for n, ms in enumerate(times)
    ]


def updated_ms(record: dict[str, Any]) -> int:
    return round(datetime.fromisoformat(record["dt_updated"]).timestamp() * 1000)


class FakeDataApi:
    """``/sessions/scores`` over ``records``; thread-safe; counts requests in flight.

    ``fail_at``: that request (1 for the first) is refused (``SourceFatalError``), and
    from its start every other answer is held until ``release`` is set, so a test sees
    what the crawl does with the answers in flight at the error, deterministically.
    ``stall_from``: the first request from that one on that continues a slice (``next``
    and ``maxtime``) gets the page that ended at its token again, token and all.
    """

    def __init__(
        self,
        records: Sequence[dict[str, Any]],
        *,
        latency: float = 0.0,
        fail_at: int | None = None,
        stall_from: int | None = None,
    ) -> None:
        keyed = sorted((updated_ms(r), r["session_id"], r) for r in records)
        self._keys = [(ms, session_id) for ms, session_id, _ in keyed]
        self._records = [record for _, _, record in keyed]
        self._latency = latency
        self._fail_at = fail_at
        self._failing = False
        self._stall_from = stall_from
        self.stalled: dict[str, Any] | None = None
        self.release = threading.Event()
        #: (params, priority) of every request, in the order they were made
        self.log: list[tuple[dict[str, Any], bool]] = []
        self._asking: Counter[tuple[tuple[str, Any], ...]] = Counter()
        #: requests made while the very same request was in flight (one lane, two workers)
        self.twins = 0
        self._lock = threading.Lock()
        self.requests = 0
        self.in_flight = 0
        self.most_in_flight = 0

    def fetch(
        self, params: dict[str, Any], *, priority: bool = False, max_attempts: int | None = None
    ) -> Page:
        with self._lock:
            self.requests += 1
            self.log.append((dict(params), priority))
            asked = tuple(sorted(params.items()))
            self.twins += self._asking[asked] > 0
            self._asking[asked] += 1
            refuse = self.requests == self._fail_at
            self._failing = self._failing or refuse
            stall = self._stalls(params)
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self._latency:
                time.sleep(self._latency)
            if refuse:
                raise SourceFatalError("10001: refused", 10001)
            if self._failing:
                self.release.wait(WAIT_SECONDS)
            return self._again(params) if stall else self._page(params)
        finally:
            with self._lock:
                self.in_flight -= 1
                self._asking[asked] -= 1

    def _stalls(self, params: dict[str, Any]) -> bool:
        """Whether to stall this request (under the lock)."""
        if self._stall_from is None or self.stalled is not None:
            return False
        if self.requests < self._stall_from or "next" not in params or "maxtime" not in params:
            return False
        self.stalled = dict(params)
        return True

    def _again(self, params: dict[str, Any]) -> Page:
        """The page that ended at ``params["next"]``, as a stalled service repeats it."""
        limit = int(params["limit"])
        after_ms, _, after_session = str(params["next"]).partition(":")
        stop = bisect.bisect_right(self._keys, (int(after_ms), after_session))
        records = tuple(self._records[max(0, stop - limit) : stop])
        return Page(records, params["next"], limit=limit)

    def _page(self, params: dict[str, Any]) -> Page:
        assert params.get("sort") == "asc"
        limit = int(params["limit"])
        first = bisect.bisect_left(self._keys, (int(params.get("mintime", -(2**40))) * 1000, ""))
        if "next" in params:
            after_ms, _, after_session = str(params["next"]).partition(":")
            first = max(first, bisect.bisect_right(self._keys, (int(after_ms), after_session)))
        stop = len(self._keys)
        if "maxtime" in params:
            stop = bisect.bisect_left(self._keys, ((int(params["maxtime"]) + 1) * 1000, ""))
        chosen = range(first, min(stop, first + limit))
        token = None
        if chosen:
            ms, session_id = self._keys[chosen[-1]]
            token = f"{ms}:{session_id}"
        return Page(tuple(self._records[i] for i in chosen), token, limit=limit)


class Collector:
    """The crawl's ``send``: keeps every item; waits, bounded, for what the test needs."""

    def __init__(self, delay: Callable[[Fetched], float] | None = None) -> None:
        self.items: list[Fetched] = []
        self._cond = threading.Condition()
        self._delay = delay

    def __call__(self, item: Fetched) -> None:
        if self._delay is not None and (seconds := self._delay(item)):
            time.sleep(seconds)  # a slow hand-over (a full pipe, a thread descheduled)
        with self._cond:
            self.items.append(item)
            self._cond.notify_all()

    def wait_for(
        self, what: Callable[[list[Fetched]], bool], timeout: float = WAIT_SECONDS
    ) -> list[Fetched]:
        """The items once ``what`` holds for them: checked at each item and every 20 ms
        (``what`` may look at the crawl too), for ``timeout`` seconds at the most."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not (reached := what(self.items)) and time.monotonic() < deadline:
                self._cond.wait(min(0.02, max(0.0, deadline - time.monotonic())))
            items = list(self.items)
        assert reached, f"not reached in {timeout} s; {len(items)} items, the last: " + "; ".join(
            summary(item) for item in items[-5:]
        )
        return items

    def quiet_for(self, seconds: float) -> list[Fetched]:
        """The items once ``seconds`` have passed (for "nothing more arrives")."""
        with self._cond:
            self._cond.wait_for(lambda: False, seconds)
            return list(self.items)


def summary(item: Fetched) -> str:
    lanes = ", ".join(f"{lane.id}@{lane.seq}{'/done' if lane.done else ''}" for lane in item.lanes)
    page = f"{item.page.fetched} records" if item.page is not None else "no page"
    return f"gen {item.generation} [{lanes}] {page} {item.step} {item.error!r}"


@dataclass
class Run:
    crawl: Crawl
    api: FakeDataApi
    sent: Collector
    records: list[dict[str, Any]] = field(default_factory=list)


def new_crawl(
    api: FakeDataApi, send: Callable[[Fetched], None], stop: threading.Event, **options: Any
) -> Crawl:
    """A crawl over ``api`` (not started): 50 records a page, the clock at ``NOW``."""
    source = source_fields(EventSource("test", "v2025.2.LTS", "0.0.0"))
    preparer = PagePreparer(
        include_responses=False, encode_body=BodyEncoder().encode, source=source
    )
    arguments: dict[str, Any] = {
        "base_params": {"sort": "asc", "limit": 50},
        "prepare": preparer,
        "source": source,
        "send": send,
        "stop": stop,
        "max_workers": 8,
        "rate": 50.0,
        "poll_interval": 3_600.0,  # a caught-up tail waits: the crawl goes quiet
        "lag_seconds": 60.0,
        "clock": lambda: NOW,
        **options,
    }
    return Crawl(cast(DataApiClient, api), **arguments)


@contextmanager
def crawling(
    records: list[dict[str, Any]],
    *,
    lanes: tuple[Lane, ...] = (unplanned_tail(None),),
    max_workers: int = 8,
    latency: float = 0.002,
    fail_at: int | None = None,
    stall_from: int | None = None,
    sent: Collector | None = None,
    rate: float = 50.0,
    latency_seen: float | None = None,
) -> Iterator[Run]:
    """A started crawl over ``records``; stopped and joined at the end.

    ``latency_seen``: a request latency the crawl is told before it starts (the client's
    observer reports them), which sizes the workers it uses from ``rate``.
    """
    api = FakeDataApi(records, latency=latency, fail_at=fail_at, stall_from=stall_from)
    sent = sent or Collector()
    stop = threading.Event()
    crawl = new_crawl(api, sent, stop, max_workers=max_workers, rate=rate)
    if latency_seen is not None:
        crawl.observed_latency(latency_seen)
    crawl.start(lanes)
    try:
        yield Run(crawl, api, sent, records)
    finally:
        stop.set()
        api.release.set()
        crawl.wake()
        crawl.join(5.0)
        assert not any(thread.is_alive() for thread in crawl._threads)


# --- reading what was sent ---------------------------------------------------------------
def of(items: list[Fetched], generation: int) -> list[Fetched]:
    return [item for item in items if item.generation == generation]


SliceKey = tuple[str, int | None]
Incarnation = tuple[str, int | None, int | None]


def slice_key(lane: Lane) -> SliceKey:
    """A slice's id and ``hi``, which never changes (a restart moves ``lo``)."""
    return lane.id, lane.hi


def incarnation(lane: Lane) -> Incarnation:
    """A slice as made, for a crawl without stalls: should an id be made twice, the two
    slices are still told apart by their windows."""
    return lane.id, lane.lo, lane.hi


def created(items: list[Fetched], key: Callable[[Lane], Any] = slice_key) -> Counter[Any]:
    """Slices made (by a plan or a split): versions with seq 0."""
    return Counter(
        key(lane) for item in items for lane in item.lanes if not lane.is_tail and lane.seq == 0
    )


def finished(items: list[Fetched], key: Callable[[Lane], Any] = slice_key) -> Counter[Any]:
    return Counter(
        key(lane) for item in items for lane in item.lanes if lane.done and not lane.is_tail
    )


def splits(items: list[Fetched]) -> list[Fetched]:
    """A split's announcement: two slices and no page (a plan's starts with the tail)."""
    return [
        item for item in items if item.page is None and item.lanes and not item.lanes[0].is_tail
    ]


def session_ids(items: list[Fetched]) -> set[str]:
    return {record.session_id for item in items if item.page for record in item.page.records}


def caught_up(run: Run, generation: int = 0) -> Callable[[list[Fetched]], bool]:
    """Every slice of ``generation`` (given, or made by it) is done, its tail read to the
    end, and the crawl is idle (a lane is in flight until its item is handed over)."""

    def reached(items: list[Fetched]) -> bool:
        mine = of(items, generation)
        planned = any(lane.is_tail and lane.planned for item in mine for lane in item.lanes)
        tail_done = any(
            item.step is Step.CAUGHT_UP and item.lanes[0].is_tail for item in mine if item.page
        )
        idle = run.crawl.stats().in_flight == 0 and run.api.in_flight == 0
        made, done = created(mine), finished(mine)
        seen = {slice_key(lane) for item in mine for lane in item.lanes if not lane.is_tail}
        all_done = all(done[key] >= max(1, made[key]) for key in seen)
        return planned and tail_done and idle and all_done

    return reached


def all_ids(records: list[dict[str, Any]]) -> set[str]:
    return {record["session_id"] for record in records}


# --- a backfill --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def skewed() -> list[dict[str, Any]]:
    """3,000 sessions over three days, 80 % of them in the last hour."""
    return make_records(3_000, recent_share=0.8)


def test_a_backfill_reads_every_record_and_finishes_every_slice(
    skewed: list[dict[str, Any]],
) -> None:
    with crawling(skewed) as run:
        items = run.sent.wait_for(caught_up(run))
    assert session_ids(items) == all_ids(skewed)
    assert any(not lane.is_tail for item in items for lane in item.lanes)  # it sliced
    assert created(items) and created(items) == finished(items)
    assert all(item.error is None and item.generation == 0 for item in items)


def test_the_plan_comes_first_and_the_tail_moves_to_now(skewed: list[dict[str, Any]]) -> None:
    with crawling(skewed) as run:
        items = run.sent.wait_for(caught_up(run))
    plan = items[0]
    assert plan.page is None and plan.lanes[0].is_tail and plan.lanes[0].planned
    assert plan.lanes[0].lo == int(NOW) - 1 and len(plan.lanes) > 1
    assert plan.lanes[1].lo == FIRST_MS // 1000 - 1  # from a second before the first record
    assert max(lane.end or 0 for lane in plan.lanes[1:]) == int(NOW)


def test_skewed_data_is_split_until_the_end(skewed: list[dict[str, Any]]) -> None:
    """Most records in the last hour: idle workers split the busy slice."""
    with crawling(skewed) as run:
        items = run.sent.wait_for(caught_up(run))
    announced = splits(items)
    assert announced
    for item in announced:
        lowered, new = item.lanes
        assert lowered.id != new.id and new.seq == 0 and not new.started
        assert new.lo == lowered.end and new.end is not None and new.hi == new.end + 1
        assert lowered.hi is not None and new.end <= lowered.hi - 1  # within the old window


def test_the_tail_catches_up_once_it_reaches_the_end(skewed: list[dict[str, Any]]) -> None:
    with crawling(skewed) as run:
        items = run.sent.wait_for(caught_up(run))
    tail_pages = [item for item in items if item.page is not None and item.lanes[0].is_tail]
    assert tail_pages and tail_pages[-1].step is Step.CAUGHT_UP


@pytest.mark.parametrize("max_workers", [3, 8])
def test_requests_overlap_but_never_beyond_the_workers(
    skewed: list[dict[str, Any]], max_workers: int
) -> None:
    with crawling(skewed, max_workers=max_workers, latency=0.01) as run:
        run.sent.wait_for(caught_up(run))
    assert 1 < run.api.most_in_flight <= max_workers


def test_pages_of_one_lane_arrive_in_order(skewed: list[dict[str, Any]]) -> None:
    with crawling(skewed, latency=0.005) as run:
        items = run.sent.wait_for(caught_up(run))
    last: dict[Incarnation, tuple[float, int]] = {}
    for item in items:
        if item.page is None or item.page.position is None:
            continue
        lane = item.lanes[0]
        here = (item.page.position, lane.records)
        before = last.get(incarnation(lane), (0.0, 0))
        assert here >= before, f"{lane.id}: a page at {here} after one at {before}"
        last[incarnation(lane)] = here


def test_a_slice_id_is_never_made_twice_in_a_generation(skewed: list[dict[str, Any]]) -> None:
    """Versions of a lane are told apart by seq alone (``lanes.newest``, ``Batch``): a new
    slice that reused a finished slice's id would start at seq 0, below the finished
    version's, and be dropped by the runner's batch as an old version."""
    with crawling(skewed) as run:
        items = run.sent.wait_for(caught_up(run))
    made = Counter(lane_id for lane_id, _ in created(items).elements())
    assert [lane_id for lane_id, count in made.items() if count > 1] == []


def test_one_worker_reads_everything_with_the_tail_alone(skewed: list[dict[str, Any]]) -> None:
    with crawling(skewed, max_workers=1) as run:
        items = run.sent.wait_for(caught_up(run))
    assert all(lane.is_tail for item in items for lane in item.lanes)
    assert session_ids(items) == all_ids(skewed)
    assert run.api.most_in_flight == 1
    assert items[0].lanes == (Lane(TAIL_ID, lo=FIRST_MS // 1000 - 1, seq=1),)


def test_a_tail_with_nothing_to_read_is_planned_and_catches_up() -> None:
    with crawling([]) as run:
        items = run.sent.wait_for(caught_up(run))
    assert items[0].lanes == (Lane(TAIL_ID, seq=1),)  # from the earliest, whenever it comes
    assert session_ids(items) == set()


# --- rewind ------------------------------------------------------------------------------
def test_rewind_starts_a_new_generation_from_the_given_lanes(
    skewed: list[dict[str, Any]],
) -> None:
    with crawling(skewed) as run:
        run.sent.wait_for(caught_up(run))
        before = len(run.sent.items)
        run.crawl.rewind((unplanned_tail(None),))
        items = run.sent.wait_for(caught_up(run, 1))
    after = items[before:]
    assert after and all(item.generation == 1 for item in after)
    assert session_ids(after) == all_ids(skewed)  # read again from the lanes given


def test_rewind_while_pages_are_in_flight(skewed: list[dict[str, Any]]) -> None:
    """Requests in flight at the rewind hand over at most one item each, of the old
    generation; the new one reads everything again from the lanes given."""
    with crawling(skewed, latency=0.01) as run:
        run.sent.wait_for(lambda items: sum(1 for i in items if i.page) >= 10)
        run.crawl.rewind((unplanned_tail(None),))
        after_rewind = len(run.sent.items)
        items = run.sent.wait_for(caught_up(run, 1))
    assert len(of(items[after_rewind:], 0)) <= 8
    assert session_ids(of(items, 1)) == all_ids(skewed)


# --- errors ------------------------------------------------------------------------------
def has_error(items: list[Fetched]) -> bool:
    return any(item.error is not None for item in items)


def test_a_fetch_error_is_sent_and_no_page_of_its_generation_follows(
    skewed: list[dict[str, Any]],
) -> None:
    """The answers in flight at the error (held until it is handed over) are dropped."""
    with crawling(skewed, latency=0.02, fail_at=6) as run:
        items = run.sent.wait_for(has_error)
        run.api.release.set()
        failed = next(n for n, item in enumerate(items) if item.error)
        items = run.sent.quiet_for(0.5)
    error = items[failed].error
    assert isinstance(error, SourceFatalError) and error.code == 10001
    assert items[failed].page is None and items[failed].lanes == ()
    assert [item for item in items[failed + 1 :] if item.page is not None] == []


def test_after_a_fetch_error_the_workers_start_no_new_work(skewed: list[dict[str, Any]]) -> None:
    """After the error no lane is paged again: no request starts."""
    with crawling(skewed, latency=0.02, fail_at=40) as run:
        run.sent.wait_for(has_error)
        requests_at_error = run.api.requests
        run.api.release.set()
        run.sent.quiet_for(0.5)
        requests_later = run.api.requests
    assert requests_later == requests_at_error


def test_an_error_with_one_worker_stops_the_crawl(skewed: list[dict[str, Any]]) -> None:
    with crawling(skewed, max_workers=1, fail_at=3) as run:
        run.sent.wait_for(has_error)
        items = run.sent.quiet_for(0.3)
        requests = run.api.requests
    assert isinstance(items[-1].error, SourceFatalError)
    assert requests == 3


# --- with the checkpoint -----------------------------------------------------------------
def slow_split_announcements(item: Fetched) -> float:
    return 0.1 if item.page is None and item.lanes and not item.lanes[0].is_tail else 0.0


def test_committing_each_item_as_it_comes_ends_with_no_slice_left(
    skewed: list[dict[str, Any]],
) -> None:
    """A runner that commits often: each item in a batch of its own, applied to the
    checkpoint. A split's announcement handed over slowly may land after the split
    slice's later pages; once everything is read, no slice may remain committed."""
    with crawling(skewed, latency=0.01, sent=Collector(slow_split_announcements)) as run:
        items = run.sent.wait_for(caught_up(run))
    assert splits(items)
    checkpoint = Checkpoint()
    for now, item in enumerate(items, 1):
        batch = checkpoint.begin(float(now))
        for lane in item.lanes:
            batch.take_lane(lane)
        checkpoint.apply(batch, float(now))
    assert checkpoint.slices == []
    assert checkpoint.slices_done == sum(created(items).values())
    assert checkpoint.tail is not None and checkpoint.position() == checkpoint.tail.reached


def slow_done_pages(item: Fetched) -> float:
    return 0.05 if item.step is Step.DONE else 0.0


def test_a_lane_is_never_paged_by_two_workers_at_once(skewed: list[dict[str, Any]]) -> None:
    """No request is made while the very same one is in flight, and no lane is restarted
    (this API never stalls). Finished slices' last pages are handed over slowly: their
    workers still hold the slices' ids in flight meanwhile."""
    with crawling(skewed, latency=0.01, sent=Collector(slow_done_pages)) as run:
        items = run.sent.wait_for(caught_up(run))
    assert run.api.twins == 0
    assert [summary(item) for item in items if item.step is Step.STALLED] == []


def test_sent_lane_versions_per_slice(skewed: list[dict[str, Any]]) -> None:
    """Each slice made is finished exactly once; its versions' seqs are all distinct."""
    with crawling(skewed) as run:
        items = run.sent.wait_for(caught_up(run))
    seqs: dict[Incarnation, list[int]] = defaultdict(list)
    for item in items:
        for lane in item.lanes:
            if not lane.is_tail:
                seqs[incarnation(lane)].append(lane.seq)
    assert finished(items, incarnation) == created(items, incarnation)
    assert set(finished(items, incarnation).values()) == {1}
    assert all(len(set(found)) == len(found) for found in seqs.values())


# --- what a crawl starts from ------------------------------------------------------------
FIRST_S = FIRST_MS // 1000


def test_a_crawl_from_a_start_time_reads_from_that_second_on(skewed: list[dict[str, Any]]) -> None:
    lo = FIRST_S + 86_400
    start = datetime.fromtimestamp(lo + 0.5, UTC)
    with crawling(skewed, lanes=(unplanned_tail(start),)) as run:
        items = run.sent.wait_for(caught_up(run))
    assert session_ids(items) == {r["session_id"] for r in skewed if updated_ms(r) >= lo * 1000}
    assert all(params["limit"] == 50 for params, _ in run.api.log)  # no look for the earliest


def test_a_crawl_resumes_committed_slices_started_ones_first(skewed: list[dict[str, Any]]) -> None:
    """Committed lanes go on where they were: no new plan, a started slice from its token."""
    middle = FIRST_S + 86_400
    ordered = sorted(skewed, key=lambda r: (updated_ms(r), r["session_id"]))
    last_read = next(r for r in ordered if updated_ms(r) >= (FIRST_S + 2 * 86_400) * 1000)
    token = f"{updated_ms(last_read)}:{last_read['session_id']}"
    fresh = Lane("s1", lo=FIRST_S - 1, hi=middle + 1, end=middle)
    started = Lane("s2", lo=middle, hi=int(NOW) + 1, end=int(NOW), token=token, records=9, seq=4)
    tail = Lane(TAIL_ID, lo=int(NOW) - 1, seq=7)
    with crawling(skewed, lanes=(tail, fresh, started), max_workers=1) as run:
        items = run.sent.wait_for(caught_up(run))
    asked = [params for params, _ in run.api.log]
    assert "maxtime" not in asked[0]  # the tail first
    assert asked[1] == {  # then the started slice, from its token
        "sort": "asc",
        "limit": 50,
        "mintime": middle,
        "maxtime": int(NOW) + 1,
        "next": token,
    }
    read = session_ids(items)
    in_fresh = {r["session_id"] for r in skewed if updated_ms(r) < (middle + 2) * 1000}
    after_token = {r["session_id"] for r in ordered[ordered.index(last_read) + 1 :]}
    skipped = set(all_ids(skewed)) - in_fresh - after_token - {last_read["session_id"]}
    assert in_fresh | after_token <= read and skipped and not skipped & read
    assert {lane.id for item in items for lane in item.lanes} == {TAIL_ID, "s1", "s2"}


def test_a_tail_far_behind_cuts_its_gap_into_slices(skewed: list[dict[str, Any]]) -> None:
    """A planned tail that reads a full page far behind now moves to now, with slices."""
    with crawling(skewed, lanes=(Lane(TAIL_ID, lo=FIRST_S - 1),)) as run:
        items = run.sent.wait_for(caught_up(run))
    first = items[0]
    assert first.page is not None and first.page.position is not None
    assert first.step is Step.MORE
    moved, *slices = first.lanes
    assert moved.is_tail and moved.lo == int(NOW) - 1 and moved.token is None
    assert slices[0].lo == math.floor(first.page.position) - OVERLAP_SECONDS
    assert slices[-1].end == int(NOW)
    assert session_ids(items) == all_ids(skewed)


# --- requests ----------------------------------------------------------------------------
def test_the_tails_requests_have_priority_and_the_slices_do_not(
    skewed: list[dict[str, Any]],
) -> None:
    with crawling(skewed) as run:
        run.sent.wait_for(caught_up(run))
    by_slices = [priority for params, priority in run.api.log if "maxtime" in params]
    by_tail = [priority for params, priority in run.api.log[1:] if "maxtime" not in params]
    assert by_slices and not any(by_slices)
    assert by_tail and all(by_tail)


def test_a_stalled_slice_is_asked_again_from_its_position(skewed: list[dict[str, Any]]) -> None:
    """The same token back with records: handed over without a page, then the slice asks
    again without its token from a second before its position, and nothing is lost."""
    with crawling(skewed, stall_from=12) as run:
        items = run.sent.wait_for(caught_up(run))
    stalled = [item for item in items if item.step is Step.STALLED]
    assert run.api.stalled is not None and len(stalled) == 1
    (item,) = stalled
    lane = item.lanes[0]
    position_ms = int(str(run.api.stalled["next"]).partition(":")[0])
    assert item.page is None and lane.token is None
    assert lane.lo == position_ms // 1000 - OVERLAP_SECONDS
    assert lane.hi == run.api.stalled["maxtime"]
    assert session_ids(items) == all_ids(skewed)


def test_target_sizes_the_workers_from_the_rate_and_the_latency() -> None:
    """Little's law: requests in flight = rate x latency (with headroom), within bounds."""
    crawl = new_crawl(FakeDataApi([]), Collector(), threading.Event(), max_workers=16)
    assert crawl.target() == INITIAL_WORKERS and crawl.stats().latency_seconds is None
    crawl.observed_latency(0.2)
    assert crawl.target() == math.ceil(50 * 0.2 * HEADROOM) + 1
    crawl.observed_latency(0.4)  # a moving average
    assert crawl.stats().latency_seconds == pytest.approx(0.2 + LATENCY_WEIGHT * 0.2)
    crawl.observed_latency(100.0)
    assert crawl.target() == 16
    assert new_crawl(FakeDataApi([]), Collector(), threading.Event(), max_workers=3).target() == 3


def test_the_workers_in_use_follow_the_budget(skewed: list[dict[str, Any]]) -> None:
    """At 10 requests/s and 50 ms a request, two workers keep the budget busy."""
    with crawling(skewed, rate=10.0, latency=0.01, latency_seen=0.05) as run:
        items = run.sent.wait_for(caught_up(run))
        stats = run.crawl.stats()
    assert stats.workers == 2 and stats.in_flight == 0
    assert run.api.most_in_flight == 2
    assert session_ids(items) == all_ids(skewed)
