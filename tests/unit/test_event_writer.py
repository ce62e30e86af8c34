"""The one-pass writer answers exactly what the precise path answers, or leaves it to it."""

from __future__ import annotations

import math
import pickle
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.changes.event import record_fields, source_fields
from connector.changes.fingerprint import fingerprint
from connector.changes.prepare import PagePreparer
from connector.changes.validate import validate
from connector.errors import InvalidRecordError
from connector.kafka import event_writer
from connector.kafka.event_writer import RawEventWriter
from connector.kafka.serde import BodyEncoder
from connector.models import EventSource, Page, PreparedRecord
from tests.support.records import documented_record
from tests.unit.test_serde import RECORD, RECORDS

OBSERVED_MS = 1_741_064_767_890
SOURCE = source_fields(EventSource("learnosity-scores", "v2025.2.LTS", "0.1.0"))
BODY = BodyEncoder()


def precise(raw: Any, include_responses: bool = True) -> tuple[tuple[bytes, ...], int]:
    body = BODY.encode(record_fields(validate(raw), OBSERVED_MS, SOURCE))
    return body, fingerprint(raw, include_responses)


def fast(raw: Any, include_responses: bool = True) -> tuple[tuple[bytes, ...], int] | None:
    return RawEventWriter(OBSERVED_MS, SOURCE, include_responses).prepare(raw)


@settings(max_examples=500)
@given(RECORDS, st.booleans())
def test_whenever_it_answers_the_precise_path_answers_the_same(
    record: dict[str, Any], include_responses: bool
) -> None:
    answer = fast(record, include_responses)
    if answer is not None:  # precise() raises if the precise path would refuse it
        assert precise(record, include_responses) == answer


ORDINARY = [
    documented_record(),
    RECORD,  # unknown fields at every level, a float count, responses
    documented_record(subscores=[], responses=[], score=None, dt_saved="2025-03-04T05:06:00Z"),
    documented_record(
        subscores=[
            {"title": "Probabilités & 有機化学", "score": 0.5, "items": []},
            {"id": "s2", "num_questions": 2**40, "items": None, "extra": {"a": 1}},
        ],
        responses=[{"response_id": "r", "attempted": False, "score": 1.0}],
        session_id="é" * 100,  # a long, non-ASCII key
    ),
]


@pytest.mark.parametrize("include_responses", [True, False])
@pytest.mark.parametrize("record", ORDINARY[:1] + ORDINARY[2:])
def test_ordinary_records_take_the_fast_path(
    record: dict[str, Any], include_responses: bool
) -> None:
    assert fast(record, include_responses) == precise(record, include_responses)


def test_a_float_count_is_left_to_the_precise_path_which_maps_it() -> None:
    assert fast(RECORD) is None  # num_attempted 20.0
    assert precise(RECORD)


@pytest.mark.parametrize(
    "changes",
    [
        {"session_id": ""},
        {"user_id": None},
        {"status": 3},
        {"session_id": "\ud800"},  # not encodable as UTF-8
        {"score": "39"},
        {"score": True},
        {"score": math.nan},
        {"max_score": math.inf},
        {"score": 2**60},  # not an exact double: the precise path decides
        {"subscores": {"id": "x"}},
        {"subscores": [["x"]]},
        {"subscores": [{"items": [None]}]},
        {"subscores": [{"items": [{"unhashable": 1}]}]},
        {"subscores": [{"items": ["a", 1]}]},
        {"subscores": [{"num_questions": 2**64}]},
        {"responses": [{"attempted": "yes"}]},
        {"dt_saved": 5},
    ],
    ids=repr,
)
def test_anything_unusual_is_left_to_the_precise_path(changes: dict[str, Any]) -> None:
    assert fast(documented_record(**changes)) is None


def test_what_is_not_an_object_is_left_to_the_precise_path() -> None:
    assert fast(["not", "a", "record"]) is None
    with pytest.raises(InvalidRecordError):
        precise(["not", "a", "record"])


@settings(max_examples=100)
@given(st.lists(RECORDS | st.sampled_from(ORDINARY), max_size=6))
def test_a_page_prepares_the_same_with_and_without_the_fast_path(
    records: list[dict[str, Any]],
) -> None:
    page = Page(tuple(records), "t", limit=50)
    common: dict[str, Any] = {
        "include_responses": True,
        "encode_body": BODY.encode,
        "source": SOURCE,
        "clock": lambda: OBSERVED_MS / 1000,
    }
    with_fast = PagePreparer(**common, fast_writer=RawEventWriter)(page)
    without = PagePreparer(**common)(page)
    assert with_fast == without
    assert [r.fingerprint for r in with_fast.records] == [
        fingerprint(r, True) for r in records if validate_or_none(r) is not None
    ]


def validate_or_none(record: Any) -> Any:
    try:
        return validate(record)
    except InvalidRecordError:
        return None


def test_a_prepared_page_pickles_back_to_the_same_page() -> None:
    page = PagePreparer(
        include_responses=False, encode_body=BODY.encode, source=SOURCE, fast_writer=RawEventWriter
    )(Page((*ORDINARY, {"session_id": 5}), "t", limit=50))
    assert len(page.records) == len(ORDINARY) and len(page.dead_letters) == 1
    back = pickle.loads(pickle.dumps(page, 5))
    assert back == page
    assert all(type(record) is PreparedRecord for record in back.records)
    assert back.records[0].fingerprint == page.records[0].fingerprint


def test_subscore_heads_and_item_lists_are_written_once_and_the_caches_stay_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(event_writer, "CACHE_SIZE", 3)
    monkeypatch.setattr(event_writer, "_items_written", {})
    monkeypatch.setattr(event_writer, "_heads_written", {})
    for n in range(10):
        subscore = {"id": f"s-{n}", "title": "T", "num_questions": n, "items": [f"i-{n}", "x"]}
        record = documented_record(subscores=[subscore])
        assert fast(record) == precise(record)
        assert fast(record) == precise(record)  # the second time from the caches
        assert len(event_writer._items_written) <= 3
        assert len(event_writer._heads_written) <= 3


@pytest.mark.parametrize("questions", [True, 1.0])
def test_a_cached_head_is_not_taken_for_an_equal_count_of_another_type(questions: Any) -> None:
    ordinary = documented_record(subscores=[{"id": "s", "title": "T", "num_questions": 1}])
    unusual = documented_record(subscores=[{"id": "s", "title": "T", "num_questions": questions}])
    assert fast(ordinary) == precise(ordinary)  # caches the head of num_questions 1
    assert fast(unusual) is None  # the precise path decides (bool refused, 1.0 mapped)
