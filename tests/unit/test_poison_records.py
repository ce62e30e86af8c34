"""Poison records, from the response's bytes to dead letters: never an exception.

Each bad record of a page becomes one dead letter with its reason and the bytes it was
served as; its neighbours are prepared as on any page. Before: a field 1,000 deep raised
RecursionError in the fetch process (exit 1, the same on every restart), and every other
kind made the whole page invalid JSON, retried forever.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.changes.event import RECORD_FIELDS, source_fields
from connector.changes.prepare import PagePreparer
from connector.kafka.serde import BodyEncoder
from connector.learnosity.responses import parse_response
from connector.models import EventSource, Page, PreparedPage
from connector.tolerant_json import Salvaged
from tests.support.records import documented_record


def prepare(records: list[Any]) -> PreparedPage:
    preparer = PagePreparer(
        include_responses=True,
        encode_body=BodyEncoder().encode,
        source=source_fields(EventSource("test", "v2025.2.LTS", "0.0.0")),
    )
    return preparer(Page(tuple(records), "1.0"))


def record_bytes(session_id: str, **changes: Any) -> bytes:
    record = documented_record(session_id=session_id, dt_updated="2025-01-01T00:00:00.000Z")
    record.update(changes)
    return json.dumps(record).encode()


def splice(session_id: str, field: str, raw: bytes) -> bytes:
    """A record whose ``field`` holds ``raw``, bytes no JSON encoder would write."""
    return record_bytes(session_id, **{field: "@@"}).replace(b'"@@"', raw)


def deep(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


#: (record bytes, reason): one of each kind the issue names, beside good ones
POISON = {
    "non_utf8": (splice("p-utf8", "user_id", b'"u\xc3\x28"'), "invalid_value"),
    "lone_surrogate": (splice("p-surrogate", "status", b'"Completed\\ud83d"'), "invalid_value"),
    "nan": (splice("p-nan", "score", b"NaN"), "invalid_value"),
    "overflow": (splice("p-overflow", "max_score", b"1e400"), "invalid_value"),
    "nested_1000": (splice("p-1000", "notes", deep(1000)), "too_deep"),
    "nested_past_orjson": (splice("p-2000", "notes", deep(2000)), "too_deep"),
    "not_json": (b'{"session_id":"p-json",}', "invalid_json"),
}


def body(items: list[bytes]) -> bytes:
    return b'{"meta":{"status":true,"next":"1.5"},"data":[' + b",".join(items) + b"]}"


@pytest.mark.parametrize("kind", sorted(POISON))
def test_each_poison_record_is_a_dead_letter_and_its_neighbours_flow(kind: str) -> None:
    raw, reason = POISON[kind]
    items = [record_bytes("good-1"), raw, record_bytes("good-2")]
    prepared = prepare(list(parse_response(200, {}, body(items)).records))
    assert [r.session_id for r in prepared.records] == ["good-1", "good-2"]
    (letter,) = prepared.dead_letters
    assert letter.reason == reason
    if kind != "nested_1000":  # the page orjson refused: the bytes as served
        assert letter.value == raw
    else:  # orjson read this page (1,000 < 1,024 levels): written again, at full depth
        assert letter.key == b"p-1000"
        written = json.loads(letter.value.replace(deep(1000), b"null"))
        assert written == json.loads(raw.replace(deep(1000), b"null"))


def test_every_kind_in_one_page() -> None:
    goods = [record_bytes(f"good-{i}") for i in range(10)]
    items = [x for pair in zip(goods, (p for p, _ in POISON.values()), strict=False) for x in pair]
    items += goods[len(POISON) :]
    prepared = prepare(list(parse_response(200, {}, body(items)).records))
    assert sorted(r.session_id for r in prepared.records) == sorted(f"good-{i}" for i in range(10))
    assert sorted(d.reason for d in prepared.dead_letters) == sorted(r for _, r in POISON.values())
    assert prepared.fetched == len(items)


#: where the deep value goes: a path into the documented record
WHERE = [
    ("notes",),
    ("subscores", 0, "other"),
    ("responses", 0, "other"),
    ("score",),
    ("subscores", 0, "title"),
    ("subscores", 0, "items"),
    ("session_id",),
]


@pytest.mark.parametrize("path", WHERE)
def test_a_field_1000_deep_anywhere_is_a_dead_letter(path: tuple[Any, ...]) -> None:
    """Validation, fingerprint, event mapping and the dead letter's JSON: no recursion."""
    value: Any = 1
    for _ in range(1000):
        value = [value]
    record = documented_record(responses=[{"response_id": "r", "score": 1}])
    target: Any = record
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    prepared = prepare([record])
    (letter,) = prepared.dead_letters
    assert letter.reason in {"too_deep", "wrong_type"}
    assert letter.value.count(b"[") >= 1000


JSONISH = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # NaN and infinities too
    | st.text()  # lone surrogates too
    | st.sampled_from(["u\udcff", "\ud800"]),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c, max_size=3),
    max_leaves=12,
)
FIELDS = st.sampled_from([*sorted(RECORD_FIELDS), "other"])


@settings(max_examples=300)
@given(changes=st.dictionaries(FIELDS, JSONISH, max_size=4), salvage=st.booleans())
def test_no_record_makes_preparing_raise(changes: dict[str, Any], salvage: bool) -> None:
    record = documented_record(**changes)
    item = Salvaged(record, b"{}") if salvage else record
    prepared = prepare([item])
    assert len(prepared.records) + len(prepared.dead_letters) == 1
    for letter in prepared.dead_letters:
        assert isinstance(letter.value, bytes) and letter.reason
