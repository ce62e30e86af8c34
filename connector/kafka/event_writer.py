"""An event body straight from a raw API record: checks, mapping and Avro in one pass.

The fast path of ``changes.prepare.PagePreparer``: what ``changes.validate.validate``,
``changes.event.record_fields`` and ``kafka.serde.BodyEncoder.encode`` do in three
passes and a dict per level, done here in one, for the current event schema
(``session_score_changed.v1``: ``DECIDED_FIELDS`` first and in the sixth place).

It answers None for anything unusual: a value of a type or range it does not take
(floats where counts belong, ints beyond 2**53 where doubles belong, ...), an empty or
missing id, or bytes that are not UTF-8. The caller then takes the precise three-pass
path, which says why the record is refused (dead letter) or maps it. Whenever this
answers, the precise path would answer the same bytes: a hypothesis test holds it to
that, and fails when the schema changes until this follows (or is dropped: the precise
path alone is correct, only about half as fast).
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


def _opt_double(value: Any) -> bytes:
    if value is None:
        return b"\x00"
    kind = type(value)
    if kind is float:
        if value - value != 0.0:  # inf, nan
            raise _Unusual
    elif kind is not int or not -_SAFE_INT <= value <= _SAFE_INT:
        raise _Unusual
    return _pack_bd(2, value)


def _opt_long(value: Any) -> bytes:
    if value is None:
        return b"\x00"
    if type(value) is not int or not _LONG_MIN <= value <= _LONG_MAX:
        raise _Unusual  # a float count (20.0) is fine, but the precise path maps it
    z = (value << 1) ^ (value >> 63)
    return b"\x02" + (_V[z] if z < 128 else varint(z))


def _id(value: Any) -> bytes:
    if type(value) is not str or not value:
        raise _Unusual
    return _string(value)


def _subscore(s: Any) -> bytes:
    if type(s) is not dict:
        raise _Unusual
    get = s.get
    items = get("items")
    if items is None:
        encoded_items = b"\x00"
    elif type(items) is not list:
        raise _Unusual
    elif items:
        parts = [b"\x02", _count(len(items))]
        for item in items:
            if type(item) is not str:
                raise _Unusual
            parts.append(_string(item))
        parts.append(b"\x00")
        encoded_items = b"".join(parts)
    else:
        encoded_items = b"\x02\x00"
    return b"".join(
        (
            _opt_string(get("id")),
            _opt_string(get("title")),
            _opt_long(get("num_questions")),
            _opt_long(get("num_attempted")),
            _opt_double(get("score")),
            _opt_double(get("max_score")),
            _opt_double(get("attempted_max_score")),
            encoded_items,
            _opt_string(extra_fields_json(s, SUBSCORE_FIELDS)),
        )
    )


def _response(r: Any) -> bytes:
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
    return b"".join(
        (
            _opt_string(get("response_id")),
            _opt_double(get("score")),
            _opt_double(get("max_score")),
            encoded_attempted,
            _opt_string(get("dt_score_updated")),
            _opt_string(extra_fields_json(r, RESPONSE_FIELDS)),
        )
    )


def _count(n: int) -> bytes:
    z = n << 1
    return _V[z] if z < 128 else varint(z)


def _array(value: Any, write: Callable[[Any], bytes]) -> bytes:
    if value is None:
        return b"\x00"
    if type(value) is not list:
        raise _Unusual
    if not value:
        return b"\x00"  # the mapping reads an empty list as null
    return b"".join((b"\x02", _count(len(value)), *map(write, value), b"\x00"))


class RawEventWriter:
    """Body segments (``BodyEncoder.encode``'s) of many records of one page."""

    def __init__(self, observed_at_ms: int, source: Mapping[str, str]) -> None:
        z = (observed_at_ms << 1) ^ (observed_at_ms >> 63)
        # the same for every record of the page: written once
        self._constant_tail = (_V[z] if z < 128 else varint(z)) + b"".join(
            _string(source[name]) for name in ("connector_name", "api_version", "connector_version")
        )

    def segments(self, raw: Any) -> Segments | None:
        """The segments of ``raw``'s event, or None: take the precise path."""
        try:
            return self._segments(raw)
        except (_Unusual, UnicodeEncodeError, AttributeError):
            return None

    def _segments(self, raw: dict[str, Any]) -> Segments:
        get = raw.get
        status = get("status")
        head = b"".join(
            (
                _id(get("session_id")),
                _id(get("user_id")),
                _id(get("activity_id")),
                _id(status),
            )
        )
        tail = b"".join(
            (
                _opt_double(get("score")),
                _opt_double(get("max_score")),
                _array(get("subscores"), _subscore),
                _array(get("responses"), _response),
                _opt_string(get("dt_started")),
                _opt_string(get("dt_completed")),
                _opt_string(get("dt_saved")),
                _opt_string(get("dt_updated")),
                self._constant_tail,
                _opt_string(extra_fields_json(raw, RECORD_FIELDS)),
            )
        )
        return (_EMPTY, _EMPTY, head, tail)
