"""The checkpoint: what the state topic holds, and what one transaction adds to it."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from connector import __version__
from connector.catchup.lanes import TAIL_ID, Lane, LaneFormatError, unplanned_tail
from connector.changes.state import NewerStateFormatError, SessionEntry, encode_entry
from connector.checkpoint import CATCHUP_KEY, COMMIT_KEY, Batch, CatchUp, Checkpoint
from connector.errors import FatalError

TAIL = Lane(TAIL_ID, lo=1_000, token="t9", position=1_500.5, records=40, seq=3)


def slice_of(lane_id: str, lo: int, end: int, **changes: Any) -> Lane:
    """A slice responsible for [lo, end]."""
    return Lane(**{"id": lane_id, "lo": lo, "hi": end + 1, "end": end, **changes})


def entry(lane: Lane) -> tuple[bytes, bytes | None]:
    return lane.key, lane.encode()


def restored(*entries: tuple[bytes, bytes | None]) -> Checkpoint:
    """A checkpoint read back from ``entries``, in the topic's order."""
    checkpoint = Checkpoint()
    for key, value in entries:
        checkpoint.restore(key, value)
    return checkpoint


def batch_of(*lanes: Lane, slice_records: int = 0, **sessions: SessionEntry) -> Batch:
    batch = Checkpoint().begin(0.0)
    for lane in lanes:
        batch.take_lane(lane)
    batch.updates.update(sessions)
    batch.slice_records = slice_records
    return batch


# --- restore -----------------------------------------------------------------------------
def test_restore_reads_sessions_the_tail_and_the_slices() -> None:
    s1, s2 = slice_of("s1", 0, 99), slice_of("s2", 99, 199, token="a", records=5, position=120.0)
    checkpoint = restored(
        encode_entry("session-1", SessionEntry(7, "Completed", 1_234_567)),
        entry(TAIL),
        entry(s1),
        entry(s2),
        (CATCHUP_KEY, json.dumps({"slices_done": 4, "eta_seconds": 12}).encode()),
    )
    assert checkpoint.sessions.get("session-1") == SessionEntry(7, "Completed", 1_234_567)
    assert checkpoint.tail == TAIL
    assert checkpoint.slices == [s1, s2]
    assert checkpoint.slices_done == 4 and checkpoint.stored_eta == 12.0


def test_restore_keeps_the_last_entry_of_a_key_and_a_tombstone_removes() -> None:
    s1 = slice_of("s1", 0, 99)
    checkpoint = restored(
        entry(s1),
        entry(replace(s1, token="b", seq=1)),
        entry(slice_of("s2", 99, 199)),
        (b"slice:s2", None),
        encode_entry("gone", SessionEntry(1, "Completed")),
        encode_entry("gone", None),
    )
    assert checkpoint.slices == [replace(s1, token="b", seq=1)]
    assert checkpoint.tail is None and "gone" not in checkpoint.sessions


def test_a_catchup_tombstone_is_ignored_and_garbage_is_refused() -> None:
    assert restored((CATCHUP_KEY, None)).slices_done == 0
    with pytest.raises(FatalError, match="catch-up entry"):
        restored((CATCHUP_KEY, b"{not json"))
    with pytest.raises(FatalError, match="commit entry"):
        restored((COMMIT_KEY, b"[1]"))
    with pytest.raises(LaneFormatError, match="reset"):
        restored((b"slice:s1", b'{"v":9}'))


# --- one transaction ---------------------------------------------------------------------
def test_messages_hold_sessions_lanes_tombstones_and_the_catchup_entry() -> None:
    checkpoint = restored(entry(TAIL), entry(slice_of("s1", 0, 99)), entry(slice_of("s2", 99, 199)))
    moved_tail = replace(TAIL, token="t10", seq=4)
    done = slice_of("s1", 0, 99, token="z", records=60, position=100.0, done=True, seq=5)
    batch = batch_of(moved_tail, done, a=SessionEntry(1, "Completed", 5_000))
    messages = dict(checkpoint.messages(batch))
    assert messages[b"s:a"] == encode_entry("a", SessionEntry(1, "Completed", 5_000))[1]
    assert messages[b"cursor"] == moved_tail.encode()
    assert b"slice:s1" in messages and messages[b"slice:s1"] is None  # a tombstone
    catchup = messages[CATCHUP_KEY]
    assert catchup is not None
    content = json.loads(catchup)
    assert content["slices_done"] == 1 and content["slices_pending"] == 1
    assert content["slices_running"] == 0
    assert restored((CATCHUP_KEY, catchup)).slices_done == 1


def test_no_catchup_entry_when_only_the_tail_moved_and_always_a_commit_entry() -> None:
    messages = list(Checkpoint().messages(batch_of(TAIL)))
    assert [key for key, _ in messages] == [b"cursor", COMMIT_KEY]
    assert messages[0] == (b"cursor", TAIL.encode())
    commit = messages[1][1]
    assert commit is not None and json.loads(commit)["by"] == __version__
    assert restored(messages[1]).last_commit == json.loads(commit)


def test_a_batch_keeps_the_newest_version_of_each_lane_and_knows_when_it_is_dirty() -> None:
    assert not batch_of().dirty
    batch = batch_of()
    old, new = slice_of("s1", 0, 99, seq=1), slice_of("s1", 0, 99, seq=2, token="n")
    batch.take_lane(new)
    batch.take_lane(old)  # arrived late: the seq decides
    assert batch.lanes == {"s1": new} and batch.dirty
    assert batch_of(a=SessionEntry(1, None)).dirty
    dead = batch_of()
    dead.dead_letters["wrong_type"] = 1
    assert dead.dirty


def test_apply_moves_lanes_in_removes_done_slices_and_counts_them() -> None:
    s1, s2 = slice_of("s1", 0, 99), slice_of("s2", 99, 199)
    checkpoint = restored(entry(TAIL), entry(s1), entry(s2))
    checkpoint.restore(CATCHUP_KEY, json.dumps({"slices_done": 2}).encode())
    running = replace(s2, token="x", records=50, position=150.0, seq=1)
    batch = batch_of(replace(s1, done=True, seq=1), running, a=SessionEntry(3, "Completed"))
    before = checkpoint.catchup(batch)
    checkpoint.apply(batch, now=10.0)
    assert checkpoint.slices == [running] and checkpoint.tail == TAIL
    assert checkpoint.slices_done == 3
    assert checkpoint.sessions.get("a") == SessionEntry(3, "Completed")
    after = checkpoint.catchup()
    assert (before.slices_done, before.slices_running, before.slices_pending) == (3, 1, 0)
    assert (after.slices_done, after.slices_running, after.slices_pending) == (3, 1, 0)


def test_nothing_changes_before_apply() -> None:
    checkpoint = restored(entry(TAIL))
    batch = batch_of(replace(TAIL, seq=9), a=SessionEntry(1, "Completed"))
    list(checkpoint.messages(batch))
    checkpoint.catchup(batch)
    assert checkpoint.tail == TAIL and "a" not in checkpoint.sessions


# --- where the catch-up stands -----------------------------------------------------------
def test_catchup_counts_slices_and_gives_an_eta_once_a_rate_is_known() -> None:
    pending = slice_of("s1", 0, 999)
    running = slice_of("s2", 1_000, 1_999, token="t", records=200, position=1_100.0)  # 2/s
    checkpoint = restored(entry(TAIL), entry(pending), entry(running))
    first = checkpoint.catchup()
    assert (first.slices_pending, first.slices_running, first.slices_done) == (1, 1, 0)
    assert first.records_left == pytest.approx(2 * 900 + 2 * 1_000)  # by their density
    assert first.records_per_second is None and first.eta_seconds is None and first.active
    assert first.position == 0.0  # the pending slice has read nothing yet
    checkpoint.apply(batch_of(slice_records=0), now=100.0)
    checkpoint.apply(batch_of(slice_records=500), now=110.0)  # 50 records/s
    known = checkpoint.catchup()
    assert known.records_per_second == pytest.approx(50.0)
    assert known.eta_seconds == pytest.approx(known.records_left / 50.0)


def test_the_rate_is_a_moving_average_over_commits() -> None:
    checkpoint = restored(entry(slice_of("s1", 0, 999, token="t", records=10, position=10.0)))
    for now, records in [(0.0, 0), (10.0, 1_000), (20.0, 2_000)]:
        checkpoint.apply(batch_of(slice_records=records), now=now)
    assert checkpoint.catchup().records_per_second == pytest.approx(100 + 0.2 * (200 - 100))


def finishing_s1() -> tuple[Checkpoint, Lane, Batch]:
    """Two slices committed, not started; a batch that finishes the first, at 3 records/s."""
    pending = slice_of("s2", 1_000, 1_999)
    checkpoint = restored(entry(slice_of("s1", 0, 999)), entry(pending))
    done = slice_of("s1", 0, 999, token="z", records=3_000, position=1_000.0, done=True, seq=1)
    return checkpoint, pending, batch_of(done)


def test_finished_slices_give_their_density_to_the_estimate() -> None:
    """What the finished slices covered (records over seconds) estimates the slices not
    started yet."""
    checkpoint, _, batch = finishing_s1()
    checkpoint.apply(batch, now=1.0)
    assert (checkpoint.done_records, checkpoint.done_seconds) == (3_000, 1_000.0)
    assert checkpoint.catchup().records_left == pytest.approx(3.0 * 1_000)


def test_the_catchup_entry_counts_the_slices_its_batch_finishes() -> None:
    """The entry a commit writes describes the state after it (``catchup(batch)``: "as if
    committed"), so a restart restores the finished slices' records and seconds as well
    as their count."""
    checkpoint, pending, batch = finishing_s1()
    written = dict(checkpoint.messages(batch))[CATCHUP_KEY]
    assert written is not None
    content = json.loads(written)
    assert (content["slices_done"], content["done_records"], content["done_seconds"]) == (
        1,
        3_000,
        1_000.0,
    )
    again = restored(entry(pending), (CATCHUP_KEY, written))
    assert (again.slices_done, again.done_records, again.done_seconds) == (1, 3_000, 1_000.0)
    assert again.catchup().records_left == pytest.approx(3.0 * 1_000)


def test_a_finished_catchup_is_inactive_with_no_time_left() -> None:
    done = CatchUp(0, 0, 7, 0.0, None, None)
    assert not done.active and done.eta_seconds == 0.0
    assert json.loads(done.encode())["eta_seconds"] == 0.0
    assert Checkpoint().catchup() == CatchUp(0, 0, 0, 0.0, None, None)


def test_position_is_the_slowest_slices_else_the_tails() -> None:
    assert Checkpoint().position() is None
    assert restored(entry(TAIL)).position() == 1_500.5
    assert restored(entry(replace(TAIL, position=None))).position() == 1_000  # its start
    assert restored(entry(unplanned_tail(None))).position() is None
    behind = restored(
        entry(TAIL),
        entry(slice_of("s1", 100, 199, token="a", records=1, position=150.25)),
        entry(slice_of("s2", 199, 299)),
    )
    assert behind.position() == 150.25
    assert behind.catchup().position == 150.25


def test_resume_gives_the_committed_lanes_or_the_start_when_none_is_committed() -> None:
    start = unplanned_tail(None)
    assert Checkpoint().resume(start) == (start,)
    s1 = slice_of("s1", 0, 99)
    assert restored(entry(TAIL), entry(s1)).resume(start) == (TAIL, s1)
    # slices without a tail (a topic written half-way): the start comes back with them
    assert restored(entry(s1)).resume(start) == (start, s1)


# --- versions that arrive late -----------------------------------------------------------
def test_an_older_version_of_a_finished_slice_does_not_bring_it_back() -> None:
    """Versions of a lane may arrive in any order (``lanes``: the seq decides). When a
    slice's done version is committed and an older version of it (a split's announcement
    handed over after the slice's last page) lands in the next batch, the slice must stay
    finished: otherwise it is written back to the state topic, counted running forever,
    and holds ``position()`` back."""
    lowered = slice_of("s1", 0, 49, hi=100, token="a", records=60, position=30.0, seq=6)
    checkpoint = restored(entry(TAIL), entry(replace(lowered, end=99, seq=5)))
    checkpoint.apply(batch_of(replace(lowered, position=55.0, done=True, seq=7)), now=1.0)
    late = batch_of(lowered)
    written = dict(checkpoint.messages(late))
    checkpoint.apply(late, now=2.0)
    assert written.get(b"slice:s1") is None
    assert checkpoint.slices == [] and checkpoint.slices_done == 1
    assert checkpoint.position() == TAIL.position


def test_an_older_version_committed_later_does_not_replace_a_newer_one() -> None:
    """Of two committed versions of a lane, the state keeps the one with the higher seq."""
    newer = slice_of("s1", 0, 99, token="b", records=100, position=80.0, seq=8)
    checkpoint = restored(entry(TAIL))
    checkpoint.apply(batch_of(newer), now=1.0)
    checkpoint.apply(batch_of(replace(newer, token="a", position=40.0, seq=7)), now=2.0)
    assert checkpoint.slices == [newer]


def test_a_damaged_session_entry_is_skipped_and_its_session_forgotten() -> None:
    """One unreadable entry must not stop every start: that session is published again."""
    checkpoint = Checkpoint()
    checkpoint.restore(*encode_entry("a", SessionEntry(1, "Completed", 5)))
    checkpoint.restore(*encode_entry("b", SessionEntry(2, "Completed", 5)))
    checkpoint.restore(b"s:a", b"\x02short")  # damaged: the latest entry of "a"
    checkpoint.restore(b"foreign-key", b"whatever")  # not ours at all
    assert "a" not in checkpoint.sessions and "b" in checkpoint.sessions
    assert checkpoint.unreadable == 2
    assert len(checkpoint.unreadable_examples) == 2


def test_an_entry_of_a_newer_format_is_refused_with_a_remedy() -> None:
    checkpoint = Checkpoint()
    checkpoint.restore(b"s:a", b"\x07" + bytes(40))
    with pytest.raises(NewerStateFormatError, match="reset"):
        checkpoint.verify()


def test_a_refused_entry_replaced_by_a_later_one_no_longer_counts() -> None:
    """``reset --forget-state`` tombstones it; compaction would drop the old one."""
    checkpoint = Checkpoint()
    checkpoint.restore(b"s:a", b"\x07" + bytes(40))
    checkpoint.restore(b"s:b", b"\x02short")
    checkpoint.restore(b"s:a", None)
    checkpoint.restore(*encode_entry("b", SessionEntry(2, "Completed", 5)))
    checkpoint.verify()
    assert checkpoint.unreadable == 0 and "b" in checkpoint.sessions
