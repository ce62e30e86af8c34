"""The fetcher thread: pages in order, waits when caught up, rewinds, forwards errors."""

import threading
from typing import Any

import pytest

from connector.errors import SourceFatalError
from connector.learnosity.fetcher import Fetcher
from connector.learnosity.paging import Filters, Pager, Step
from connector.models import Page, PreparedPage, PreparedRecord
from connector.settings import StartFrom


class FakeClient:
    """Serves pages keyed by the request's ``next`` token (None for the first request)."""

    def __init__(self, pages: dict[str | None, Page | Exception]) -> None:
        self.pages = pages
        self.requests: list[str | None] = []

    def fetch(self, params: dict[str, Any], *, max_attempts: int | None = None) -> Page:
        token = params.get("next")
        self.requests.append(token)
        answer = self.pages.get(token, Page((), None, limit=2))
        if isinstance(answer, Exception):
            raise answer
        return answer


def recs(*ids: str) -> tuple[dict[str, Any], ...]:
    return tuple({"session_id": i} for i in ids)


def ids_only(page: Page) -> PreparedPage:
    """A stand-in for PagePreparer that keeps only what these tests look at."""
    records = tuple(PreparedRecord(r["session_id"], "", "", 0, ()) for r in page.records)
    return PreparedPage(records, (), len(page.records), None)


def make(
    client: FakeClient, stop: threading.Event, cursor: str | None = None
) -> Fetcher[PreparedPage]:
    return Fetcher(
        client,  # type: ignore[arg-type]
        lambda token: Pager(Filters(), StartFrom("earliest"), cursor=token, limit=2),
        cursor,
        poll_interval=0.05,
        stop=stop,
        prepare=ids_only,
    )


def test_pages_arrive_in_order_then_caught_up() -> None:
    stop = threading.Event()
    client = FakeClient(
        {None: Page(recs("a", "b"), "t1", limit=2), "t1": Page(recs("c"), "t2", limit=2)}
    )
    fetcher = make(client, stop)
    fetcher.start()
    first, second = fetcher.get(5), fetcher.get(5)
    assert first is not None and first.step is Step.MORE and first.cursor == "t1"
    assert second is not None and second.step is Step.CAUGHT_UP and second.cursor == "t2"
    third = fetcher.get(5)  # after the poll interval it asks again from t2
    assert third is not None and third.page is not None and third.page.fetched == 0
    assert third.cursor == "t2"
    stop.set()
    fetcher.join(2)
    assert client.requests[:3] == [None, "t1", "t2"]


def test_rewind_starts_a_new_generation_from_the_given_cursor() -> None:
    stop = threading.Event()
    client = FakeClient(
        {
            None: Page(recs("a", "b"), "t1", limit=2),
            "t1": Page(recs("c", "d"), "t2", limit=2),
            "t2": Page(recs("e"), "t3", limit=2),
        }
    )
    fetcher = make(client, stop)
    fetcher.start()
    assert fetcher.get(5).cursor == "t1"  # type: ignore[union-attr]
    fetcher.rewind("t1")
    item = fetcher.get(5)
    assert item is not None and item.generation == 1
    assert item.page is not None and [r.session_id for r in item.page.records] == ["c", "d"]
    stop.set()
    fetcher.join(2)


def test_a_fatal_error_is_handed_to_the_runner() -> None:
    stop = threading.Event()
    fetcher = make(FakeClient({None: SourceFatalError("41003: bad signature", 41003)}), stop)
    fetcher.start()
    item = fetcher.get(5)
    assert item is not None and isinstance(item.error, SourceFatalError)
    stop.set()
    fetcher.join(2)


@pytest.mark.parametrize("cursor", ["restored"])
def test_starts_from_a_restored_cursor(cursor: str) -> None:
    stop = threading.Event()
    client = FakeClient({cursor: Page(recs("x"), "t9", limit=2)})
    fetcher = make(client, stop, cursor)
    fetcher.start()
    item = fetcher.get(5)
    assert item is not None and item.cursor == "t9"
    stop.set()
    fetcher.join(2)
    assert client.requests[0] == cursor


class PipeliningClient(FakeClient):
    """Also sends ahead: ``begin`` records the request, ``finish`` answers it."""

    def __init__(self, pages: dict[str | None, Page | Exception]) -> None:
        super().__init__(pages)
        self.events: list[str] = []

    def begin(self, params: dict[str, Any]) -> dict[str, Any]:
        self.events.append(f"begin {params.get('next')}")
        return params

    def finish(self, pending: dict[str, Any]) -> Page:
        self.events.append(f"finish {pending.get('next')}")
        return self.fetch(pending)

    def abandon(self, pending: dict[str, Any]) -> None:
        self.events.append(f"abandon {pending.get('next')}")


def pipelined(client: PipeliningClient, stop: threading.Event) -> Fetcher[PreparedPage]:
    def prepare(page: Page) -> PreparedPage:
        client.events.append(f"prepare {len(page.records)}")
        return ids_only(page)

    return Fetcher(
        client,  # type: ignore[arg-type]
        lambda token: Pager(Filters(), StartFrom("earliest"), cursor=token, limit=2),
        None,
        poll_interval=0.05,
        stop=stop,
        prepare=prepare,
        pipeline=True,
    )


def test_the_next_request_goes_out_before_the_page_is_prepared() -> None:
    client = PipeliningClient(
        {None: Page(recs("a", "b"), "t1", limit=2), "t1": Page(recs("c"), "t2", limit=2)}
    )
    fetcher = pipelined(client, threading.Event())
    first, second = fetcher.fetch_one(), fetcher.fetch_one()
    assert first is not None and first.step is Step.MORE
    assert second is not None and second.step is Step.CAUGHT_UP
    # page 1 is fetched, t1 is asked for, then page 1 is prepared; t1's answer is read
    # next; caught up after it, so nothing is sent ahead
    assert client.events == ["begin t1", "prepare 2", "finish t1", "prepare 1"]
    assert client.requests == [None, "t1"]


def test_a_request_sent_before_a_rewind_is_abandoned() -> None:
    client = PipeliningClient(
        {
            None: Page(recs("a", "b"), "t1", limit=2),
            "t1": Page(recs("c", "d"), "t2", limit=2),
            "t0": Page(recs("z"), "t9", limit=2),
        }
    )
    fetcher = pipelined(client, threading.Event())
    assert fetcher.fetch_one() is not None  # t1 is now in flight
    fetcher.rewind("t0")
    item = fetcher.fetch_one()
    assert item is not None and item.generation == 1 and item.cursor == "t9"
    assert "abandon t1" in client.events and "finish t1" not in client.events
    assert client.requests == [None, "t0"]
