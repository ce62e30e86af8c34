"""What the connector remembers per session, in memory and in the compacted state topic.

In memory (``SessionState``) one session costs about 160 bytes resident at a million
sessions (``bench/bench_state.py``), because it keeps no strings: a dict from the
session id's 64-bit ``hash()`` to one int packing the updated time, a 32-bit check of
the session id (CRC-32 of its UTF-8), the published score and max_score (as double
bits), the fingerprint and a status code. Known statuses have fixed codes; others get
codes as they are first seen (statuses are few). ``hash()`` differs between processes
(it is seeded per process), which is fine: the keys never leave the process that
restored them, and a str caches its hash, so the lookup and the apply of one record hash
it once. Two session ids sharing a 64-bit hash (odds about 3e-8 at a million sessions)
still differ in their check (odds of both about 1e-17): a lookup whose check differs
finds nothing, so the record is published as ``created``, never dropped as a repeat or
as stale; the two sessions then share one slot, which costs extra events, never a lost
one.

The updated time (``dt_updated``, in milliseconds; -1 when a record had none) is what
keeps a session from going backwards: a record older than the one published is stale
(``changes.detector``), however late a slice delivers it.

State topic entry (one per session, written by the runner in the same transaction as
the events it accounts for; compaction keeps the latest):
    key     ``b"s:" + session_id.encode("utf-8")``
    value   ``b"\\x02"`` (format version) + fingerprint as 8 bytes big-endian
            + updated time in ms as 8 bytes big-endian, signed + score and max_score as
            8-byte big-endian doubles (a NaN: none) + status as UTF-8 (the rest)
            (format 1, without the updated time, is still read: the time is unknown)
    None    (tombstone) the session is forgotten: its next record is ``created``
The cursor shares the topic under the key ``b"cursor"`` (connector.kafka.state_topic).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator, Mapping
from typing import Final, NamedTuple

from connector.changes.validate import UNKNOWN_TIME
from connector.errors import FatalError

SESSION_KEY_PREFIX: Final = b"s:"
ENTRY_FORMAT_V1: Final = 1
ENTRY_FORMAT_V2: Final = 2
#: fixed codes for the statuses the API documents; code 0 means "status not known"
KNOWN_STATUSES: Final = ("Incomplete", "Completed", "Discarded", "Pending Scoring")
STATUS_BITS: Final = 16
_STATUS_MASK: Final = (1 << STATUS_BITS) - 1
_UNKNOWN_STATUS: Final = 0
_PREFIX_LEN: Final = len(SESSION_KEY_PREFIX)
_V1_LEN: Final = 9  # format version byte + 8-byte fingerprint
_TIME_END: Final = 17  # ... + 8-byte updated time
_V2_LEN: Final = 33  # ... + score and max_score as 8-byte doubles (NaN: none)
_M64: Final = (1 << 64) - 1
_M32: Final = (1 << 32) - 1
_NONE_BITS: Final = 0x7FF8000000000000  # a quiet NaN: "no score" (real scores are finite)
_DOUBLE: Final = struct.Struct(">d")
_MAX_RAW_CODES: Final = 4096


class SessionEntry(NamedTuple):
    """The last state of a session that was published."""

    fingerprint: int
    status: str | None
    #: the record's updated time, ms since the epoch (``UNKNOWN_TIME`` when it had none)
    updated_ms: int = UNKNOWN_TIME
    #: the scores published (the next change's ``previous_score``/``previous_max_score``)
    score: float | None = None
    max_score: float | None = None


class StateEntryError(FatalError):
    """An entry of the state topic cannot be read: the topic is not ours or is damaged."""


class NewerStateFormatError(StateEntryError):
    """An entry written by a newer connector version: refused, never guessed at."""


class StatusCodes:
    """Interns status strings as small ints (in-process only; the topic stores strings)."""

    def __init__(self) -> None:
        self._names: list[str | None] = [None, *KNOWN_STATUSES]
        self._codes: dict[str, int] = {name: i for i, name in enumerate(KNOWN_STATUSES, 1)}

    def code(self, status: str | None) -> int:
        if status is None:
            return _UNKNOWN_STATUS
        code = self._codes.get(status)
        if code is None:
            if len(self._names) > _STATUS_MASK:  # 65k distinct statuses: not a real API
                return _UNKNOWN_STATUS  # previous_status becomes null; detection still works
            code = len(self._names)
            self._names.append(status)
            self._codes[status] = code
        return code

    def name(self, code: int) -> str | None:
        return self._names[code]


def session_key(session_id: str) -> int:
    """The in-memory key of a session: its 64-bit ``hash()`` (no str kept: it costs ~90 B)."""
    return hash(session_id)


class SessionState:
    """Session id → last published (fingerprint, status); changed only via ``apply``."""

    def __init__(self) -> None:
        self._packed: dict[int, int] = {}
        self._statuses = StatusCodes()
        #: status bytes as stored in the topic → code, for ``restore_raw`` (statuses are few)
        self._raw_codes: dict[bytes, int] = {}

    def get(self, session_id: str) -> SessionEntry | None:
        packed = self._packed.get(session_key(session_id))
        if packed is None or (packed >> 208) & _M32 != id_check(session_id.encode("utf-8")):
            return None  # none, or another session's (a hash() collision)
        return SessionEntry(
            (packed >> STATUS_BITS) & _M64,
            self._statuses.name(packed & _STATUS_MASK),
            (packed >> 240) - 1,
            _from_bits((packed >> 144) & _M64),
            _from_bits((packed >> 80) & _M64),
        )

    def apply(self, updates: Mapping[str, SessionEntry | None]) -> None:
        """Take in committed entries; ``None`` forgets the session (a tombstone)."""
        for session_id, entry in updates.items():
            self.restore_entry(session_id, entry)

    def restore_entry(self, session_id: str, entry: SessionEntry | None) -> None:
        """One entry read back from the state topic (``decode_entry``'s result)."""
        key = session_key(session_id)
        if entry is None:
            self._packed.pop(key, None)
        else:
            status = self._statuses.code(entry.status)
            self._packed[key] = _pack(
                entry.fingerprint,
                status,
                entry.updated_ms,
                _to_bits(entry.score),
                _to_bits(entry.max_score),
                id_check(session_id.encode("utf-8")),
            )

    def restore_raw(self, key: bytes, value: bytes | None) -> None:
        """``restore_entry(*decode_entry(key, value))``, faster: the restore's inner loop.

        The same checks and the same errors (anything unusual goes through
        ``decode_entry``), but an ASCII session id is decoded without the UTF-8 checks
        and a status seen before is looked up by its bytes, so no ``SessionEntry`` and no
        re-encoding per entry.
        """
        if not key.startswith(SESSION_KEY_PREFIX) or not key.isascii():
            self.restore_entry(*decode_entry(key, value))
            return
        raw_id = key[_PREFIX_LEN:]
        packed_key = session_key(raw_id.decode("ascii"))
        if value is None:
            self._packed.pop(packed_key, None)
            return
        if len(value) < _V2_LEN or value[0] != ENTRY_FORMAT_V2:
            self.restore_entry(*decode_entry(key, value))  # format 1, or the precise error
            return
        raw_status = value[_V2_LEN:]
        code = self._raw_codes.get(raw_status)
        if code is None:
            _session_id, entry = decode_entry(key, value)  # validates the status' UTF-8
            assert entry is not None
            code = self._statuses.code(entry.status)
            if len(self._raw_codes) < _MAX_RAW_CODES:
                self._raw_codes[raw_status] = code
        self._packed[packed_key] = _pack(
            int.from_bytes(value[1:_V1_LEN], "big"),
            code,
            int.from_bytes(value[_V1_LEN:_TIME_END], "big", signed=True),
            int.from_bytes(value[_TIME_END:25], "big"),
            int.from_bytes(value[25:_V2_LEN], "big"),
            id_check(raw_id),
        )

    def __len__(self) -> int:
        return len(self._packed)

    def __contains__(self, session_id: object) -> bool:
        return isinstance(session_id, str) and self.get(session_id) is not None


def id_check(session_id: bytes) -> int:
    """32 bits of the session id that ``hash()`` does not share (CRC-32)."""
    return zlib.crc32(session_id)


def _pack(  # noqa: PLR0917 - the inner loop of a restore: no keywords
    fingerprint: int,
    status_code: int,
    updated_ms: int,
    score_bits: int,
    max_score_bits: int,
    check: int,
) -> int:
    """One int per session: updated time + 1 | id check | score | max_score | fingerprint
    | status code, high bits to low."""
    return (
        (max(0, updated_ms + 1) << 240)
        | (check << 208)
        | (score_bits << 144)
        | (max_score_bits << 80)
        | (fingerprint << STATUS_BITS)
        | status_code
    )


def _to_bits(score: float | None) -> int:
    return _NONE_BITS if score is None else int.from_bytes(_DOUBLE.pack(score), "big")


def _from_bits(bits: int) -> float | None:
    return None if bits == _NONE_BITS else float(_DOUBLE.unpack(bits.to_bytes(8, "big"))[0])


def is_session_key(key: bytes) -> bool:
    return key.startswith(SESSION_KEY_PREFIX)


def encode_entry(session_id: str, entry: SessionEntry | None) -> tuple[bytes, bytes | None]:
    """The (key, value) of one session in the state topic; value None is a tombstone."""
    key = SESSION_KEY_PREFIX + session_id.encode("utf-8")
    if entry is None:
        return key, None
    return key, b"".join(
        (
            bytes((ENTRY_FORMAT_V2,)),
            entry.fingerprint.to_bytes(8, "big"),
            entry.updated_ms.to_bytes(8, "big", signed=True),
            _to_bits(entry.score).to_bytes(8, "big"),
            _to_bits(entry.max_score).to_bytes(8, "big"),
            (entry.status or "").encode("utf-8"),
        )
    )


def decode_entry(key: bytes, value: bytes | None) -> tuple[str, SessionEntry | None]:
    """Inverse of ``encode_entry``; raises ``StateEntryError`` on anything else."""
    if not is_session_key(key):
        raise StateEntryError(f"state topic key {key[:40]!r} is not a session entry")
    try:
        session_id = key[len(SESSION_KEY_PREFIX) :].decode("utf-8")
        if value is None:
            return session_id, None
        version = value[0] if value else None
        score = max_score = None
        if version == ENTRY_FORMAT_V2 and len(value) >= _V2_LEN:
            updated_ms = int.from_bytes(value[_V1_LEN:_TIME_END], "big", signed=True)
            score = _from_bits(int.from_bytes(value[_TIME_END:25], "big"))
            max_score = _from_bits(int.from_bytes(value[25:_V2_LEN], "big"))
            status = value[_V2_LEN:].decode("utf-8") or None
        elif version == ENTRY_FORMAT_V1 and len(value) >= _V1_LEN:
            updated_ms, status = UNKNOWN_TIME, value[_V1_LEN:].decode("utf-8") or None
        else:
            newer = version is not None and version > ENTRY_FORMAT_V2
            raise (NewerStateFormatError if newer else StateEntryError)(
                f"state entry for {session_id!r}: unknown format "
                f"(version byte {value[:1].hex() or 'missing'}, {len(value)} bytes)"
                + (
                    "; it was written by a newer connector: run that version, or "
                    "`learnosity-connector reset` to rebuild the state"
                    if newer
                    else ""
                )
            )
    except UnicodeDecodeError as exc:
        raise StateEntryError(f"state entry {key[:40]!r}: not UTF-8 ({exc.reason})") from exc
    fingerprint = int.from_bytes(value[1:_V1_LEN], "big")
    return session_id, SessionEntry(fingerprint, status, updated_ms, score, max_score)


def iter_encoded(
    updates: Mapping[str, SessionEntry | None],
) -> Iterator[tuple[bytes, bytes | None]]:
    """``encode_entry`` over a detection's updates, in order (for producing them)."""
    for session_id, entry in updates.items():
        yield encode_entry(session_id, entry)
