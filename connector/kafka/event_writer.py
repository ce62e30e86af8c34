"""An event body and fingerprint straight from a raw API record, in one pass.

The fast path of ``changes.prepare.PagePreparer``: what ``changes.validate.validate``,
``changes.event.record_fields``, ``kafka.serde.BodyEncoder.encode`` and
``changes.fingerprint.fingerprint`` do in four passes and a dict per level, done here
in one, for the current event schema (``session_score_changed.v1``: ``DECIDED_FIELDS``
first and in the sixth place) and fingerprint version.

It answers None for anything unusual: a value of a type or range it does not take
(floats where counts belong, ints beyond 2**53 where doubles belong, ...), an empty or
missing id, or bytes that are not UTF-8. The caller then takes the precise path, which
says why the record is refused (dead letter) or maps it. Whenever this answers, the
precise path would answer the same bytes and fingerprint: a hypothesis test holds it to
that, and fails when the schema or the fingerprint changes until this follows (or is
dropped: the precise path alone is correct, only about half as fast).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from typing import Any, Final

from connector.changes.event import (
    RECORD_FIELDS,
    RESPONSE_FIELDS,
    SUBSCORE_FIELDS,
    extra_fields_json,
)
from connector.changes.fingerprint import FINGERPRINT_VERSION, digest_parts
from connector.kafka.avro_writer import varint

Segments = tuple[bytes, ...]

#: one-byte varints (zigzagged values below 128)
_V: Final = [bytes((z,)) for z in range(128)]
_pack_bd = struct.Struct("<Bd").pack  # union branch 1 + double
_SAFE_INT: Final = 2**53  # ints beyond are not exact doubles: the precise path decides
_LONG_MIN: Final = -(2**63)
_LONG_MAX: Final = 2**63 - 1
_EMPTY: Final = b""


class _Unusual(Exception):
    """Anything the fast path leaves to the precise one."""


def _string(value: str) -> bytes:
    data = value.encode()
    n = len(data) << 1
    return (_V[n] if n < 128 else varint(n)) + data


def _opt_string(value: Any) -> bytes:
    if value is None:
        return b"\x00"
    if type(value) is not str:
        raise _Unusual
    data = value.encode()
    n = len(data) << 1
    return b"\x02" + (_V[n] if n < 128 else varint(n)) + data


#: A subscore's ``id``, ``title``, ``num_questions`` and ``items`` are the same for every
#: learner of an activity, so a backfill writes each once: these caches hold the encoded
#: bytes by content (each bounded: cleared when full). The heads' key holds
#: ``num_questions``' type too: ``True``, ``1`` and ``1.0`` are equal keys, and only an
#: int is written here.
_items_written: dict[tuple[Any, ...], bytes] = {}
_heads_written: dict[tuple[Any, ...], bytes] = {}
CACHE_SIZE: Final = 20_000


def _items(items: Any) -> bytes:
    if items is None:
        return b"\x00"
    if type(items) is not list:
        raise _Unusual
    if not items:
        return b"\x02\x00"
    key = tuple(items)  # TypeError for an unhashable item: unusual
    written = _items_written.get(key)
    if written is None:
        written = _write_items(items)  # only lists of str get here and into the cache
        if len(_items_written) >= CACHE_SIZE:
            _items_written.clear()
        _items_written[key] = written
    return written


def _write_head(subscore_id: Any, title: Any, questions: Any) -> bytes:
    """``id``, ``title`` and ``num_questions`` of a subscore (its first three fields)."""
    out = bytearray(_opt_string(subscore_id))
    out += _opt_string(title)
    _opt_long_into(out, questions)
    return bytes(out)


def _opt_long_into(out: bytearray, v: Any) -> None:
    if v is None:
        out += b"\x00"
    elif type(v) is int and _LONG_MIN <= v <= _LONG_MAX:
        z = (v << 1) ^ (v >> 63)
        out += b"\x02"
        out += _V[z] if z < 128 else varint(z)
    else:
        raise _Unusual  # a float count (20.0) is fine, but the precise path maps it


def _write_items(items: list[Any]) -> bytes:
    parts = [b"\x02", _count(len(items))]
    append = parts.append
    for item in items:
        if type(item) is not str:
            raise _Unusual
        data = item.encode()
        n = len(data) << 1
        append(_V[n] if n < 128 else varint(n))
        append(data)
    append(b"\x00")
    return b"".join(parts)


def _subscore(s: Any, fingerprinted: list[Any]) -> bytes:
    """One subscore (about three per record). Its fields are written by loops over
    names, not a helper call per field: calls were half of the cost."""
    if type(s) is not dict:
        raise _Unusual
    get = s.get
    subscore_id, title, questions = get("id"), get("title"), get("num_questions")
    key = (subscore_id, title, questions, type(questions))  # TypeError if unhashable
    head = _heads_written.get(key)
    if head is None:
        head = _write_head(subscore_id, title, questions)
        if len(_heads_written) >= CACHE_SIZE:
            _heads_written.clear()
        _heads_written[key] = head
    out = bytearray(head)
    attempted = get("num_attempted")
    _opt_long_into(out, attempted)
    numbers = _opt_doubles_into(out, get, ("score", "max_score", "attempted_max_score"))
    items = get("items")
    out += _items(items)
    out += (
        b"\x00"
        if SUBSCORE_FIELDS.issuperset(s)
        else _opt_string(extra_fields_json(s, SUBSCORE_FIELDS))
    )
    fingerprinted.append([subscore_id, title, questions, attempted, *numbers, items])
    return bytes(out)


def _opt_strings_into(
    out: bytearray, get: Callable[[str], Any], names: tuple[str, ...]
) -> list[Any]:
    """``_opt_string`` of each named field, appended to ``out``; the values read."""
    values = []
    for name in names:
        v = get(name)
        if v is None:
            out += b"\x00"
        elif type(v) is str:
            data = v.encode()
            n = len(data) << 1
            out += b"\x02"
            out += _V[n] if n < 128 else varint(n)
            out += data
        else:
            raise _Unusual
        values.append(v)
    return values


def _opt_doubles_into(
    out: bytearray, get: Callable[[str], Any], names: tuple[str, ...]
) -> list[Any]:
    """``_opt_double`` of each named field, appended to ``out``; the values read,
    normalized as the fingerprint needs (``fingerprint.normalize_number``)."""
    values = []
    for name in names:
        v = get(name)
        if v is None:
            out += b"\x00"
        elif type(v) is float:
            if v - v != 0.0:  # inf, nan
                raise _Unusual
            out += _pack_bd(2, v)
            if v.is_integer():
                v = int(v)
        elif type(v) is int and -_SAFE_INT <= v <= _SAFE_INT:
            out += _pack_bd(2, v)
        else:
            raise _Unusual
        values.append(v)
    return values


def _response(r: Any, fingerprinted: list[Any]) -> bytes:
    if type(r) is not dict:
        raise _Unusual
    get = r.get
    attempted = get("attempted")
    if attempted is None:
        encoded_attempted = b"\x00"
    elif attempted is True:
        encoded_attempted = b"\x02\x01"
    elif attempted is False:
        encoded_attempted = b"\x02\x00"
    else:
        raise _Unusual
    out = bytearray(_opt_string(response_id := get("response_id")))
    score, max_score = _opt_doubles_into(out, get, ("score", "max_score"))
    out += encoded_attempted
    out += _opt_string(get("dt_score_updated"))
    out += _opt_string(extra_fields_json(r, RESPONSE_FIELDS))
    fingerprinted.append([response_id, score, max_score, attempted])
    return bytes(out)


def _count(n: int) -> bytes:
    z = n << 1
    return _V[z] if z < 128 else varint(z)


def _array(value: Any, write: Callable[[Any, list[Any]], bytes], parts: list[Any]) -> bytes:
    """The ``["null", array]`` union of ``value``; ``parts`` gets each item's
    fingerprinted values."""
    if value is None:
        return b"\x00"
    if type(value) is not list:
        raise _Unusual
    if not value:
        return b"\x00"  # the mapping reads an empty list as null
    encoded = [write(item, parts) for item in value]
    return b"".join((b"\x02", _count(len(value)), *encoded, b"\x00"))


class RawEventWriter:
    """Body segments (``BodyEncoder.encode``'s) and fingerprints of one page's records."""

    def __init__(
        self, observed_at_ms: int, source: Mapping[str, str], include_responses: bool
    ) -> None:
        z = (observed_at_ms << 1) ^ (observed_at_ms >> 63)
        # the same for every record of the page: written once
        self._constant_tail = (_V[z] if z < 128 else varint(z)) + b"".join(
            _string(source[name]) for name in ("connector_name", "api_version", "connector_version")
        )
        self._include_responses = include_responses

    def prepare(self, raw: Any) -> tuple[Segments, int] | None:
        """The segments of ``raw``'s event and its fingerprint, or None: take the
        precise path."""
        try:
            return self._prepare(raw)
        except (_Unusual, UnicodeEncodeError, AttributeError, TypeError):
            return None

    def _prepare(self, raw: dict[str, Any]) -> tuple[Segments, int]:
        get = raw.get
        head = bytearray()
        for name in ("session_id", "user_id", "activity_id", "status"):
            v = get(name)
            if type(v) is not str or not v:
                raise _Unusual
            data = v.encode()
            n = len(data) << 1
            head += _V[n] if n < 128 else varint(n)
            head += data
        tail = bytearray()
        score, max_score = _opt_doubles_into(tail, get, ("score", "max_score"))
        subscores: list[Any] = []
        responses: list[Any] = []
        tail += _array(get("subscores"), _subscore, subscores)
        tail += _array(get("responses"), _response, responses)
        _opt_strings_into(tail, get, ("dt_started", "dt_completed", "dt_saved", "dt_updated"))
        tail += self._constant_tail
        tail += (
            b"\x00"
            if RECORD_FIELDS.issuperset(raw)
            else _opt_string(extra_fields_json(raw, RECORD_FIELDS))
        )
        # what fingerprint.canonical_parts lists, from the values read above (the
        # numbers already normalized)
        parts = [FINGERPRINT_VERSION, get("status"), score, max_score, subscores or None]
        if self._include_responses:
            parts.append(responses or None)
        return (_EMPTY, _EMPTY, bytes(head), bytes(tail)), digest_parts(parts)
