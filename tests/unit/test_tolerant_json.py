"""A page orjson refuses, read item by item: the bad record is isolated, not the page."""

from __future__ import annotations

import json
import pickle
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.commands.fetch import record_line
from connector.tolerant_json import (
    MAX_DEPTH,
    Salvaged,
    Unreadable,
    deeper_than,
    dumps,
    read_item,
    read_page,
)

GOOD = b'{"session_id":"s1","user_id":"u1","score":1}'


def page(*items: bytes, meta: bytes = b'{"status":true,"next":"7.5"}') -> bytes:
    return b'{"meta":' + meta + b',"data":[' + b",".join(items) + b"]}"


def nested(depth: int) -> bytes:
    """A record with a field nested so that the record is ``depth`` levels deep."""
    return b'{"session_id":"deep","x":' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"


BAD = {
    "non_utf8": b'{"session_id":"s2","user_id":"u\xff\xfe"}',
    "lone_surrogate": b'{"session_id":"s3","title":"a\\ud800b"}',
    "nan": b'{"session_id":"s4","score":NaN}',
    "infinity": b'{"session_id":"s5","score":-Infinity}',
    "overflow": b'{"session_id":"s6","max_score":1e400}',
    "past_orjson": nested(1100),
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_one_bad_record_leaves_its_neighbours_as_they_are(kind: str) -> None:
    body = page(GOOD, BAD[kind], GOOD)
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(body)  # the premise: the fast parser refuses the whole page
    document = read_page(body)
    assert document is not None
    assert document["meta"] == {"status": True, "next": "7.5"}
    first, bad, last = document["data"]
    assert type(first) is dict and type(last) is dict  # as orjson reads them
    assert first == last == json.loads(GOOD)
    assert isinstance(bad, Salvaged | Unreadable)
    assert bad.source == BAD[kind]  # the bytes as served, for the dead letter


def test_values_orjson_refuses_are_kept_as_data() -> None:
    items = read_page(page(*(BAD[k] for k in ("non_utf8", "lone_surrogate", "nan", "overflow"))))
    assert items is not None
    non_utf8, surrogate, nan, overflow = items["data"]
    assert non_utf8["user_id"] == "u\udcff\udcfe"  # kept apart: the bytes come back
    assert non_utf8["user_id"].encode("utf-8", "surrogateescape") == b"u\xff\xfe"
    assert surrogate["title"] == "a\ud800b"
    assert nan["score"] != nan["score"]
    assert overflow["max_score"] == float("inf")


def test_too_deep_is_never_parsed() -> None:
    item = read_page(page(nested(5000)))
    assert item is not None
    (deep,) = item["data"]
    assert isinstance(deep, Unreadable)
    assert deep.reason == "too_deep"
    assert "5000 levels" in deep.message


def test_depth_bound_is_inclusive() -> None:
    assert type(read_item(nested(MAX_DEPTH), MAX_DEPTH)) is dict
    assert isinstance(read_item(nested(MAX_DEPTH + 1), MAX_DEPTH + 1), Unreadable)
    document = read_page(page(nested(MAX_DEPTH), nested(MAX_DEPTH + 1)))
    assert document is not None
    assert [type(i).__name__ for i in document["data"]] == ["dict", "Unreadable"]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [(b"{bad}", "invalid_json"), (b"NaN", "not_an_object"), (b'"x\xff"', "not_an_object")],
)
def test_items_that_are_not_records(raw: bytes, reason: str) -> None:
    document = read_page(page(GOOD, raw))
    assert document is not None
    item = document["data"][1]
    assert isinstance(item, Unreadable)
    assert (item.source, item.reason) == (raw, reason)


def test_brackets_and_commas_inside_strings_do_not_split() -> None:
    tricky = b'{"session_id":"a,]}[{\\"","t":"\\\\","n":NaN}'
    document = read_page(page(tricky, GOOD))
    assert document is not None
    assert document["data"][0]["session_id"] == 'a,]}[{"'
    assert document["data"][0]["t"] == "\\"
    assert len(document["data"]) == 2


@pytest.mark.parametrize(
    "body",
    [
        page(GOOD, BAD["nan"])[:-2],  # cut short
        page(GOOD, BAD["nan"])[:-1],
        page(GOOD, BAD["nan"]) + b"{}",  # something after the document
        b"[" + GOOD + b"]",  # not an object
        b"garbage" + page(BAD["nan"]),
        page(BAD["nan"]).replace(b"]}", b"}}"),  # brackets that do not match
        b"",
        b"NaN",
        page(GOOD, meta=b'{"status":tru\xff}'),
    ],
)
def test_a_broken_document_is_not_split(body: bytes) -> None:
    assert read_page(body) is None


def test_members_in_any_order_and_data_not_an_array() -> None:
    document = read_page(b' {"data": [ ' + BAD["nan"] + b' , ] ,"x":[1,{"a":2}],"meta":{"n":NaN}} ')
    assert document is not None
    assert len(document["data"]) == 1  # a trailing comma is no item
    assert document["meta"]["n"] != document["meta"]["n"]
    assert "x" not in document
    without = read_page(b'{"meta":{"a":NaN},"data":null}')
    assert without is not None and without["data"] is None


def test_salvaged_records_cross_processes_with_their_bytes() -> None:
    document = read_page(page(BAD["nan"], nested(2000)))
    assert document is not None
    copied = pickle.loads(pickle.dumps(document["data"]))
    assert type(copied[0]) is Salvaged and copied[0].source == BAD["nan"]
    assert copied[1] == document["data"][1]


@given(st.recursive(st.none() | st.integers() | st.text(), st.lists, max_leaves=20))
def test_deeper_than_agrees_with_a_recursive_count(value: Any) -> None:
    def depth(v: Any) -> int:
        if isinstance(v, list):
            return 1 + max((depth(c) for c in v), default=0)
        return 0

    assert deeper_than(value, depth(value)) is False
    assert deeper_than(value, depth(value) - 1) is (depth(value) > 0)


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c, max_size=3),
    max_leaves=15,
)


@given(JSONISH)
def test_dumps_writes_what_json_dumps_writes(value: Any) -> None:
    assert dumps(value) == json.dumps(value, ensure_ascii=False)


def test_dumps_at_any_depth() -> None:
    value: Any = "leaf"
    for _ in range(5000):
        value = {"a": [value]}
    text = dumps(value)
    assert text.startswith('{"a": [{"a": [') and text.count("leaf") == 1
    assert deeper_than(value, 10_000) is False and deeper_than(value, 9_999) is True


def test_fetch_prints_a_record_the_fast_parser_refused_as_its_bytes() -> None:
    """``learnosity-connector fetch`` writes every record as one line, even a bad one."""
    salvaged = Salvaged({"score": float("nan")}, b'{"score": NaN}')
    assert record_line(salvaged) == '{"score": NaN}'
    unreadable = Unreadable(b'{"a": "\xff"}', "invalid_json", "not UTF-8")
    assert record_line(unreadable) == '{"a": "\\xff"}'
    assert record_line({"a": "é"}) == '{"a":"é"}'
