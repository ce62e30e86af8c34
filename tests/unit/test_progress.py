"""Backfill progress: the arithmetic (lag, rates, ETA, share done) and when it shows what."""

from __future__ import annotations

import io
import logging

import pytest

from connector.observability.progress import (
    BackfillProgress,
    ProgressTracker,
    Snapshot,
    format_duration,
    log_fields,
    render_line,
)

NOW = 1_800_000_000.0  # wall clock at the start of every test
DAY = 86_400.0


class FakeClock:
    """One clock for both the monotonic and the wall time, moved by hand."""

    def __init__(self) -> None:
        self.t = 0.0

    def monotonic(self) -> float:
        return self.t

    def wall(self) -> float:
        return NOW + self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


class TtyStream(io.StringIO):
    def isatty(self) -> bool:
        return True


def active(progress: BackfillProgress) -> bool:
    return progress.active  # a call: mypy does not narrow it across updates


def make(
    clock: FakeClock, *, tty: bool, stream: io.StringIO | None = None, **options: float
) -> BackfillProgress:
    return BackfillProgress(
        stream=stream if stream is not None else io.StringIO(),
        is_tty=tty,
        clock=clock.monotonic,
        wall=clock.wall,
        logger=logging.getLogger("test.progress"),
        **options,
    )


def test_tracker_rates_eta_and_fraction() -> None:
    start = NOW - 10 * DAY
    tracker = ProgressTracker(start, 0.0, window=30.0)
    # 10 s later: 1000 records read, the position moved one day
    snap = tracker.add(10.0, NOW + 10.0, start + DAY, 1000)
    assert snap.records == 1000
    assert snap.records_per_second == pytest.approx(100.0)
    assert snap.advance == pytest.approx(DAY / 10)
    assert snap.lag == pytest.approx(9 * DAY + 10)
    # the lag shrinks at advance - 1 seconds per second (now moves on too)
    assert snap.eta == pytest.approx((9 * DAY + 10) / (DAY / 10 - 1))
    assert snap.fraction == pytest.approx(DAY / (10 * DAY + 10))
    assert snap.elapsed == pytest.approx(10.0)


def test_tracker_measures_over_the_window_only() -> None:
    start = NOW - 10 * DAY
    tracker = ProgressTracker(start, 0.0, window=30.0)
    position = start
    # a fast first minute: 1000 records/s, then a slow one: 10 records/s
    for second in range(1, 61):
        position += 3600
        tracker.add(float(second), NOW + second, position, 1000)
    for second in range(61, 121):
        position += 60
        snap = tracker.add(float(second), NOW + second, position, 10)
    # only the last 30 s count: the slow pace, not the average since the start
    assert snap.records_per_second == pytest.approx(10.0)
    assert snap.advance == pytest.approx(60.0)
    assert snap.records == 60 * 1000 + 60 * 10


def test_no_eta_while_the_lag_does_not_shrink() -> None:
    start = NOW - DAY
    tracker = ProgressTracker(start, 0.0)
    # the position advances at exactly wall speed: the lag stays the same
    snap = tracker.add(10.0, NOW + 10.0, start + 10.0, 50)
    assert snap.eta is None
    stuck = ProgressTracker(start, 0.0).add(10.0, NOW + 10.0, start, 0)
    assert stuck.eta is None and stuck.records_per_second == 0.0
    # a single sample (no time passed) has no rates at all
    first = ProgressTracker(start, 0.0).add(0.0, NOW, start, 0)
    assert first.records_per_second is None and first.advance is None and first.eta is None


def test_format_duration() -> None:
    assert format_duration(None) == "?"
    assert format_duration(12.4) == "12s"
    assert format_duration(250) == "4m 10s"
    assert format_duration(2 * 3600 + 5 * 60) == "2h 05m"
    assert format_duration(3 * DAY + 4 * 3600 + 59) == "3d 04h"
    assert format_duration(-5) == "0s"


def test_render_line_and_log_fields() -> None:
    snap = Snapshot(
        position=NOW - 2 * 3600,
        now=NOW,
        lag=2 * 3600,
        records=12345,
        elapsed=60.0,
        fraction=0.5,
        records_per_second=1234.4,
        advance=121.0,
    )
    line = render_line(snap, width=10)
    assert line.startswith("backfill [#####-----]  50.0%")
    assert "at 2027-01-15T06:00:00Z" in line
    assert "2h 00m behind" in line
    assert "1,234 rec/s" in line
    assert "ETA 1m 00s" in line  # 7200 s of lag shrinking at 120 s/s
    assert log_fields(snap) == {
        "position": "2027-01-15T06:00:00Z",
        "lag_seconds": 7200,
        "percent": 50.0,
        "records": 12345,
        "records_per_second": 1234.4,
        "eta_seconds": 60,
    }


def test_silent_when_not_far_behind_or_already_caught_up(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    stream = TtyStream()
    progress = make(clock, tty=True, stream=stream, far_behind=600)
    caplog.set_level(logging.INFO, "test.progress")
    for _ in range(10):
        clock.advance(1)
        progress.update(clock.wall() - 60, 100, caught_up=False)  # one minute behind
        progress.update(clock.wall() - 5 * DAY, 0, caught_up=True)  # old, but nothing more
        progress.update(None, 100, caught_up=False)  # no position known
    assert not active(progress)
    assert stream.getvalue() == ""
    assert caplog.records == []


def test_log_lines_every_interval_without_a_terminal(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    stream = io.StringIO()
    progress = make(clock, tty=False, stream=stream, log_every=15)
    caplog.set_level(logging.INFO, "test.progress")
    position = clock.wall() - 5 * DAY
    for _ in range(60):  # one commit every 0.5 s for 30 s, one hour of source per commit
        clock.advance(0.5)
        position += 3600
        progress.update(position, 500, caught_up=False)
    assert active(progress)
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == "backfill started"
    # the first progress line at once, then one per 15 s: at 1.0 s, 16.0 s
    progress_lines = [r for r in caplog.records if r.getMessage() == "backfill progress"]
    assert len(progress_lines) == 2
    last = progress_lines[-1]
    assert last.records_per_second == pytest.approx(1000.0)  # type: ignore[attr-defined]
    assert last.eta_seconds is not None and last.lag_seconds > 0  # type: ignore[attr-defined]
    assert stream.getvalue() == "", "no bar without a terminal"

    clock.advance(0.5)
    progress.update(clock.wall() - 1, 10, caught_up=True)
    assert not active(progress)
    done = caplog.records[-1]
    assert done.getMessage() == "backfill caught up"
    assert done.records == 59 * 500 + 10  # type: ignore[attr-defined]  # since the start
    assert done.seconds == 30.0  # type: ignore[attr-defined]


def test_bar_redrawn_in_place_on_a_terminal(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    stream = TtyStream()
    progress = make(clock, tty=True, stream=stream, redraw_every=0.25)
    caplog.set_level(logging.INFO, "test.progress")
    position = clock.wall() - DAY
    progress.update(position, 0, caught_up=False)
    for _ in range(8):  # every 0.1 s: redrawn at most every 0.25 s
        clock.advance(0.1)
        position += 600
        progress.update(position, 100, caught_up=False)
    draws = stream.getvalue().split("\r\x1b[2K")[1:]
    assert len(draws) == 3  # at 0.1, 0.4 (>= 0.35), 0.7 s
    assert all(d.startswith("backfill [") and "\n" not in d for d in draws)
    assert "rec/s" in draws[-1] and "ETA" in draws[-1]
    assert [r.getMessage() for r in caplog.records] == ["backfill started"]

    clock.advance(0.1)
    progress.update(clock.wall(), 100, caught_up=True)
    assert stream.getvalue().endswith("records in 1s\n")
    assert "backfill caught up at" in stream.getvalue()
    assert caplog.records[-1].getMessage() == "backfill caught up"


def test_starts_again_after_falling_far_behind_later() -> None:
    clock = FakeClock()
    progress = make(clock, tty=False)
    progress.update(clock.wall() - 2 * DAY, 10, caught_up=False)
    assert active(progress)
    clock.advance(1)
    progress.update(clock.wall(), 10, caught_up=True)
    assert not active(progress)
    clock.advance(3 * 3600)  # an outage: the next commit is three hours behind
    progress.update(clock.wall() - 3 * 3600, 10, caught_up=False)
    assert active(progress)
