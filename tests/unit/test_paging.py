"""The pager's rules: first request, next tokens, caught up, stalled cursor."""

from datetime import UTC, datetime
from typing import Any

import pytest

from connector.learnosity.paging import Filters, Pager, Step
from connector.models import Page
from connector.settings import StartFrom

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def records(*ids: str) -> tuple[dict[str, Any], ...]:
    return tuple({"session_id": i} for i in ids)


def test_first_request_from_earliest_has_no_mintime_nor_token() -> None:
    pager = Pager(Filters(), StartFrom("earliest"))
    assert pager.request() == {"sort": "asc", "limit": 50}


def test_first_request_from_a_time_or_latest_has_mintime() -> None:
    at = StartFrom.parse("2026-01-02T03:04:05Z")
    assert Pager(Filters(), at).request()["mintime"] == int(at.at.timestamp())  # type: ignore[union-attr]
    assert Pager(Filters(), StartFrom("latest"), now=NOW).request()["mintime"] == int(
        NOW.timestamp()
    )
    with pytest.raises(ValueError):
        Pager(Filters(), StartFrom("latest"))


def test_filters_are_sent_with_every_request_and_the_token_replaces_mintime() -> None:
    filters = Filters(("act",), ("u1", "u2"), ("Completed",), include_response_scores=True)
    pager = Pager(filters, StartFrom.parse("1700000000"), limit=3)
    first = pager.request()
    assert first["mintime"] == 1700000000
    pager.advance(Page(records("a", "b", "c"), "tok1", limit=3))
    second = pager.request()
    assert second == {
        "sort": "asc",
        "limit": 3,
        "activity_id": ["act"],
        "user_id": ["u1", "u2"],
        "status": ["Completed"],
        "include_response_scores": True,
        "next": "tok1",
    }


def test_full_page_means_more_partial_or_empty_means_caught_up() -> None:
    pager = Pager(Filters(), StartFrom("earliest"), limit=2)
    assert pager.advance(Page(records("a", "b"), "t1", limit=2)) is Step.MORE
    assert pager.advance(Page(records("c"), "t2", limit=2)) is Step.CAUGHT_UP
    assert pager.cursor == "t2"
    # an empty page carries no token: the last one is kept
    assert pager.advance(Page((), None, limit=2)) is Step.CAUGHT_UP
    assert pager.cursor == "t2"
    assert pager.request()["next"] == "t2"


def test_a_restored_cursor_is_used_at_once() -> None:
    pager = Pager(Filters(), StartFrom.parse("1700000000"), cursor="saved")
    assert pager.request()["next"] == "saved" and "mintime" not in pager.request()


def test_same_token_and_same_records_is_a_stalled_cursor() -> None:
    pager = Pager(Filters(), StartFrom("earliest"), limit=2)
    page = Page(records("a", "b"), "t1", limit=2)
    assert pager.advance(page) is Step.MORE
    assert pager.advance(page) is Step.STALLED
    assert pager.advance(page) is Step.STALLED
    assert pager.stalls == 2 and pager.in_stall
    # records that moved on end the stall, even under the same token
    assert pager.advance(Page(records("c", "d"), "t1", limit=2)) is Step.MORE
    assert not pager.in_stall


def test_same_records_under_a_new_token_is_not_a_stall() -> None:
    pager = Pager(Filters(), StartFrom("earliest"), limit=2)
    pager.advance(Page(records("a", "b"), "t1", limit=2))
    assert pager.advance(Page(records("a", "b"), "t2", limit=2)) is Step.MORE
    assert pager.stalls == 0


def test_a_page_without_a_token_that_repeats_is_a_stall() -> None:
    pager = Pager(Filters(), StartFrom("earliest"), cursor="t0", limit=2)
    page = Page(records("a", "b"), None, limit=2)
    assert pager.advance(page) is Step.MORE
    assert pager.cursor == "t0"
    assert pager.advance(page) is Step.STALLED
