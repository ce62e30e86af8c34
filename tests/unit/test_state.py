"""The in-memory session state and its entries in the compacted state topic."""

from __future__ import annotations

import gc
import struct
import tracemalloc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.changes import (
    SessionEntry,
    SessionState,
    StateEntryError,
    decode_entry,
    encode_entry,
    is_session_key,
)
from connector.changes import state as state_module
from connector.changes.state import id_check, iter_encoded

#: text that survives UTF-8 (JSON can carry lone surrogates; validation rejects them in ids)
UTF8_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
FINGERPRINTS = st.integers(0, 2**64 - 1)
#: "no score" in an entry: the quiet NaN's bits (real scores are finite)
NO_SCORE = bytes.fromhex("7FF8000000000000")


def test_the_entry_format_is_pinned() -> None:
    entry = SessionEntry(0x0102030405060708, "Pending Scoring", 1_764_000_000_123)
    key, value = encode_entry("abc", entry)
    assert key == b"s:abc"
    assert value == (
        b"\x02"
        + bytes.fromhex("0102030405060708")
        + (1_764_000_000_123).to_bytes(8, "big", signed=True)
        + NO_SCORE
        + NO_SCORE
        + b"Pending Scoring"
    )
    assert encode_entry("abc", None) == (b"s:abc", None)


def test_the_entry_format_with_scores_is_pinned() -> None:
    entry = SessionEntry(0x0102030405060708, "Completed", 1_764_000_000_123, 39.5, 40.0)
    _, value = encode_entry("abc", entry)
    assert value == (
        b"\x02"
        + bytes.fromhex("0102030405060708")
        + (1_764_000_000_123).to_bytes(8, "big", signed=True)
        + bytes.fromhex("4043C00000000000")  # 39.5, big-endian IEEE 754 double
        + bytes.fromhex("4044000000000000")  # 40.0
        + b"Completed"
    )
    assert struct.unpack(">d", value[17:25]) == (39.5,)
    assert decode_entry(b"s:abc", value) == ("abc", entry)


@given(UTF8_TEXT.filter(bool), FINGERPRINTS, UTF8_TEXT.filter(bool))
def test_entries_round_trip(session_id: str, fp: int, status: str) -> None:
    entry = SessionEntry(fp, status)
    assert decode_entry(*encode_entry(session_id, entry)) == (session_id, entry)
    assert decode_entry(*encode_entry(session_id, None)) == (session_id, None)


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        (b"cursor", b"{}", "not a session entry"),
        (b"s:x", b"\x03" + bytes(16) + b"Completed", "newer connector"),
        (b"s:x", b"\x02" + bytes(12), "unknown format"),
        (b"s:x", b"\x01" + bytes(7), "unknown format"),
        (b"s:x", b"", "unknown format"),
        (b"s:\xff", b"\x01" + bytes(8), "not UTF-8"),
        (b"s:x", b"\x01" + bytes(8) + b"\xff", "not UTF-8"),
    ],
)
def test_foreign_or_damaged_entries_are_refused(key: bytes, value: bytes, says: str) -> None:
    with pytest.raises(StateEntryError, match=says):
        decode_entry(key, value)


def test_session_keys_are_told_from_the_cursor() -> None:
    assert is_session_key(b"s:abc") and not is_session_key(b"cursor")


def test_get_apply_forget() -> None:
    state = SessionState()
    assert state.get("s1") is None and len(state) == 0
    state.apply({"s1": SessionEntry(5, "Completed"), "s2": SessionEntry(2**64 - 1, "Odd")})
    assert state.get("s1") == SessionEntry(5, "Completed")
    assert state.get("s2") == SessionEntry(2**64 - 1, "Odd")
    assert len(state) == 2 and "s1" in state and "s3" not in state
    state.apply({"s1": SessionEntry(6, "Incomplete"), "s2": None})
    assert state.get("s1") == SessionEntry(6, "Incomplete")
    assert state.get("s2") is None and len(state) == 1


@given(st.lists(st.tuples(st.sampled_from("abcde"), FINGERPRINTS, UTF8_TEXT), max_size=40))
def test_state_behaves_like_a_dict(entries: list[tuple[str, int, str]]) -> None:
    state, model = SessionState(), dict[str, SessionEntry]()
    for session_id, fp, status in entries:
        entry = SessionEntry(fp, status or "Completed") if fp % 5 else None
        state.restore_entry(session_id, entry)
        if entry is None:
            model.pop(session_id, None)
        else:
            model[session_id] = entry
    assert len(state) == len(model)
    for session_id in "abcde":
        assert state.get(session_id) == model.get(session_id)


def test_restore_from_encoded_entries_rebuilds_the_same_state() -> None:
    updates: dict[str, SessionEntry | None] = {
        f"session-{i}": SessionEntry(i * 7919, ["Completed", "Custom"][i % 2]) for i in range(50)
    }
    updates["session-3"] = None
    restored = SessionState()
    for key, value in iter_encoded(updates):
        restored.restore_entry(*decode_entry(key, value))
    direct = SessionState()
    direct.apply(updates)
    assert len(restored) == len(direct) == 49
    assert all(restored.get(s) == direct.get(s) for s in updates)


def test_a_session_costs_well_under_200_bytes() -> None:
    # the benchmark measures a million sessions; this guards the layout at 100k
    count = 100_000
    updates = {
        f"{i:08d}-aaaa-4bbb-8ccc-{i:012d}": SessionEntry(
            (i * 0x9E3779B97F4A7C15) % 2**64, "Completed"
        )
        for i in range(count)
    }
    gc.collect()
    tracemalloc.start()
    state = SessionState()
    state.apply(updates)
    used, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(state) == count
    assert used / count < 160


@given(
    st.lists(
        st.tuples(
            st.text(min_size=1, max_size=20),
            st.one_of(st.none(), st.tuples(st.integers(0, 2**64 - 1), st.text(max_size=16))),
        ),
        max_size=60,
    )
)
def test_restore_raw_ends_in_the_same_state_as_decode_then_restore(
    entries: list[tuple[str, tuple[int, str] | None]],
) -> None:
    """The restore's fast path agrees with the plain one, tombstones and unicode ids too."""
    plain, fast = SessionState(), SessionState()
    for session_id, value in entries:
        entry = SessionEntry(*value) if value is not None else None
        key, encoded = encode_entry(session_id, entry)
        plain.restore_entry(*decode_entry(key, encoded))
        fast.restore_raw(key, encoded)
    assert len(plain) == len(fast)
    for session_id, _ in entries:
        assert plain.get(session_id) == fast.get(session_id)


def test_restore_raw_refuses_what_decode_entry_refuses() -> None:
    state = SessionState()
    with pytest.raises(StateEntryError):
        state.restore_raw(b"s:abc", b"\x09garbage")


# --- format 2: the updated time ------------------------------------------------------------
UPDATED_MS = st.integers(-(2**63), 2**63 - 1)


def test_the_v2_entry_format_is_pinned() -> None:
    entry = SessionEntry(0x0102030405060708, "Completed", 0x0A0B0C0D0E0F)
    key, value = encode_entry("abc", entry)
    assert key == b"s:abc"
    assert value == (
        b"\x02"
        + bytes.fromhex("0102030405060708")
        + bytes.fromhex("00000A0B0C0D0E0F")
        + NO_SCORE
        + NO_SCORE
        + b"Completed"
    )
    assert encode_entry("abc", SessionEntry(1, None, -1))[1] == (
        b"\x02" + bytes(7) + b"\x01" + b"\xff" * 8 + NO_SCORE + NO_SCORE
    )


@given(UTF8_TEXT.filter(bool), FINGERPRINTS, st.none() | UTF8_TEXT.filter(bool), UPDATED_MS)
def test_v2_entries_round_trip_with_their_updated_time(
    session_id: str, fp: int, status: str | None, updated_ms: int
) -> None:
    entry = SessionEntry(fp, status, updated_ms)
    assert decode_entry(*encode_entry(session_id, entry)) == (session_id, entry)


@given(
    st.text(min_size=1, max_size=20),
    FINGERPRINTS,
    st.none() | st.text(min_size=1, max_size=30),
    st.integers(-1, 2**62),
)
def test_the_state_keeps_the_updated_time_through_every_way_in(
    session_id: str, fp: int, status: str | None, updated_ms: int
) -> None:
    """apply, restore_entry and restore_raw (its fast path) all keep ``updated_ms``."""
    entry = SessionEntry(fp, status, updated_ms)
    applied, decoded, raw = SessionState(), SessionState(), SessionState()
    applied.apply({session_id: entry})
    key, value = encode_entry(session_id, entry)
    decoded.restore_entry(*decode_entry(key, value))
    raw.restore_raw(key, value)
    raw.restore_raw(key, value)  # the second time through the status cache
    assert applied.get(session_id) == decoded.get(session_id) == raw.get(session_id) == entry


@pytest.mark.parametrize("status", [b"Completed", b"", b"A status longer than eight bytes"])
def test_v1_entries_are_still_read_with_an_unknown_time(status: bytes) -> None:
    value = b"\x01" + (7).to_bytes(8, "big") + status
    expected = SessionEntry(7, status.decode() or None, -1)
    assert decode_entry(b"s:old", value) == ("old", expected)
    state = SessionState()
    state.restore_raw(b"s:old", value)
    assert state.get("old") == expected


@pytest.mark.parametrize(
    "value",
    [b"\x03" + bytes(16) + b"Completed", b"\x03", b"\xff" + bytes(20)],
)
def test_an_entry_of_a_newer_format_is_refused_with_the_remedy(value: bytes) -> None:
    with pytest.raises(StateEntryError, match=r"newer connector.*reset"):
        decode_entry(b"s:x", value)
    with pytest.raises(StateEntryError, match="reset"):
        SessionState().restore_raw(b"s:x", value)


@pytest.mark.parametrize(
    "value", [b"\x02" + bytes(15), b"\x01" + bytes(3), b"\x00" + bytes(20), b""]
)
def test_a_short_or_unknown_old_entry_is_refused_without_the_newer_version_hint(
    value: bytes,
) -> None:
    with pytest.raises(StateEntryError, match="unknown format") as caught:
        decode_entry(b"s:x", value)
    assert "reset" not in str(caught.value)


# --- format 2: the published scores ----------------------------------------------------------
SCORES = st.none() | st.floats(allow_nan=False, allow_infinity=False)


@given(
    st.text(min_size=1, max_size=20),
    FINGERPRINTS,
    st.none() | st.text(min_size=1, max_size=30),
    st.integers(-1, 2**62),
    SCORES,
    SCORES,
)
def test_the_state_keeps_the_scores_through_every_way_in(
    session_id: str,
    fp: int,
    status: str | None,
    updated_ms: int,
    score: float | None,
    max_score: float | None,
) -> None:
    """apply, decode_entry + restore_entry and restore_raw all keep the published scores
    (they become the next change's previous_score/previous_max_score)."""
    entry = SessionEntry(fp, status, updated_ms, score, max_score)
    key, value = encode_entry(session_id, entry)
    assert decode_entry(key, value) == (session_id, entry)
    applied, decoded, raw = SessionState(), SessionState(), SessionState()
    applied.apply({session_id: entry})
    decoded.restore_entry(*decode_entry(key, value))
    raw.restore_raw(key, value)
    raw.restore_raw(key, value)  # the second time through the status cache
    assert applied.get(session_id) == decoded.get(session_id) == raw.get(session_id) == entry


def test_a_score_of_zero_is_not_no_score() -> None:
    state = SessionState()
    state.apply({"s": SessionEntry(1, "Completed", 5, 0.0, -0.0)})
    entry = state.get("s")
    assert entry is not None and entry.score == 0.0 and entry.max_score == 0.0
    assert entry.score is not None and entry.max_score is not None


# --- the id check: a hash() collision publishes, never drops ----------------------------------
def test_the_id_check_is_crc32_of_the_utf8_id() -> None:
    assert id_check(b"abc") == 0x352441C2
    assert id_check("é".encode()) != id_check(b"e")


@pytest.fixture
def colliding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every session id gets the same in-memory key, as a 64-bit hash() collision would."""
    monkeypatch.setattr(state_module, "session_key", lambda session_id: 42)


@pytest.mark.usefixtures("colliding")
@pytest.mark.parametrize("way_in", ["apply", "restore_entry", "restore_raw"])
def test_a_colliding_session_is_unseen_not_the_other_one(way_in: str) -> None:
    state = SessionState()
    entry = SessionEntry(7, "Completed", 1_000, 3.0, 4.0)
    if way_in == "apply":
        state.apply({"first": entry})
    elif way_in == "restore_entry":
        state.restore_entry(*decode_entry(*encode_entry("first", entry)))
    else:
        state.restore_raw(*encode_entry("first", entry))
    assert state.get("first") == entry
    assert state.get("second") is None  # same key, other id: nothing known about it
    assert "second" not in state and "first" in state


@pytest.mark.usefixtures("colliding")
def test_sharing_a_slot_costs_extra_events_never_a_lost_one() -> None:
    state = SessionState()
    state.apply({"first": SessionEntry(7, "Completed", 1_000)})
    state.apply({"second": SessionEntry(8, "Incomplete", 2_000)})
    assert state.get("second") == SessionEntry(8, "Incomplete", 2_000)
    assert state.get("first") is None  # forgotten: its next record is published as created
    assert len(state) == 1
