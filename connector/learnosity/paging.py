"""Paging over ``/sessions/scores``: which request comes next, and what a page means. Pure.

Rules (see shared/LEARNOSITY.md):
- Every request: ``sort: asc``, the page ``limit``, the configured filters.
- The first request of a connector with no cursor carries ``mintime`` from
  ``LEARNOSITY_START_FROM``; every later one carries the ``next`` token instead, with the
  same filters.
- The service returns ``next`` on every non-empty page, whether or not more exist, so
  the end of the data is an *empty* page: then we are caught up and keep the last token.
  A partial page means the same, one request sooner.
- The same token back with the same records is a stalled cursor: reported once per
  episode, and the caller waits a poll interval instead of asking again at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from connector.models import Page
from connector.settings import Settings, StartFrom


class Step(Enum):
    MORE = "more"  # a full page: ask again at once
    CAUGHT_UP = "caught_up"  # an empty or partial page: wait the poll interval
    STALLED = "stalled"  # the same token and records again: wait, count, do not process


@dataclass(frozen=True)
class Filters:
    activity_ids: tuple[str, ...] = ()
    user_ids: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    include_response_scores: bool = False

    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = {}
        if self.activity_ids:
            params["activity_id"] = list(self.activity_ids)
        if self.user_ids:
            params["user_id"] = list(self.user_ids)
        if self.statuses:
            params["status"] = list(self.statuses)
        if self.include_response_scores:
            params["include_response_scores"] = True
        return params


class Pager:
    """Holds the cursor; says what to ask next and what each page means."""

    def __init__(
        self,
        filters: Filters,
        start_from: StartFrom,
        *,
        cursor: str | None = None,
        limit: int = 50,
        now: datetime | None = None,
    ) -> None:
        self.filters = filters
        self.cursor = cursor
        self.limit = limit
        self.stalls = 0  # stalled pages seen in total
        self._mintime = self._first_mintime(start_from, now)
        #: the previous page's token and records, kept to recognise a stall; compared only
        #: when the token did not move (rare), so a normal page costs no comparison
        self._last: tuple[str | None, tuple[Any, ...]] | None = None
        self._stalled = False

    @classmethod
    def from_settings(
        cls, settings: Settings, *, cursor: str | None = None, now: datetime | None = None
    ) -> Pager:
        filters = Filters(
            activity_ids=tuple(settings.learnosity_activity_ids),
            user_ids=tuple(settings.learnosity_user_ids),
            statuses=tuple(settings.learnosity_statuses),
            include_response_scores=settings.learnosity_include_response_scores,
        )
        return cls(
            filters,
            settings.learnosity_start_from,
            cursor=cursor,
            limit=settings.learnosity_page_limit,
            now=now,
        )

    @staticmethod
    def _first_mintime(start_from: StartFrom, now: datetime | None) -> int | None:
        if start_from.kind == "time" and start_from.at is not None:
            return int(start_from.at.timestamp())
        if start_from.kind == "latest":
            if now is None:
                raise ValueError("start from 'latest' needs the current time")
            return int(now.timestamp())
        return None

    def request(self) -> dict[str, Any]:
        """Parameters of the next request."""
        params: dict[str, Any] = {"sort": "asc", "limit": self.limit, **self.filters.params()}
        if self.cursor is not None:
            params["next"] = self.cursor
        elif self._mintime is not None:
            params["mintime"] = self._mintime
        return params

    def advance(self, page: Page) -> Step:
        """Take in the page just fetched for ``request()``; move the cursor; say what next."""
        if page.is_empty:
            # An empty page may carry no token: keep the one we had.
            self._last = None
            self._stalled = False
            return Step.CAUGHT_UP
        # A page without a token leaves the cursor where it is (the API should not do that).
        token = page.next_token if page.next_token is not None else self.cursor
        if (
            token == self.cursor
            and self._last is not None
            and self._last[0] == token
            and self._last[1] == page.records
        ):
            self.stalls += 1
            self._stalled = True
            return Step.STALLED
        self._stalled = False
        self._last = (token, page.records)
        self.cursor = token
        return Step.MORE if len(page.records) >= page.limit else Step.CAUGHT_UP

    @property
    def in_stall(self) -> bool:
        """True from a stalled page until a page moves the cursor (log once per episode)."""
        return self._stalled
