"""Every session's current version, and the index that pages are read from.

The index is ordered by updated time, which is unique per version (``next_time`` hands
out ``max(now, last + 1)`` microseconds), so the order (updated time, session id) is the
order of updated time alone and a position is one integer. An update always gets the
newest time, so it appends to the index and marks the old entry superseded: no insertion
in the middle, ever. Superseded entries are skipped while scanning and dropped by a
compaction once they are half of the index.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from connector.emulator.records import SessionState

Predicate = Callable[[SessionState], bool]

#: compaction waits for at least this many superseded entries (small stores never bother)
COMPACT_MIN_STALE = 4096


@dataclass(frozen=True, slots=True)
class Window:
    """Where a page may come from: ``[low_us, high_us)`` in updated time, then strictly
    after (ascending) or before (descending) ``position_us`` if a token was given."""

    low_us: int = 0
    high_us: int = 2**62
    position_us: int | None = None
    descending: bool = False


class SessionStore:
    def __init__(self, compact_min_stale: int = COMPACT_MIN_STALE) -> None:
        self.compact_min_stale = compact_min_stale
        self._times = array("q")
        self._entries: list[SessionState] = []
        self._current: dict[str, SessionState] = {}
        self._by_user: dict[str, list[str]] = {}
        self._stale = 0
        self.last_us = 0

    # --- reading ---------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._current)

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._current

    def get(self, session_id: str) -> SessionState | None:
        return self._current.get(session_id)

    def sessions(self) -> Iterator[SessionState]:
        """Current versions in index order (ascending updated time)."""
        return (s for s in self._entries if not s.superseded)

    def user_sessions(self, user_id: str) -> list[str]:
        return self._by_user.get(user_id, [])

    @property
    def index_size(self) -> int:
        return len(self._entries)

    # --- writing ---------------------------------------------------------------------
    def next_time(self, now_us: int) -> int:
        """The updated time for the next version: now, but strictly after every other."""
        return now_us if now_us > self.last_us else self.last_us + 1

    def put(self, state: SessionState) -> None:
        """Add a new session or a new version of one; its time must be the newest."""
        if state.updated_us <= self.last_us:
            raise ValueError("a new version must be newer than every other (use next_time)")
        old = self._current.get(state.session_id)
        if old is None:
            self._by_user.setdefault(state.user_id, []).append(state.session_id)
        else:
            old.superseded = True
            self._stale += 1
        self._current[state.session_id] = state
        self._times.append(state.updated_us)
        self._entries.append(state)
        self.last_us = state.updated_us
        if self._stale >= self.compact_min_stale and self._stale * 2 >= len(self._entries):
            self.compact()

    def extend(self, states: list[SessionState]) -> None:
        """Bulk :meth:`put` of *new* sessions already in ascending, unique time order."""
        last, current = self.last_us, self._current
        for state in states:
            if state.updated_us <= last or state.session_id in current:
                raise ValueError("extend takes new sessions in strictly ascending time order")
            last = state.updated_us
            current[state.session_id] = state
            self._by_user.setdefault(state.user_id, []).append(state.session_id)
        self._times.extend(s.updated_us for s in states)
        self._entries.extend(states)
        self.last_us = last

    def compact(self) -> None:
        live = [s for s in self._entries if not s.superseded]
        self._entries = live
        self._times = array("q", (s.updated_us for s in live))
        self._stale = 0

    # --- pages -----------------------------------------------------------------------
    def page(
        self,
        window: Window,
        limit: int,
        predicate: Predicate | None = None,
        candidates: Iterable[str] | None = None,
    ) -> list[SessionState]:
        """Up to ``limit`` current versions in the window, in the window's order.

        ``candidates`` (session ids), when a filter names them, replaces the index scan:
        a handful of sessions is sorted faster than the index is scanned for them.
        """
        if candidates is not None:
            return self._page_of(candidates, window, limit, predicate)
        times, entries = self._times, self._entries
        low = bisect_left(times, window.low_us)
        high = bisect_left(times, window.high_us)
        out: list[SessionState] = []
        if not window.descending:
            i = (
                low
                if window.position_us is None
                else max(low, bisect_right(times, window.position_us))
            )
            while i < high:
                state = entries[i]
                i += 1
                if state.superseded or (predicate is not None and not predicate(state)):
                    continue
                out.append(state)
                if len(out) >= limit:
                    break
        else:
            i = (
                high
                if window.position_us is None
                else min(high, bisect_left(times, window.position_us))
            )
            while i > low:
                i -= 1
                state = entries[i]
                if state.superseded or (predicate is not None and not predicate(state)):
                    continue
                out.append(state)
                if len(out) >= limit:
                    break
        return out

    def _page_of(
        self,
        session_ids: Iterable[str],
        window: Window,
        limit: int,
        predicate: Predicate | None,
    ) -> list[SessionState]:
        position = window.position_us
        chosen = []
        for session_id in dict.fromkeys(session_ids):
            state = self._current.get(session_id)
            if state is None or not window.low_us <= state.updated_us < window.high_us:
                continue
            if position is not None and (
                state.updated_us <= position
                if not window.descending
                else state.updated_us >= position
            ):
                continue
            if predicate is None or predicate(state):
                chosen.append(state)
        chosen.sort(key=_updated, reverse=window.descending)
        return chosen[:limit]


def _updated(state: SessionState) -> int:
    return state.updated_us
