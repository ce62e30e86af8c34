"""A stable 64-bit fingerprint of what matters in a session record, and event ids.

What matters: ``status``, ``score``, ``max_score``, every documented subscore field, and
(only when ``include_responses``) each response's ``response_id``, ``score``,
``max_score`` and ``attempted``. Volatile fields (``dt_saved``, ``dt_updated``, any
``dt_*``, ``dt_score_updated``) and fields the API adds later do not count, so a save that
changed nothing is a repeat.

Canonical form: a compact UTF-8 JSON array of those values in a fixed order (so key
order cannot matter), numbers normalized so that ``39`` and ``39.0`` are equal, absent
equal to null (and, for lists, to empty), list order kept (subscore and response order
is content). Its BLAKE2b digest (8 bytes, big-endian) is the fingerprint: the same in
every process and version of Python, unlike ``hash()``.

Version 2 writes the JSON with orjson (``connector.fastjson``): version 1 used the
standard library's ASCII-escaping encoder, which was a tenth of a record's whole cost
on pages with non-ASCII titles. A value orjson cannot write (an int beyond 64 bits)
falls back to the standard encoder, the same way every time.

Changing anything here changes every fingerprint, so each tracked session would emit one
``score_changed`` after an upgrade: bump ``FINGERPRINT_VERSION`` only on purpose.
Toggling ``include_responses`` has the same one-time effect.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, Final

from connector import fastjson

FINGERPRINT_VERSION: Final = 2
SUBSCORE_FIELDS: Final = (
    "id",
    "title",
    "num_questions",
    "num_attempted",
    "score",
    "max_score",
    "attempted_max_score",
    "items",
)
_SUBSCORE_NUMBERS: Final = frozenset(
    ("num_questions", "num_attempted", "score", "max_score", "attempted_max_score")
)

_stdlib_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def normalize_number(value: Any) -> Any:
    """``39.0`` → ``39`` (and ``-0.0`` → ``0``) so equal numbers print equally."""
    if type(value) is float and value.is_integer():
        return int(value)
    return value


def canonical_parts(record: Mapping[str, Any], include_responses: bool) -> list[Any]:
    """The values the fingerprint covers, in their fixed order, numbers normalized."""
    get = record.get
    parts: list[Any] = [
        FINGERPRINT_VERSION,
        get("status"),
        normalize_number(get("score")),
        normalize_number(get("max_score")),
        _subscores(get("subscores")),
    ]
    if include_responses:
        parts.append(_responses(get("responses")))
    return parts


def encode_parts(parts: list[Any]) -> bytes:
    """The canonical form of ``canonical_parts``: compact UTF-8 JSON."""
    try:
        return fastjson.dumps(parts)
    except TypeError:  # beyond orjson (ints over 64 bits): the standard encoder
        return _stdlib_dumps(parts).encode("utf-8", "surrogatepass")


def digest_parts(parts: list[Any]) -> int:
    """The fingerprint of ``canonical_parts`` (or of the same list built elsewhere, as
    ``kafka.event_writer`` does while it encodes the event)."""
    digest = hashlib.blake2b(encode_parts(parts), digest_size=8)
    return int.from_bytes(digest.digest(), "big")


def canonical_form(record: Mapping[str, Any], include_responses: bool) -> bytes:
    """The bytes the fingerprint is the digest of (exposed for tests and debugging)."""
    return encode_parts(canonical_parts(record, include_responses))


def fingerprint(record: Mapping[str, Any], include_responses: bool) -> int:
    """64-bit fingerprint of the fields that matter (see the module docstring)."""
    return digest_parts(canonical_parts(record, include_responses))


def event_id(session_id: str, fingerprint: int, previous_fingerprint: int | None) -> str:
    """A UUID (version 8, RFC 9562) naming one transition of one session.

    Deterministic: re-deciding the same record against the same committed state (after a
    crash or an aborted transaction) gives the same id. The previous fingerprint is part
    of it so that a session going A → B → A gets two ids for its two A events.
    """
    sid = session_id.encode("utf-8")
    message = len(sid).to_bytes(4, "big") + sid + fingerprint.to_bytes(8, "big")
    if previous_fingerprint is not None:
        message += previous_fingerprint.to_bytes(8, "big")
    raw = bytearray(hashlib.blake2b(message, digest_size=16).digest())
    raw[6] = (raw[6] & 0x0F) | 0x80  # version 8: custom
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 9562 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _subscores(subscores: Any) -> Any:
    if not subscores:
        return None
    return [
        [
            normalize_number(s.get(name)) if name in _SUBSCORE_NUMBERS else s.get(name)
            for name in SUBSCORE_FIELDS
        ]
        for s in subscores
    ]


def _responses(responses: Any) -> Any:
    if not responses:
        return None
    return [
        [
            r.get("response_id"),
            normalize_number(r.get("score")),
            normalize_number(r.get("max_score")),
            r.get("attempted"),
        ]
        for r in responses
    ]
