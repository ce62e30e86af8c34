"""Checks one ``/sessions/scores`` item before anything is decided or published about it.

A record passes when every field the event schema models has a type the schema can hold:
    session_id, user_id, activity_id   non-empty strings (valid UTF-8: the Kafka key)
    status                             a non-empty string, verbatim (unknown ones are fine)
    score, max_score                   finite number or null/absent
    subscores                          list of objects or null/absent (fields below)
    responses                          list of objects or null/absent (fields below)
    dt_started/_completed/_saved/_updated   string or null/absent
Fields the schema does not model are never checked: they travel in ``extra_fields_json``.
A record that fails raises ``InvalidRecordError`` with one of ``INVALID_REASONS``, and goes
to the dead-letter topic with its original JSON.

Items of a page the fast parser refused (``tolerant_json``) are checked further: an
``Unreadable`` one is refused with its own reason, and every value of a ``Salvaged``
record, modeled or not, must be what an event can carry (finite numbers, text that is
UTF-8, keys too, nesting within ``tolerant_json.MAX_DEPTH``). Records the fast parser
read never hold such values, so they skip that walk.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Final, Literal

from connector.errors import InvalidRecordError
from connector.models import ScoreRecord
from connector.tolerant_json import MAX_DEPTH, Salvaged, Unreadable

#: every ``InvalidRecordError.reason`` the pipeline uses (a bounded metric label set)
InvalidReason = Literal[
    "not_an_object",
    "missing_field",
    "wrong_type",
    "invalid_value",
    "not_serializable",
    "invalid_json",
    "too_deep",
    "too_large",
]
INVALID_REASONS: Final[tuple[InvalidReason, ...]] = (
    "not_an_object",  # the item is not a JSON object
    "missing_field",  # a required field is absent, null or empty
    "wrong_type",  # a modeled field has a type the schema cannot hold
    "invalid_value",  # right type, unusable value (NaN score, id that is not UTF-8)
    "not_serializable",  # the Avro serializer refused the event (raised by kafka.serde)
    "invalid_json",  # the item's bytes are not JSON, even read tolerantly
    "too_deep",  # nested deeper than tolerant_json.MAX_DEPTH
    "too_large",  # the event is larger than a Kafka message may be (raised by the runner)
)

REQUIRED_IDS: Final = ("session_id", "user_id", "activity_id")
TIME_FIELDS: Final = ("dt_started", "dt_completed", "dt_saved", "dt_updated")
#: where a record's updated time is read from, best first (not every record has each)
POSITION_FIELDS: Final = ("dt_updated", "dt_saved", "dt_completed", "dt_started")
#: ``updated_ms`` of a record without a usable time
UNKNOWN_TIME: Final = -1
#: counts are Avro ``long``
LONG_MIN: Final = -(2**63)
LONG_MAX: Final = 2**63 - 1


def invalid(message: str, reason: InvalidReason) -> InvalidRecordError:
    return InvalidRecordError(message, reason=reason)


def validate(item: Any) -> ScoreRecord:
    """The validated view of ``item``, or ``InvalidRecordError`` naming the first problem."""
    if type(item) is not dict:  # one check on the common path
        if isinstance(item, Unreadable):
            raise invalid(item.message, item.reason)
        if not isinstance(item, dict):
            raise invalid(f"record is a JSON {_json_type(item)}, not an object", "not_an_object")
    session_id, user_id, activity_id = (_required_id(item, name) for name in REQUIRED_IDS)
    status = item.get("status")
    if status is None or status == "":
        raise invalid("status: missing or empty", "missing_field")
    if not isinstance(status, str):
        raise invalid(f"status: {_json_type(status)}, expected a string", "wrong_type")
    if not plainly_valid(item):  # the common case costs one pass without calls
        check_fields(item)
    if type(item) is Salvaged:
        check_every_value(item)
    return ScoreRecord(session_id, user_id, activity_id, status, item, updated_ms(item))


def record_position(record: object) -> float | None:
    """A record's updated time (Unix seconds), from the fields the service sends."""
    if not isinstance(record, dict):
        return None
    for name in POSITION_FIELDS:
        value = record.get(name)
        if isinstance(value, str) and value:
            try:
                return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
    return None


def updated_ms(record: object) -> int:
    """``record_position`` in whole milliseconds; ``UNKNOWN_TIME`` without one."""
    position = record_position(record)
    return UNKNOWN_TIME if position is None else round(position * 1000)


def check_fields(item: Mapping[str, Any]) -> None:
    """The precise checks of every modeled field but the ids; raises on the first problem."""
    for name in ("score", "max_score"):
        check_number(item.get(name), name)
    for name in TIME_FIELDS:
        check_optional_str(item.get(name), name)
    _check_list_of_objects(item.get("subscores"), "subscores", _check_subscore)
    _check_list_of_objects(item.get("responses"), "responses", _check_response)


# --- the fast path: True only when check_fields would pass; False means "look closer" ----
#: ints up to 2**53 are exact doubles; larger ones take the precise path
_SAFE_INT: Final = 2**53


def _plain_number(value: Any) -> bool:
    kind = type(value)
    if kind is float:
        return bool(value - value == 0.0)  # False for inf and nan
    return kind is int and -_SAFE_INT <= value <= _SAFE_INT


def _plain_count(value: Any) -> bool:
    return type(value) is int and LONG_MIN <= value <= LONG_MAX


def plainly_valid(item: Mapping[str, Any]) -> bool:
    get = item.get
    for name in ("score", "max_score"):
        value = get(name)
        if value is not None and not _plain_number(value):
            return False
    for name in TIME_FIELDS:
        value = get(name)
        if value is not None and type(value) is not str:
            return False
    subscores = get("subscores")
    if subscores is not None and (
        type(subscores) is not list or not all(_plain_subscore(s) for s in subscores)
    ):
        return False
    responses = get("responses")
    return responses is None or (
        type(responses) is list and all(_plain_response(r) for r in responses)
    )


def _plain_subscore(subscore: Any) -> bool:
    if type(subscore) is not dict:
        return False
    get = subscore.get
    for name in ("id", "title"):
        value = get(name)
        if value is not None and type(value) is not str:
            return False
    for name in ("num_questions", "num_attempted"):
        value = get(name)
        if value is not None and not _plain_count(value):
            return False
    for name in ("score", "max_score", "attempted_max_score"):
        value = get(name)
        if value is not None and not _plain_number(value):
            return False
    items = get("items")
    return items is None or (type(items) is list and all(type(i) is str for i in items))


def _plain_response(response: Any) -> bool:
    if type(response) is not dict:
        return False
    get = response.get
    for name in ("response_id", "dt_score_updated"):
        value = get(name)
        if value is not None and type(value) is not str:
            return False
    for name in ("score", "max_score"):
        value = get(name)
        if value is not None and not _plain_number(value):
            return False
    attempted = get("attempted")
    return attempted is None or type(attempted) is bool


def _required_id(item: Mapping[str, Any], name: str) -> str:
    value = item.get(name)
    if value is None or value == "":
        raise invalid(f"{name}: missing or empty", "missing_field")
    if not isinstance(value, str):
        raise invalid(f"{name}: {_json_type(value)}, expected a string", "wrong_type")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise invalid(f"{name}: not encodable as UTF-8", "invalid_value") from None
    return value


def check_number(value: Any, name: str) -> None:
    """Null, or an int/float (not a bool) that is finite as a double."""
    if value is None:
        return
    kind = type(value)
    if kind is not int and kind is not float:
        raise invalid(f"{name}: {_json_type(value)}, expected a number", "wrong_type")
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an int too large for a double
        finite = False
    if not finite:
        raise invalid(f"{name}: not a finite number", "invalid_value")


def check_count(value: Any, name: str) -> None:
    """Null, or a whole number (``20`` or ``20.0``) that fits an Avro long."""
    check_number(value, name)
    if value is None:
        return
    if type(value) is float and not value.is_integer():
        raise invalid(f"{name}: {value!r} is not a whole number", "invalid_value")
    if not LONG_MIN <= value <= LONG_MAX:
        raise invalid(f"{name}: out of range", "invalid_value")


def check_optional_str(value: Any, name: str) -> None:
    if value is not None and not isinstance(value, str):
        raise invalid(f"{name}: {_json_type(value)}, expected a string", "wrong_type")


def _check_list_of_objects(
    value: Any, name: str, check_item: Callable[[Mapping[str, Any], str], None]
) -> None:
    if value is None:
        return
    if not isinstance(value, list):
        raise invalid(f"{name}: {_json_type(value)}, expected a list", "wrong_type")
    for index, entry in enumerate(value):
        where = f"{name}[{index}]"
        if not isinstance(entry, dict):
            raise invalid(f"{where}: {_json_type(entry)}, expected an object", "wrong_type")
        check_item(entry, where)


def _check_subscore(subscore: Mapping[str, Any], where: str) -> None:
    check_optional_str(subscore.get("id"), f"{where}.id")
    check_optional_str(subscore.get("title"), f"{where}.title")
    check_count(subscore.get("num_questions"), f"{where}.num_questions")
    check_count(subscore.get("num_attempted"), f"{where}.num_attempted")
    for name in ("score", "max_score", "attempted_max_score"):
        check_number(subscore.get(name), f"{where}.{name}")
    items = subscore.get("items")
    if items is None:
        return
    if not isinstance(items, list):
        raise invalid(f"{where}.items: {_json_type(items)}, expected a list", "wrong_type")
    for index, item_ref in enumerate(items):
        check_optional_str(item_ref, f"{where}.items[{index}]")
        if item_ref is None:
            raise invalid(f"{where}.items[{index}]: null, expected a string", "wrong_type")


def _check_response(response: Mapping[str, Any], where: str) -> None:
    check_optional_str(response.get("response_id"), f"{where}.response_id")
    check_number(response.get("score"), f"{where}.score")
    check_number(response.get("max_score"), f"{where}.max_score")
    attempted = response.get("attempted")
    if attempted is not None and not isinstance(attempted, bool):
        raise invalid(
            f"{where}.attempted: {_json_type(attempted)}, expected true/false", "wrong_type"
        )
    check_optional_str(response.get("dt_score_updated"), f"{where}.dt_score_updated")


def check_every_value(record: Mapping[str, Any]) -> None:
    """Every value and key of ``record``, at any depth (without recursion): finite
    numbers, text that is UTF-8, nesting within ``MAX_DEPTH``."""
    stack: list[tuple[Any, str, int]] = [(record, "", 1)]
    while stack:
        value, where, depth = stack.pop()
        if isinstance(value, dict):
            if depth > MAX_DEPTH:
                raise invalid(f"{where}: nested deeper than {MAX_DEPTH} levels", "too_deep")
            for key, child in value.items():
                name = f"{where}.{_name(key)}" if where else _name(key)
                if isinstance(key, str) and not _is_utf8(key):
                    raise invalid(f"{name}: the key is not UTF-8 text", "invalid_value")
                stack.append((child, name, depth + 1))
        elif isinstance(value, list):
            if depth > MAX_DEPTH:
                raise invalid(f"{where}: nested deeper than {MAX_DEPTH} levels", "too_deep")
            stack.extend((child, f"{where}[{i}]", depth + 1) for i, child in enumerate(value))
        elif isinstance(value, str):
            if not _is_utf8(value):
                raise invalid(
                    f"{where}: not UTF-8 text (bytes that are not UTF-8, or a lone surrogate)",
                    "invalid_value",
                )
        elif isinstance(value, float) and not math.isfinite(value):
            raise invalid(f"{where}: not a finite number", "invalid_value")


def _is_utf8(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _name(key: Any) -> str:
    """A key as a message shows it: short, and never a whole value."""
    text = key if isinstance(key, str) else repr(key)
    return text if len(text) <= 40 else text[:40] + "..."


_JSON_TYPES: Final = ((bool, "boolean"), (int, "number"), (float, "number"), (str, "string"))


def _json_type(value: Any) -> str:
    """The JSON name of a value's type, for messages (never the value: it may be large)."""
    if value is None:
        return "null"
    for python_type, name in _JSON_TYPES:  # bool before int: True is an int too
        if isinstance(value, python_type):
            return name
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else type(value).__name__
