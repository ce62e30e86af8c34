"""A living workload: learners start sessions, save them, submit them; sessions get
scored, rescored, discarded. Every change gets a fresh updated time and a truth record.

Lifecycle (docs/data-api.md, "Session statuses, and why the same session comes back"):

    created ──> Incomplete ──save──> Incomplete      (only dt_saved and the time move)
                Incomplete ──submit──> Completed      (scored at once), or
                Incomplete ──submit──> Pending Scoring ──scored──> Completed
                Completed  ──rescore──> Completed     (new scores)
                Completed / Incomplete ──discard──> Discarded
                Completed  ──reopen──> Incomplete     (an administrator)

Deterministic for a seed and a clock: every draw comes from one RNG, every time from
the clock. The clock only decides *when* a tick applies changes and what time they get.
All public methods take the emulator's lock: tests call them from their own thread while
the server reads the store from its event loop.
"""

from __future__ import annotations

import gc
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

from connector.emulator import truth as changes
from connector.emulator.catalog import (
    Catalog,
    rescored_marks,
    total_score,
    unscored_marks,
    uuid_from,
)
from connector.emulator.records import (
    COMPLETED,
    DISCARDED,
    INCOMPLETE,
    PENDING_SCORING,
    ActivityShape,
    SessionState,
)
from connector.emulator.store import SessionStore
from connector.emulator.truth import TruthLog

Clock = Callable[[], float]

#: how `step` picks a change (when its kind of session exists)
CHANGE_WEIGHTS: Final = (
    (changes.SAVED, 45),
    (changes.SUBMITTED, 25),
    (changes.SCORED, 10),
    (changes.RESCORED, 12),
    (changes.DISCARDED, 5),
    (changes.REOPENED, 3),
)
#: status mix of the initial sessions
INITIAL_STATUS_WEIGHTS: Final = (
    (COMPLETED, 70),
    (INCOMPLETE, 20),
    (PENDING_SCORING, 5),
    (DISCARDED, 5),
)
#: a tick never applies more than this many changes (a paused process does not flood)
MAX_CHANGES_PER_TICK: Final = 100_000


@dataclass(frozen=True)
class WorkloadConfig:
    seed: int = 1
    users: int = 200
    activities: int = 12
    #: sessions that exist at start, updated over the past ``history_days``
    sessions: int = 1000
    history_days: float = 7.0
    new_sessions_per_second: float = 0.0
    changes_per_second: float = 0.0


def _cumulative(weights: tuple[tuple[str, int], ...]) -> list[tuple[float, str]]:
    total = sum(w for _, w in weights)
    out, running = [], 0
    for name, weight in weights:
        running += weight
        out.append((running / total, name))
    return out


def _pick(thresholds: list[tuple[float, str]], draw: float) -> str:
    for threshold, name in thresholds:
        if draw < threshold:
            return name
    return thresholds[-1][1]


def _uuid(bits: int) -> str:
    """A version-4 UUID string from 128 random bits."""
    h = f"{bits:032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[bits & 3]}{h[17:20]}-{h[20:]}"


class _Pool:
    """A set of session ids with O(1) add, remove and random choice."""

    def __init__(self) -> None:
        self._items: list[str] = []
        self._where: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._items)

    def add(self, item: str) -> None:
        if item not in self._where:
            self._where[item] = len(self._items)
            self._items.append(item)

    def discard(self, item: str) -> None:
        index = self._where.pop(item, None)
        if index is None:
            return
        last = self._items.pop()
        if index < len(self._items):
            self._items[index] = last
            self._where[last] = index

    def choice(self, rng: random.Random) -> str:
        return self._items[rng.randrange(len(self._items))]


class Workload:
    def __init__(
        self,
        store: SessionStore,
        truth: TruthLog,
        catalog: Catalog,
        *,
        rng: random.Random,
        clock: Clock = time.time,
        lock: threading.RLock | None = None,
        new_sessions_per_second: float = 0.0,
        changes_per_second: float = 0.0,
    ) -> None:
        self.store = store
        self.truth = truth
        self.catalog = catalog
        self.rng = rng
        self.clock = clock
        self.lock = lock or threading.RLock()
        self.new_sessions_per_second = new_sessions_per_second
        self.changes_per_second = changes_per_second
        self._incomplete = _Pool()
        self._pending = _Pool()
        self._all: list[str] = []
        self._due_new = 0.0
        self._due_changes = 0.0
        self._depth = 0

    @classmethod
    def generate(
        cls,
        config: WorkloadConfig,
        store: SessionStore,
        truth: TruthLog,
        *,
        clock: Clock = time.time,
        lock: threading.RLock | None = None,
    ) -> Workload:
        rng = random.Random(config.seed)
        catalog = Catalog.generate(rng, config.users, config.activities)
        workload = cls(
            store,
            truth,
            catalog,
            rng=rng,
            clock=clock,
            lock=lock,
            new_sessions_per_second=config.new_sessions_per_second,
            changes_per_second=config.changes_per_second,
        )
        workload.populate(config.sessions, config.history_days)
        return workload

    def adopt(self, states: list[SessionState]) -> None:
        """Take in sessions loaded from a file (ascending, unique updated times)."""
        with self._locked():
            for state in states:
                self.store.put(state)
                self._track(state, new=True)
                self.truth.change(changes.CREATED, state, initial=True)

    # --- the initial population ------------------------------------------------------
    def populate(self, count: int, history_days: float) -> None:
        """``count`` sessions updated over the past ``history_days``, generated in order."""
        if count <= 0:
            return
        end = self._now_us()
        span = max(int(history_days * 86_400_000_000), count)
        start = max(end - span, self.store.last_us + 1)
        step = max((end - start) // count, 1)
        # A million new objects would trigger hundreds of useless full collections.
        collecting = gc.isenabled()
        gc.disable()
        try:
            states = self._generate(count, start, step)
        finally:
            if collecting:
                gc.enable()
        with self._locked():
            self.store.extend(states)
            self._all.extend(s.session_id for s in states)
            for state in states:
                if state.status == INCOMPLETE:
                    self._incomplete.add(state.session_id)
                elif state.status == PENDING_SCORING:
                    self._pending.add(state.session_id)
                self.truth.change(changes.CREATED, state, initial=True)

    def _generate(self, count: int, start: int, step: int) -> list[SessionState]:
        """The hot loop of start-up (a million sessions should take seconds): plain
        ``random()`` draws, marks from the catalog's pools, positional construction."""
        catalog = self.catalog
        thresholds = _cumulative(INITIAL_STATUS_WEIGHTS)
        users = catalog.users
        prepared = [
            (
                a,
                unscored_marks(a),
                [(m, total_score(m)) for m in catalog.scored_pool[id(a)]],
                catalog.pending_pool[id(a)],
            )
            for a in catalog.activities
        ]
        n_users, n_activities = len(users), len(prepared)
        # The session id's 128 random bits also pick everything else about the session:
        # one draw per session (modulo bias is negligible at these widths).
        completed_below = int(thresholds[0][0] * 1024)
        draw_bits = self.rng.getrandbits
        states: list[SessionState] = []
        append = states.append
        for index in range(count):
            word = draw_bits(128)
            updated = start + index * step + ((word >> 70) & 0xFFFFFFFF) % step
            activity, unscored, scored, pending = prepared[((word >> 10) & 0xFFFFF) % n_activities]
            marks_pick = (word >> 50) & 0xFFFFF
            bucket = word & 1023
            score = None
            if bucket < completed_below:
                status = COMPLETED
                marks, score = scored[marks_pick % len(scored)]
            else:
                status = _pick(thresholds, bucket / 1024)
                if status == INCOMPLETE:
                    marks = unscored
                elif status == PENDING_SCORING:
                    marks = pending[marks_pick % len(pending)]
                else:
                    marks, score = scored[marks_pick % len(scored)]
            append(
                SessionState(
                    _uuid(word),
                    users[((word >> 26) & 0xFFFFFF) % n_users],
                    activity,
                    status,
                    marks,
                    score,
                    activity.max_score,
                    updated - 60_000_000 - ((word >> 102) & 0x3FFFFFF) * 100,
                    updated,
                    None if status == INCOMPLETE else updated,
                    updated,
                )
            )
        return states

    # --- changes, one at a time (tests call these) ----------------------------------
    def create(self, user_id: str | None = None, activity_id: str | None = None) -> SessionState:
        """A learner starts a session: ``Incomplete``, nothing attempted, no score."""
        with self._locked():
            rng = self.rng
            activity = (
                self._activity(activity_id)
                if activity_id is not None
                else self.catalog.activities[rng.randrange(len(self.catalog.activities))]
            )
            user = user_id or self.catalog.users[rng.randrange(len(self.catalog.users))]
            session_id = uuid_from(rng)
            now = self.store.next_time(self._now_us())
            marks = unscored_marks(activity)
            state = SessionState(
                session_id=session_id,
                user_id=user,
                activity=activity,
                status=INCOMPLETE,
                marks=marks,
                score=None,
                max_score=activity.max_score,
                started_us=now,
                saved_us=now,
                completed_us=None,
                updated_us=now,
            )
            self.store.put(state)
            self._track(state, new=True)
            self.truth.change(changes.CREATED, state)
            return state

    def save(self, session_id: str) -> SessionState:
        """A save that changes nothing that matters: only ``dt_saved`` and the time move."""
        with self._locked():
            old = self._get(session_id)
            now = self.store.next_time(self._now_us())
            return self._apply(changes.SAVED, old, now, saved_us=now)

    def submit(self, session_id: str, *, pending: bool | None = None) -> SessionState:
        """``Incomplete`` → ``Completed`` with scores, or → ``Pending Scoring``."""
        with self._locked():
            old = self._get(session_id)
            rng = self.rng
            if pending is None:
                pending = rng.random() < 0.2
            now = self.store.next_time(self._now_us())
            if pending:
                marks = self.catalog.pending(rng, old.activity)
                status, score = PENDING_SCORING, None
            else:
                marks = self.catalog.scored(rng, old.activity)
                status, score = COMPLETED, total_score(marks)
            return self._apply(
                changes.SUBMITTED,
                old,
                now,
                status=status,
                marks=marks,
                score=score,
                saved_us=now,
                completed_us=now,
            )

    def finish_scoring(self, session_id: str) -> SessionState:
        """``Pending Scoring`` → ``Completed``: the missing subscores get their scores."""
        with self._locked():
            old = self._get(session_id)
            scored = self.catalog.scored(self.rng, old.activity)
            marks = tuple(
                mark if mark[1] is not None else new
                for mark, new in zip(old.marks, scored, strict=True)
            )
            now = self.store.next_time(self._now_us())
            return self._apply(
                changes.SCORED, old, now, status=COMPLETED, marks=marks, score=total_score(marks)
            )

    def rescore(self, session_id: str) -> SessionState:
        """Scores change after the status did (scoring is asynchronous)."""
        with self._locked():
            old = self._get(session_id)
            marks = rescored_marks(self.rng, old.activity, old.marks)
            now = self.store.next_time(self._now_us())
            return self._apply(changes.RESCORED, old, now, marks=marks, score=total_score(marks))

    def discard(self, session_id: str) -> SessionState:
        with self._locked():
            old = self._get(session_id)
            now = self.store.next_time(self._now_us())
            return self._apply(changes.DISCARDED, old, now, status=DISCARDED)

    def reopen(self, session_id: str) -> SessionState:
        """An administrator sets a session back to ``Incomplete`` (scores stay)."""
        with self._locked():
            old = self._get(session_id)
            now = self.store.next_time(self._now_us())
            return self._apply(changes.REOPENED, old, now, status=INCOMPLETE)

    # --- changes in bulk -------------------------------------------------------------
    def step(self, count: int = 1) -> list[SessionState]:
        """``count`` random changes to existing sessions (a new session when none fits)."""
        with self._locked():
            return [self._random_change() for _ in range(count)]

    def create_sessions(self, count: int) -> list[SessionState]:
        with self._locked():
            return [self.create() for _ in range(count)]

    def advance(self, seconds: float) -> int:
        """What ``seconds`` of the configured rates bring: the background tick's work."""
        self._due_new += self.new_sessions_per_second * seconds
        self._due_changes += self.changes_per_second * seconds
        new, changes_due = int(self._due_new), int(self._due_changes)
        self._due_new -= new
        self._due_changes -= changes_due
        new, changes_due = min(new, MAX_CHANGES_PER_TICK), min(changes_due, MAX_CHANGES_PER_TICK)
        with self._locked():
            for _ in range(new):
                self.create()
            for _ in range(changes_due):
                self._random_change()
        return new + changes_due

    # --- helpers ---------------------------------------------------------------------
    def _random_change(self) -> SessionState:
        rng = self.rng
        kinds = [k for k, _ in CHANGE_WEIGHTS]
        weights = [w for _, w in CHANGE_WEIGHTS]
        kind = rng.choices(kinds, weights)[0]
        apply: dict[str, Callable[[str], SessionState]] = {
            changes.SAVED: self.save,
            changes.SUBMITTED: self.submit,
            changes.SCORED: self.finish_scoring,
            changes.RESCORED: self.rescore,
            changes.DISCARDED: self.discard,
            changes.REOPENED: self.reopen,
        }
        target: str | None = None
        if kind in (changes.SAVED, changes.SUBMITTED) and self._incomplete:
            target = self._incomplete.choice(rng)
        elif kind == changes.SCORED and self._pending:
            target = self._pending.choice(rng)
        elif kind in (changes.RESCORED, changes.DISCARDED, changes.REOPENED):
            target = self._some_with(COMPLETED)
        if target is not None:
            return apply[kind](target)
        if self._incomplete:
            return self.save(self._incomplete.choice(self.rng))
        return self.create()

    def _some_with(self, status: str, tries: int = 8) -> str | None:
        """A random session with ``status`` (a few draws; sessions are many)."""
        for _ in range(tries):
            if not self._all:
                return None
            session_id = self._all[self.rng.randrange(len(self._all))]
            state = self.store.get(session_id)
            if state is not None and state.status == status:
                return session_id
        return None

    def _apply(self, change: str, old: SessionState, now: int, **fields: Any) -> SessionState:
        state = old.evolve(now, **fields)
        self.store.put(state)
        self._track(state)
        self.truth.change(change, state, old.status)
        return state

    def _track(self, state: SessionState, *, new: bool = False) -> None:
        session_id = state.session_id
        if new:
            self._all.append(session_id)
        if state.status == INCOMPLETE:
            self._incomplete.add(session_id)
        else:
            self._incomplete.discard(session_id)
        if state.status == PENDING_SCORING:
            self._pending.add(session_id)
        else:
            self._pending.discard(session_id)

    def _get(self, session_id: str) -> SessionState:
        state = self.store.get(session_id)
        if state is None:
            raise KeyError(f"no session {session_id!r}")
        return state

    def _activity(self, activity_id: str) -> ActivityShape:
        for activity in self.catalog.activities:
            if activity.activity_id == activity_id:
                return activity
        raise KeyError(f"no activity {activity_id!r}")

    def _now_us(self) -> int:
        return int(self.clock() * 1_000_000)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """The lock, and a truth flush when the outermost public call ends (so a reader
        of the file sees each call's changes whole)."""
        with self.lock:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self.truth.flush()

    def sessions_by_status(self) -> dict[str, int]:
        with self.lock:
            counts: dict[str, int] = {}
            for state in self.store.sessions():
                counts[state.status] = counts.get(state.status, 0) + 1
            return counts
