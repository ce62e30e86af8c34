"""What the connector has committed, and what one transaction will add to it.

The state topic ``<CONNECTOR_NAME>.state`` (compacted, one partition) holds:
    ``s:<session id>``   the last published state of a session (``changes.state``)
    ``cursor``           the live tail's lane (``catchup.lanes``)
    ``slice:<id>``       each unfinished slice's lane; a tombstone once it is done
    ``catchup``          how the catch-up goes: slices done, records/s, ETA (for ``status``)
    ``commit``           when the last transaction committed, by which version (``status``)

``Checkpoint`` is that content in memory, with one way in and one way out:
    restore     each entry read back at start (``restore``)
    begin       a ``Batch``: everything one transaction will commit, kept apart
    messages    the entries a batch's commit writes, in the same transaction as its events
    apply       after the commit, and only then, the batch becomes committed state
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from connector import __version__
from connector.catchup import planner
from connector.catchup.lanes import TAIL_ID, Lane, is_lane_key, lane_id, newest
from connector.changes.state import (
    NewerStateFormatError,
    SessionEntry,
    SessionState,
    StateEntryError,
    decode_entry,
    iter_encoded,
)
from connector.errors import FatalError

CATCHUP_KEY: Final = b"catchup"
COMMIT_KEY: Final = b"commit"
#: unreadable entries quoted by ``status`` and the start-up log
MAX_EXAMPLES: Final = 3


@dataclass
class Batch:
    """Everything one transaction will commit, kept apart from committed state."""

    started: float
    updates: dict[str, SessionEntry] = field(default_factory=dict)
    lanes: dict[str, Lane] = field(default_factory=dict)
    changes: dict[str, int] = field(default_factory=dict)
    dead_letters: dict[str, int] = field(default_factory=dict)
    repeats: int = 0
    stale: int = 0
    records: int = 0
    #: records read by slices (the backfill), for its rate
    slice_records: int = 0

    @property
    def dirty(self) -> bool:
        return bool(self.updates) or bool(self.lanes) or bool(self.dead_letters)

    def take_lane(self, lane: Lane) -> None:
        self.lanes[lane.id] = newest(self.lanes.get(lane.id), lane)


@dataclass(frozen=True)
class CatchUp:
    """Where the backfill in slices stands (also the ``catchup`` entry's content)."""

    slices_pending: int
    slices_running: int
    slices_done: int
    records_left: float
    records_per_second: float | None
    #: the oldest updated time not read yet (Unix seconds), if slices remain
    position: float | None
    #: records and seconds of updated time the finished slices covered
    done_records: int = 0
    done_seconds: float = 0.0

    @property
    def active(self) -> bool:
        return bool(self.slices_pending or self.slices_running)

    @property
    def eta_seconds(self) -> float | None:
        if not self.active:
            return 0.0
        if not self.records_per_second or not self.records_left:
            return None
        return self.records_left / self.records_per_second

    def encode(self) -> bytes:
        return json.dumps(
            {
                "slices_pending": self.slices_pending,
                "slices_running": self.slices_running,
                "slices_done": self.slices_done,
                "records_left": round(self.records_left),
                "records_per_second": self.records_per_second,
                "eta_seconds": self.eta_seconds,
                "position": self.position,
                "done_records": self.done_records,
                "done_seconds": self.done_seconds,
                "at": time.time(),
            },
            separators=(",", ":"),
        ).encode()


class Checkpoint:
    def __init__(self) -> None:
        self.sessions = SessionState()
        self.lanes: dict[str, Lane] = {}
        #: session entries refused at restore, by key (the latest entry of a key decides)
        self._refused: dict[bytes, StateEntryError] = {}
        #: the finished slices' ids and last versions (a late older version is ignored)
        self._done: dict[str, int] = {}
        self.slices_done = 0
        #: records and seconds of updated time the finished slices covered: their density
        self.done_records = 0
        self.done_seconds = 0.0
        #: when the last transaction committed and which connector version committed it
        self.last_commit: dict[str, str] = {}
        #: the ETA the last commit stored (``status`` reads it: it has no rate of its own)
        self.stored_eta: float | None = None
        #: records/s of the backfill, averaged over commits
        self._rate: float | None = None
        self._last_commit: float | None = None

    # --- restore ------------------------------------------------------------------------
    def restore(self, key: bytes, value: bytes | None) -> None:
        """One entry of the state topic, in the topic's order."""
        if key == COMMIT_KEY:
            self.last_commit = _stored_commit(value)
        elif key == CATCHUP_KEY:
            if value is not None:
                stored = _stored_catchup(value)
                self.slices_done, self.stored_eta, self.done_records, self.done_seconds = stored
        elif is_lane_key(key):
            if value is None:
                self.lanes.pop(lane_id(key), None)
            else:
                lane = Lane.decode(key, value)
                self.lanes[lane.id] = lane
        else:
            self._refused.pop(key, None)  # a later entry replaces a refused one
            try:
                self.sessions.restore_raw(key, value)
            except StateEntryError as exc:
                self._refused[key] = exc
                with contextlib.suppress(StateEntryError):  # forget what came before
                    session_id, _entry = decode_entry(key, None)
                    self.sessions.restore_entry(session_id, None)

    def verify(self) -> None:
        """After the last entry: refuse a state holding entries of a newer format.

        Only entries still current count: a later entry (a tombstone of ``reset
        --forget-state``) replaces a refused one, as compaction will."""
        for error in self._refused.values():
            if isinstance(error, NewerStateFormatError):
                raise error

    @property
    def unreadable(self) -> int:
        """Damaged or foreign session entries skipped: those sessions are forgotten, so
        their next record is published as ``created`` (an extra event, never a lost one)."""
        return sum(1 for e in self._refused.values() if not isinstance(e, NewerStateFormatError))

    @property
    def unreadable_examples(self) -> list[str]:
        damaged = (e for e in self._refused.values() if not isinstance(e, NewerStateFormatError))
        return [str(error)[:200] for error, _ in zip(damaged, range(MAX_EXAMPLES), strict=False)]

    @property
    def tail(self) -> Lane | None:
        return self.lanes.get(TAIL_ID)

    @property
    def slices(self) -> list[Lane]:
        return [lane for lane in self.lanes.values() if not lane.is_tail]

    # --- one transaction ----------------------------------------------------------------
    def begin(self, started: float) -> Batch:
        return Batch(started)

    def messages(self, batch: Batch) -> Iterator[tuple[bytes, bytes | None]]:
        """The state-topic entries ``batch``'s commit writes (sessions, lanes, catch-up)."""
        yield from iter_encoded(batch.updates)
        lanes = self._newer(batch)
        for lane in lanes:
            yield lane.key, lane.encode()
        if any(not lane.is_tail for lane in lanes):
            yield CATCHUP_KEY, self.catchup(batch).encode()
        commit = {"at": datetime.now(UTC).isoformat(timespec="milliseconds"), "by": __version__}
        yield COMMIT_KEY, json.dumps(commit, separators=(",", ":")).encode()

    def apply(self, batch: Batch, now: float) -> None:
        """``batch`` was committed: it becomes the state."""
        self.sessions.apply(batch.updates)
        for lane in self._newer(batch):
            if lane.done and not lane.is_tail:
                self.lanes.pop(lane.id, None)
                self._done[lane.id] = lane.seq
                self.slices_done += 1
                self.done_records += lane.records
                self.done_seconds += _span(lane)
            else:
                self.lanes[lane.id] = lane
        if batch.slice_records and self._last_commit is not None and now > self._last_commit:
            rate = batch.slice_records / (now - self._last_commit)
            self._rate = rate if self._rate is None else self._rate + 0.2 * (rate - self._rate)
        self._last_commit = now

    def _newer(self, batch: Batch) -> list[Lane]:
        """The batch's lane versions newer than what is committed of them.

        Versions of a lane may arrive in any order (a split's announcement after the
        split slice's next page), so an older one committed later, or one of a slice
        already finished, must change nothing.
        """
        newer = []
        for lane in batch.lanes.values():
            finished = self._done.get(lane.id)
            committed = self.lanes.get(lane.id)
            if finished is not None and lane.seq <= finished:
                continue
            if committed is not None and lane.seq < committed.seq:
                continue
            newer.append(lane)
        return newer

    def catchup(self, batch: Batch | None = None) -> CatchUp:
        """Where the backfill stands (with ``batch``'s lanes, if given, as if committed)."""
        lanes = dict(self.lanes)
        done, done_records, done_seconds = self.slices_done, self.done_records, self.done_seconds
        for lane in self._newer(batch) if batch else ():
            if lane.done and not lane.is_tail:
                lanes.pop(lane.id, None)
                done += 1
                done_records += lane.records
                done_seconds += _span(lane)
            else:
                lanes[lane.id] = lane
        slices = [lane for lane in lanes.values() if not lane.is_tail]
        running = sum(1 for lane in slices if lane.started)
        prior = done_records / done_seconds if done_seconds else None
        return CatchUp(
            slices_pending=len(slices) - running,
            slices_running=running,
            slices_done=done,
            records_left=planner.remaining(slices, prior),
            records_per_second=self._rate,
            position=min((lane.reached for lane in slices), default=None),
            done_records=done_records,
            done_seconds=done_seconds,
        )

    def position(self) -> float | None:
        """The oldest updated time not read yet: the slowest slice's, else the tail's."""
        slices = self.slices
        if slices:
            return min(lane.reached for lane in slices)
        tail = self.tail
        if tail is None or not tail.planned:
            return None
        return tail.position if tail.position is not None else tail.lo

    def resume(self, tail: Lane) -> tuple[Lane, ...]:
        """The lanes to fetch from: the committed ones, with ``tail`` if none is stored."""
        if TAIL_ID not in self.lanes:
            return (tail, *self.slices)
        return tuple(self.lanes.values())


def _stored_commit(value: bytes | None) -> dict[str, str]:
    try:
        data = json.loads(value) if value is not None else {}
        return {"at": str(data.get("at", "")), "by": str(data.get("by", ""))}
    except (ValueError, AttributeError, TypeError) as exc:
        raise FatalError(f"the state topic's commit entry is unreadable: {exc}") from None


def _span(lane: Lane) -> float:
    """The seconds of updated time a slice covered."""
    end = lane.end if lane.end is not None else lane.hi
    return float(end - lane.lo + 1) if end is not None and lane.lo is not None else 0.0


def _stored_catchup(value: bytes) -> tuple[int, float | None, int, float]:
    """Slices done, ETA, and the finished slices' records and seconds, from the entry."""
    try:
        data = json.loads(value)
        eta = data.get("eta_seconds")
        return (
            int(data.get("slices_done", 0)),
            float(eta) if eta is not None else None,
            int(data.get("done_records", 0)),
            float(data.get("done_seconds", 0.0)),
        )
    except (ValueError, AttributeError, TypeError) as exc:
        raise FatalError(f"the state topic's catch-up entry is unreadable: {exc}") from None
