"""A Data API page the fast parser refused, read again record by record.

orjson (``connector.fastjson``) refuses a whole page for one bad byte in one record:
bytes that are not UTF-8, an escaped lone surrogate, ``NaN``/``Infinity``, a number
beyond a double (``1e400``), nesting past 1,024 levels, or an int past 64 bits. Then
``read_page`` splits the document itself: it finds the ``meta`` object and each item of
the ``data`` array by their brackets (strings are skipped whole, so brackets inside
them do not count) and reads each item on its own:

- with orjson first: an item it takes is as good as on any other page (a plain dict);
- else with the standard ``json`` module, which accepts ``NaN``, ``Infinity``, numbers
  beyond a double (as infinity), escaped lone surrogates and big ints as they are; bytes
  that are not UTF-8 are decoded with ``surrogateescape``, so each bad byte becomes a lone
  surrogate the validator sees as text that is not UTF-8, while the original bytes stay
  in ``source``. The object is a ``Salvaged`` dict: validation checks every value of it
  (``changes.validate``), and its dead letter carries ``source``, the bytes as served;
- an item nested deeper than ``MAX_DEPTH``, or that no parser reads, is ``Unreadable``:
  its bytes and a reason (``too_deep``, ``invalid_json``, ``not_an_object``). It is never
  parsed, so no recursion limit is ever reached.

A document whose brackets do not close (a body cut short) is not split: nothing is
known of what was cut, so the caller retries the request, as for any invalid JSON.

The standard library does what is needed here: it already takes every non-standard
value the service may send, and the only thing it lacks, a bound on nesting, is what
the bracket scan gives before anything is parsed. ``json`` with ``parse_constant`` is
the documented way to take ``NaN``; no tolerant parser on PyPI also keeps bad bytes
apart as this does (ijson and json5 refuse or replace them).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Final, Literal

from connector import fastjson

#: how deep a record may nest (the record object itself is level 1); the service's nest
#: 4 deep. Anything deeper is a dead letter: far below Python's recursion limit (1,000),
#: so the standard ``json`` module can read and write every record that passes.
MAX_DEPTH: Final = 100

UnreadableReason = Literal["too_deep", "invalid_json", "not_an_object"]

#: a JSON string (escapes included) or one structural byte; everything else is a scalar
#: or whitespace between them, which the scan steps over
_TOKEN: Final = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{},:]', re.DOTALL)
_QUOTE, _COMMA, _COLON = ord('"'), ord(","), ord(":")
_OPEN: Final = {ord("{"): ord("}"), ord("["): ord("]")}
_CLOSE: Final = frozenset(_OPEN.values())
_LBRACE, _LBRACKET = ord("{"), ord("[")


class Salvaged(dict[str, Any]):
    """A record orjson refused and the standard parser read; ``source`` is its bytes."""

    __slots__ = ("source",)

    def __init__(self, value: dict[str, Any], source: bytes) -> None:
        super().__init__(value)
        self.source = source

    def __reduce__(self) -> tuple[Any, ...]:
        return (Salvaged, (dict(self), self.source))


@dataclass(frozen=True, slots=True)
class Unreadable:
    """An item of ``data`` that is not a record: its bytes, and why."""

    source: bytes
    reason: UnreadableReason
    message: str


@dataclass(slots=True)
class _Member:
    """A member of the top-level object: where its value lies, and the items of an array."""

    start: int
    end: int = -1
    #: (start, end, depth) of each item when the value is an array
    items: list[tuple[int, int, int]] | None = None


def read_page(body: bytes) -> dict[str, Any] | None:
    """``{"meta": ..., "data": [...]}`` read item by item, or None when the document's
    structure is broken (not one object, brackets that do not close)."""
    members = _scan(body)
    if members is None:
        return None
    document: dict[str, Any] = {}
    for key, member in members.items():
        if key not in {b"meta", b"data"}:
            continue  # nothing else of the document is used
        if key == b"data" and member.items is not None:
            document["data"] = [
                read_item(body[start:end].strip(), depth)
                for start, end, depth in member.items
                if body[start:end].strip()  # a trailing comma: no item
            ]
            continue
        value = _value(body[member.start : member.end].strip())
        if isinstance(value, Unreadable):
            return None
        document[key.decode()] = value
    return document


def read_item(raw: bytes, depth: int) -> Any:
    """One item of ``data``: a dict, a ``Salvaged`` dict, or ``Unreadable``."""
    if depth > MAX_DEPTH:
        return Unreadable(
            raw, "too_deep", f"the record nests {depth} levels deep (at most {MAX_DEPTH})"
        )
    value = _value(raw)
    if isinstance(value, Salvaged | Unreadable | dict):
        return value
    return Unreadable(raw, "not_an_object", f"the item is a JSON {_kind(value)}, not an object")


def _value(raw: bytes) -> Any:
    try:
        return fastjson.loads(raw)
    except ValueError:  # orjson's JSONDecodeError; past MAX_DEPTH nothing gets here
        pass
    try:
        value = json.loads(raw.decode("utf-8", "surrogateescape"), strict=False)
    except (ValueError, RecursionError) as exc:
        where = f" at byte {exc.pos}" if isinstance(exc, json.JSONDecodeError) else ""
        detail = exc.msg if isinstance(exc, json.JSONDecodeError) else type(exc).__name__
        return Unreadable(raw, "invalid_json", f"not JSON even read tolerantly: {detail}{where}")
    return Salvaged(value, raw) if isinstance(value, dict) else value


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    return "null" if value is None else "number"


def _scan(body: bytes) -> dict[bytes, _Member] | None:  # noqa: PLR0912 - one state machine
    """The members of the top-level object, the items of its array members, or None."""
    members: dict[bytes, _Member] = {}
    closers: list[int] = []  # the closing byte each open bracket expects
    key: bytes | None = None
    member: _Member | None = None
    item_start = item_depth = 0
    ended = -1
    for match in _TOKEN.finditer(body):
        start = match.start()
        byte = body[start]
        depth = len(closers)
        if ended >= 0:
            return None  # something after the document
        if byte == _QUOTE:
            if depth == 1 and member is None:
                key = body[start + 1 : match.end() - 1]
            continue
        if byte in _OPEN:
            if depth == 0 and (byte != _LBRACE or body[:start].strip()):
                return None  # the document is not one object
            closers.append(_OPEN[byte])
            if member is not None:
                if depth == 1 and byte == _LBRACKET:
                    member.items = []
                    item_start, item_depth = match.end(), 0
                elif member.items is not None:
                    item_depth = max(item_depth, depth - 1)
            continue
        if byte in _CLOSE:
            if not closers or closers.pop() != byte:
                return None
            if depth == 2 and member is not None and member.items is not None:
                member.items.append((item_start, start, item_depth))
            elif depth == 1:
                if member is not None:
                    member.end = start
                ended = match.end()
            continue
        if depth == 1:
            if byte == _COLON and key is not None:
                member = members[key] = _Member(match.end())
                key = None
            elif byte == _COMMA and member is not None:
                member.end = start
                member = None
        elif depth == 2 and byte == _COMMA and member is not None and member.items is not None:
            member.items.append((item_start, start, item_depth))
            item_start, item_depth = match.end(), 0
    if ended < 0 or body[ended:].strip():
        return None
    return members


def deeper_than(value: Any, limit: int) -> bool:
    """Whether ``value`` nests more than ``limit`` levels (a scalar is level 0), without
    recursion."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        current, depth = stack.pop()
        if isinstance(current, dict):
            children: Any = current.values()
        elif isinstance(current, list | tuple):
            children = current
        else:
            continue
        if depth + 1 > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


class _Text(str):
    """Punctuation already written, on ``dumps``' stack (a value is never of this type)."""

    __slots__ = ()


def dumps(value: Any) -> str:
    """JSON of ``value`` at any depth (no recursion), as ``json.dumps(ensure_ascii=False,
    default=str)`` would write it where it does not overflow the stack."""
    out: list[str] = []
    stack: list[Any] = [value]
    scalar = json.JSONEncoder(ensure_ascii=False, default=str).encode
    while stack:
        current = stack.pop()
        if type(current) is _Text:
            out.append(current)
        elif isinstance(current, dict):
            out.append("{")
            stack.append(_Text("}"))
            pairs = list(current.items())
            for index in range(len(pairs) - 1, -1, -1):
                name, child = pairs[index]
                stack.append(child)
                text = scalar(name if isinstance(name, str) else str(name))
                stack.append(_Text(f", {text}: " if index else f"{text}: "))
        elif isinstance(current, list | tuple):
            out.append("[")
            stack.append(_Text("]"))
            for index in range(len(current) - 1, -1, -1):
                stack.append(current[index])
                if index:
                    stack.append(_Text(", "))
        else:
            out.append(scalar(current))
    return "".join(out)
