"""Backfill progress: how far behind the source the connector is, and when it catches up.

The runner calls ``BackfillProgress.update`` after every commit with the committed
cursor position (the updated time of the last record, Unix seconds), the records that
commit covered, and whether the Data API said there was nothing more to read.

    pure part   ``ProgressTracker`` turns (monotonic time, wall time, position, records)
                samples into a ``Snapshot``: lag (now minus position), records/s and the
                position's rate of advance over a sliding window, the ETA (the lag shrinks
                at ``advance - 1`` seconds per second, since "now" moves on too), and the
                share done since the backfill began. ``render_line`` and ``log_fields``
                format a snapshot. No I/O, no clock of its own: tested with a fake clock.
    output      only while backfilling: from a commit that is more than ``far_behind``
                seconds behind with more pages to read, until the Data API says it is
                caught up. On a terminal (stderr is a TTY) a one-line bar redrawn in
                place; otherwise one ``backfill progress`` log line every ``log_every``
                seconds. A ``backfill caught up`` log line closes it either way.

Lag alone cannot say "caught up": a quiet source leaves the newest record hours old while
the connector has read everything. That is why the end is the runner's ``caught_up``.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from connector.checkpoint import CatchUp

log = logging.getLogger("connector.progress")

#: a commit this far behind now, with more to read, starts a backfill display
FAR_BEHIND_SECONDS = 600.0
#: without a terminal: one log line this often
LOG_EVERY_SECONDS = 15.0
#: on a terminal: redraw the bar at most this often
REDRAW_EVERY_SECONDS = 0.25
#: rates are measured over this much recent time
WINDOW_SECONDS = 30.0
BAR_WIDTH = 24


@dataclass(frozen=True)
class Snapshot:
    """Where a backfill stands at one moment."""

    position: float
    """updated time of the last committed record (Unix seconds)"""
    now: float
    """wall-clock time of the snapshot (Unix seconds)"""
    lag: float
    """now minus position, never negative"""
    records: int
    """records committed since the backfill began"""
    elapsed: float
    """seconds since the backfill began"""
    fraction: float | None
    """share of the distance from the starting position to now covered, 0..1"""
    records_per_second: float | None
    """over the window; None until two samples exist"""
    advance: float | None
    """position seconds gained per second, over the window"""
    estimated_eta: float | None = None
    """a backfill in slices: the ETA from the records left (``checkpoint.CatchUp``)"""

    @property
    def eta(self) -> float | None:
        """Seconds until the lag is gone at the current pace; None if it is not shrinking."""
        if self.estimated_eta is not None:
            return self.estimated_eta
        if self.advance is None or self.advance <= 1.0:
            return None
        return self.lag / (self.advance - 1.0)


class ProgressTracker:
    """Rates over a sliding window of samples; pure computation."""

    def __init__(self, start_position: float, start_time: float, window: float = WINDOW_SECONDS):
        self.start_position = start_position
        self.start_time = start_time
        self.window = window
        self.records = 0
        #: (monotonic time, position, records so far)
        self._samples: deque[tuple[float, float, int]] = deque()
        self._samples.append((start_time, start_position, 0))

    def add(self, t: float, now: float, position: float, records: int) -> Snapshot:
        """Record a commit at monotonic ``t`` (wall ``now``) of ``records`` more records."""
        self.records += records
        samples = self._samples
        samples.append((t, position, self.records))
        # keep one sample at or before the window's start, so the window is always covered
        while len(samples) > 2 and samples[1][0] <= t - self.window:
            samples.popleft()
        first_t, first_position, first_records = samples[0]
        span = t - first_t
        rate = advance = None
        if span > 0:
            rate = (self.records - first_records) / span
            advance = (position - first_position) / span
        distance = now - self.start_position
        fraction = None
        if distance > 0:
            fraction = min(1.0, max(0.0, (position - self.start_position) / distance))
        return Snapshot(
            position=position,
            now=now,
            lag=max(0.0, now - position),
            records=self.records,
            elapsed=t - self.start_time,
            fraction=fraction,
            records_per_second=rate,
            advance=advance,
        )


def format_duration(seconds: float | None) -> str:
    """``3d 04h``, ``2h 05m``, ``4m 10s``, ``12s``; ``?`` when unknown."""
    if seconds is None:
        return "?"
    s = round(max(0.0, seconds))
    days, s = divmod(s, 86_400)
    hours, s = divmod(s, 3_600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {s:02d}s"
    return f"{s}s"


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def render_line(snapshot: Snapshot, width: int = BAR_WIDTH) -> str:
    """The terminal line: bar, share done, position, lag, records/s and ETA."""
    fraction = snapshot.fraction or 0.0
    filled = round(fraction * width)
    bar = "#" * filled + "-" * (width - filled)
    rate = "?" if snapshot.records_per_second is None else f"{snapshot.records_per_second:,.0f}"
    return (
        f"backfill [{bar}] {fraction * 100:5.1f}%  at {_iso(snapshot.position)}  "
        f"{format_duration(snapshot.lag)} behind  {rate} rec/s  "
        f"ETA {format_duration(snapshot.eta)}"
    )


def log_fields(snapshot: Snapshot) -> dict[str, Any]:
    """The ``backfill progress`` log line's fields (stable names)."""

    def rounded(value: float | None, digits: int = 1) -> float | None:
        return None if value is None else round(value, digits)

    return {
        "position": _iso(snapshot.position),
        "lag_seconds": round(snapshot.lag),
        "percent": rounded(None if snapshot.fraction is None else snapshot.fraction * 100),
        "records": snapshot.records,
        "records_per_second": rounded(snapshot.records_per_second),
        "eta_seconds": None if snapshot.eta is None else round(snapshot.eta),
    }


class BackfillProgress:
    """Shows backfill progress while the connector is far behind; silent otherwise."""

    def __init__(
        self,
        *,
        stream: TextIO | None = None,
        is_tty: bool | None = None,
        far_behind: float = FAR_BEHIND_SECONDS,
        log_every: float = LOG_EVERY_SECONDS,
        redraw_every: float = REDRAW_EVERY_SECONDS,
        window: float = WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        logger: logging.Logger = log,
    ) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self.is_tty = self._stream.isatty() if is_tty is None else is_tty
        self.far_behind = far_behind
        self._log_every = log_every
        self._redraw_every = redraw_every
        self._window = window
        self._clock = clock
        self._wall = wall
        self._log = logger
        self._tracker: ProgressTracker | None = None
        self._sliced = False
        self._shown_at = -float("inf")
        self.last: Snapshot | None = None

    @property
    def active(self) -> bool:
        return self._tracker is not None

    def update(
        self,
        position: float | None,
        records: int,
        *,
        caught_up: bool,
        catchup: CatchUp | None = None,
    ) -> None:
        """After a commit: the committed position, the records it covered, whether the
        tail is caught up, and how a backfill in slices stands (if there is one)."""
        if catchup is not None and (catchup.active or self._sliced):
            self._update_sliced(catchup, records)
            return
        if position is None:
            return
        t, now = self._clock(), self._wall()
        if self._tracker is None:
            if caught_up or now - position <= self.far_behind:
                return
            self._tracker = ProgressTracker(position, t, self._window)
            self._shown_at = -float("inf")
            self._log.info(
                "backfill started",
                extra={"position": _iso(position), "lag_seconds": round(now - position)},
            )
            return
        snapshot = self.last = self._tracker.add(t, now, position, records)
        if caught_up:
            self._finish(snapshot)
            return
        self._show(snapshot, t)

    def _update_sliced(self, catchup: CatchUp, records: int) -> None:
        """A backfill in slices: from its first commit until no slice is left."""
        t, now = self._clock(), self._wall()
        position = catchup.position if catchup.position is not None else now
        if self._tracker is None:
            self._sliced = True
            self._tracker = ProgressTracker(position, t, self._window)
            self._shown_at = -float("inf")
            self._log.info(
                "backfill started",
                extra={
                    "position": _iso(position),
                    "slices": catchup.slices_pending + catchup.slices_running,
                },
            )
        snapshot = self._tracker.add(t, now, position, records)
        done = snapshot.records
        snapshot = self.last = replace(
            snapshot,
            fraction=done / (done + catchup.records_left) if done else 0.0,
            estimated_eta=catchup.eta_seconds,
        )
        if not catchup.active:
            self._sliced = False
            self._finish(snapshot)
            return
        self._show(snapshot, t)

    def _show(self, snapshot: Snapshot, t: float) -> None:
        if self.is_tty:
            if t - self._shown_at >= self._redraw_every:
                self._shown_at = t
                self._stream.write("\r\x1b[2K" + render_line(snapshot))
                self._stream.flush()
        elif t - self._shown_at >= self._log_every:
            self._shown_at = t
            self._log.info("backfill progress", extra=log_fields(snapshot))

    def _finish(self, snapshot: Snapshot) -> None:
        self._tracker = None
        if self.is_tty:
            self._stream.write(
                f"\r\x1b[2Kbackfill caught up at {_iso(snapshot.position)}: "
                f"{snapshot.records:,} records in {format_duration(snapshot.elapsed)}\n"
            )
            self._stream.flush()
        self._log.info(
            "backfill caught up",
            extra={
                "position": _iso(snapshot.position),
                "records": snapshot.records,
                "seconds": round(snapshot.elapsed, 1),
            },
        )
