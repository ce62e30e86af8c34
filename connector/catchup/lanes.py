"""A lane: one ``next`` cursor over ``/sessions/scores`` and what it has read, as committed.

Two kinds of lanes page the Data API (``sort: asc``, ordered by updated time):
    tail    the live tail, one per connector: from ``lo`` (or the earliest record) with no
            upper bound, long-polling forever. Before its first plan (``planned`` false)
            it says where the connector starts; planning may cut the gap up to now into
            slices and move the tail's start to now.
    slice   a window of updated time, paged with a ``next`` token of its own. It asks with
            ``mintime = lo`` and ``maxtime = hi`` on every request, and it is responsible
            for ``[lo, end]``: it is done at the first partial or empty page, or once a
            page reaches ``end + 1`` (a split lowers ``end``; ``hi`` never changes, so a
            ``next`` token is always sent with the filters it was issued for).

Bounds are whole seconds, and neighbours overlap by a second (``OVERLAP_SECONDS``):
whether the service reads ``mintime``/``maxtime`` as inclusive or exclusive, at whole
seconds or finer, every record belongs to at least one lane. A record read twice is a
repeat and dropped (``changes.detector``).

Lanes cross processes and the state topic as small frozen values; each change bumps
``seq``, so of two versions of a lane the one with the higher ``seq`` is the newer,
whatever order they arrive in. State-topic entries: the tail under ``b"cursor"``, each
slice under ``b"slice:<id>"`` (a tombstone once done), both JSON.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Final

from connector.errors import FatalError
from connector.models import Page

TAIL_ID: Final = "tail"
TAIL_KEY: Final = b"cursor"
SLICE_KEY_PREFIX: Final = b"slice:"
#: neighbouring lanes share this much updated time, so no reading of the bounds leaves a gap
OVERLAP_SECONDS: Final = 1
#: the lane format; a newer one is refused with a remedy (``LaneFormatError``)
LANE_FORMAT: Final = 1


class Step(Enum):
    MORE = "more"  # a full page: ask again at once
    CAUGHT_UP = "caught_up"  # the tail read an empty or partial page: wait a poll interval
    DONE = "done"  # a slice read all of its window
    STALLED = "stalled"  # the token did not move on a page with records: not processed


class LaneFormatError(FatalError):
    """A lane entry of the state topic cannot be read."""


@dataclass(frozen=True, slots=True)
class Lane:
    id: str
    #: ``mintime`` of a request without a token (whole Unix seconds); None: the earliest
    lo: int | None = None
    #: ``maxtime`` of every request (slices only; whole Unix seconds)
    hi: int | None = None
    #: the last second a slice is responsible for (``<= hi``); lowered by a split
    end: int | None = None
    token: str | None = None
    #: updated time (Unix seconds) of the newest record read, if any had one
    position: float | None = None
    records: int = 0
    seq: int = 0
    done: bool = False
    #: the tail only: False until the plan (slices or not) for its gap is made
    planned: bool = True

    @property
    def is_tail(self) -> bool:
        return self.id == TAIL_ID

    @property
    def started(self) -> bool:
        return self.token is not None or self.records > 0

    @property
    def key(self) -> bytes:
        return TAIL_KEY if self.is_tail else SLICE_KEY_PREFIX + self.id.encode()

    @property
    def reached(self) -> float:
        """How far this lane has read (its position, else its start)."""
        if self.position is not None:
            return self.position
        return float(self.lo) if self.lo is not None else 0.0

    def params(self, base: dict[str, Any]) -> dict[str, Any]:
        """The next request's parameters: ``base`` (sort, limit, filters) and the window."""
        params = dict(base)
        if self.is_tail:
            if self.token is not None:
                params["next"] = self.token
            elif self.lo is not None:
                params["mintime"] = self.lo
            return params
        if self.lo is not None:
            params["mintime"] = self.lo
        if self.hi is not None:
            params["maxtime"] = self.hi
        if self.token is not None:
            params["next"] = self.token
        return params

    def advance(self, page: Page, position: float | None) -> tuple[Lane, Step]:
        """This lane after ``page`` (whose newest record's updated time is ``position``)."""
        if page.is_empty:  # an empty page may carry no token: keep the one we had
            if self.is_tail:
                return self, Step.CAUGHT_UP
            return self._next(done=True), Step.DONE
        token = page.next_token if page.next_token is not None else self.token
        if token is not None and token == self.token:
            return self, Step.STALLED  # records, but the cursor did not move
        moved = self._next(
            token=token,
            position=position if position is not None else self.position,
            records=self.records + len(page.records),
        )
        full = len(page.records) >= page.limit
        if self.is_tail:
            return moved, Step.MORE if full else Step.CAUGHT_UP
        past_end = (
            moved.end is not None and moved.position is not None and moved.position >= moved.end + 1
        )
        if not full or past_end:
            return replace(moved, done=True), Step.DONE
        return moved, Step.MORE

    def restarted(self) -> Lane:
        """A fresh request from the last good position (a stalled token is dropped)."""
        position = self.position
        lo = self.lo if position is None else math.floor(position) - OVERLAP_SECONDS
        return self._next(token=None, lo=lo)

    def _next(self, **changes: Any) -> Lane:
        return replace(self, seq=self.seq + 1, **changes)

    # --- the state topic -----------------------------------------------------------------
    def encode(self) -> bytes | None:
        """The entry's value; None (a tombstone) for a finished slice."""
        if self.done and not self.is_tail:
            return None
        data = {"v": LANE_FORMAT, **asdict(self)}
        return json.dumps(data, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, key: bytes, value: bytes) -> Lane:
        try:
            data = json.loads(value)
            version = data.pop("v", None)
        except (ValueError, AttributeError, TypeError) as exc:
            raise LaneFormatError(f"state entry {key[:60]!r} is not a lane: {exc}") from None
        if version != LANE_FORMAT:
            raise LaneFormatError(
                f"state entry {key[:60]!r} has lane format {version!r}; this connector reads "
                f"format {LANE_FORMAT}: run the newer connector version again, or "
                "`learnosity-connector reset --to <time>` to start over from a time"
            )
        try:
            return cls(**data)
        except TypeError as exc:
            raise LaneFormatError(f"state entry {key[:60]!r}: {exc}") from None


def is_lane_key(key: bytes) -> bool:
    return key == TAIL_KEY or key.startswith(SLICE_KEY_PREFIX)


def lane_id(key: bytes) -> str:
    """The id of the lane stored under ``key``."""
    if key == TAIL_KEY:
        return TAIL_ID
    return key.removeprefix(SLICE_KEY_PREFIX).decode("utf-8", "replace")


def unplanned_tail(start_at: datetime | None) -> Lane:
    """The tail of a connector with no cursor: from ``start_at`` (None: the earliest)."""
    lo = None if start_at is None else math.floor(start_at.astimezone(UTC).timestamp())
    return Lane(TAIL_ID, lo=lo, planned=False)


def newest(a: Lane | None, b: Lane) -> Lane:
    """The newer of two versions of one lane."""
    return b if a is None or b.seq >= a.seq else a
