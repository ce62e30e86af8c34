"""Record validation: what passes, what is refused, and with which (bounded) reason."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.changes.validate import INVALID_REASONS, check_fields, plainly_valid, validate
from connector.errors import InvalidRecordError
from connector.tolerant_json import MAX_DEPTH, Salvaged, Unreadable
from tests.support.records import documented_record


def good(**changes: Any) -> dict[str, Any]:
    responses = [
        {
            "response_id": "r1",
            "score": 1,
            "max_score": 1,
            "attempted": True,
            "dt_score_updated": "2025-01-01T00:00:00Z",
        }
    ]
    extras = {"responses": responses, "dt_started": "2025-01-01 00:00:00"}
    return documented_record(**{**extras, **changes})


@pytest.mark.parametrize(
    "record",
    [
        good(),
        good(status="Pending Scoring"),
        good(status="A status nobody documented"),
        good(score=None, max_score=None, subscores=None, responses=None),
        {k: v for k, v in good().items() if k not in ("score", "subscores", "responses")},
        good(score=12.75, subscores=[{}], responses=[{}]),
        good(subscores=[{"num_questions": 20.0}]),  # whole floats are fine as counts
        good(new_top_level_field={"anything": [1, None]}, dt_saved=None),
        good(subscores=[{"id": None, "items": None, "new": object()}]),
        good(user_id="ユーザー", session_id="sess\u00e9"),
    ],
)
def test_valid_records_pass_and_keep_the_raw_record(record: dict[str, Any]) -> None:
    checked = validate(record)
    assert checked.raw is record
    assert (checked.session_id, checked.user_id, checked.activity_id, checked.status) == (
        record["session_id"],
        record["user_id"],
        record["activity_id"],
        record["status"],
    )


def _without(name: str) -> dict[str, Any]:
    record = good()
    del record[name]
    return record


@pytest.mark.parametrize(
    ("item", "reason", "mentions"),
    [
        (None, "not_an_object", "null"),
        ([good()], "not_an_object", "array"),
        ("text", "not_an_object", "string"),
        (_without("session_id"), "missing_field", "session_id"),
        (good(user_id=""), "missing_field", "user_id"),
        (good(activity_id=None), "missing_field", "activity_id"),
        (_without("status"), "missing_field", "status"),
        (good(status=""), "missing_field", "status"),
        (good(session_id=123), "wrong_type", "session_id"),
        (good(status=1), "wrong_type", "status"),
        (good(score="39"), "wrong_type", "score"),
        (good(score=True), "wrong_type", "score"),
        (good(max_score=[40]), "wrong_type", "max_score"),
        (good(score=float("nan")), "invalid_value", "score"),
        (good(score=float("inf")), "invalid_value", "score"),
        (good(score=10**400), "invalid_value", "score"),
        (good(subscores={"id": "x"}), "wrong_type", "subscores"),
        (good(subscores=["x"]), "wrong_type", "subscores[0]"),
        (good(subscores=[{"num_questions": 2.5}]), "invalid_value", "subscores[0].num_questions"),
        (good(subscores=[{"num_attempted": 2**63}]), "invalid_value", "num_attempted"),
        (good(subscores=[{"items": "1,2"}]), "wrong_type", "subscores[0].items"),
        (good(subscores=[{"items": [1]}]), "wrong_type", "subscores[0].items[0]"),
        (good(subscores=[{"items": [None]}]), "wrong_type", "subscores[0].items[0]"),
        (good(subscores=[{"title": 5}]), "wrong_type", "subscores[0].title"),
        (good(responses=[{"attempted": "yes"}]), "wrong_type", "responses[0].attempted"),
        (good(responses=[{"score": "1"}]), "wrong_type", "responses[0].score"),
        (good(responses=[{"response_id": 7}]), "wrong_type", "responses[0].response_id"),
        (good(dt_saved=1700000000), "wrong_type", "dt_saved"),
        (good(user_id="bad\udc80"), "invalid_value", "user_id"),
    ],
)
def test_invalid_records_name_the_field_and_a_known_reason(
    item: Any, reason: str, mentions: str
) -> None:
    with pytest.raises(InvalidRecordError) as caught:
        validate(item)
    assert caught.value.reason == reason
    assert mentions in str(caught.value)


def test_messages_never_echo_values() -> None:
    with pytest.raises(InvalidRecordError) as caught:
        validate(good(score="a very long secretive value"))
    assert "secretive" not in str(caught.value)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)
FIELDS = [
    "session_id",
    "user_id",
    "activity_id",
    "status",
    "score",
    "max_score",
    "subscores",
    "responses",
    "dt_saved",
    "other",
]


@given(st.dictionaries(st.sampled_from(FIELDS), JSON) | JSON)
def test_anything_is_either_valid_or_refused_with_a_known_reason(item: Any) -> None:
    try:
        validate(item)
    except InvalidRecordError as exc:
        assert exc.reason in INVALID_REASONS
        json.dumps(str(exc))  # the message is plain text


def test_reasons_are_a_small_fixed_set() -> None:
    assert len(INVALID_REASONS) == len(set(INVALID_REASONS)) <= 8


VALUES = JSON | st.lists(st.text(max_size=3), max_size=3) | st.just(2**60) | st.just(3.0)
SUBSCORE_LIKE = st.dictionaries(
    st.sampled_from(
        ["id", "title", "num_questions", "num_attempted", "score", "max_score",
         "attempted_max_score", "items", "x"]
    ),
    VALUES,
)  # fmt: skip
RESPONSE_LIKE = st.dictionaries(
    st.sampled_from(["response_id", "score", "max_score", "attempted", "dt_score_updated"]),
    VALUES,
)
FIELDS_LIKE = st.fixed_dictionaries(
    {},
    optional={
        "score": VALUES,
        "max_score": VALUES,
        "dt_saved": VALUES,
        "subscores": st.none() | st.lists(SUBSCORE_LIKE | VALUES, max_size=3) | VALUES,
        "responses": st.none() | st.lists(RESPONSE_LIKE | VALUES, max_size=3) | VALUES,
    },
)


@given(FIELDS_LIKE)
def test_the_fast_path_never_accepts_what_the_precise_checks_refuse(fields: dict[str, Any]) -> None:
    if plainly_valid(fields):
        check_fields(fields)


def test_the_fast_path_takes_ordinary_records() -> None:
    assert plainly_valid(good())
    assert plainly_valid(good(score=None, subscores=None, responses=[]))


# --- items of a page the fast parser refused (connector.tolerant_json) --------------------
def salvaged(**changes: Any) -> Salvaged:
    return Salvaged(good(**changes), b"{...}")


@pytest.mark.parametrize(
    ("record", "where", "reason"),
    [
        # the validator's own paths, unreachable while orjson refused whole pages
        (salvaged(user_id="u\udcff"), "user_id", "invalid_value"),  # bytes that are not UTF-8
        (salvaged(session_id="s\ud800"), "session_id", "invalid_value"),
        (salvaged(score=float("nan")), "score", "invalid_value"),
        (salvaged(max_score=float("inf")), "max_score", "invalid_value"),
        (salvaged(subscores=[{"score": float("-inf")}]), "subscores[0].score", "invalid_value"),
        # values only the walk over every value finds
        (salvaged(status="Completed\ud800"), "status", "invalid_value"),
        (salvaged(subscores=[{"title": "t\udcc3"}]), "subscores[0].title", "invalid_value"),
        (salvaged(notes={"a": [1, float("nan")]}), "notes.a[1]", "invalid_value"),
        (salvaged(notes={"k\udcff": 1}), "notes.k", "invalid_value"),
        (salvaged(dt_saved="2025\udcff"), "dt_saved", "invalid_value"),
    ],
)
def test_salvaged_records_with_values_an_event_cannot_carry(
    record: Salvaged, where: str, reason: str
) -> None:
    with pytest.raises(InvalidRecordError) as caught:
        validate(record)
    assert caught.value.reason == reason
    assert str(caught.value).startswith(where)


def test_a_salvaged_record_nested_too_deep() -> None:
    value: Any = 1
    for _ in range(MAX_DEPTH):
        value = [value]
    with pytest.raises(InvalidRecordError) as caught:
        validate(salvaged(notes=value))
    assert caught.value.reason == "too_deep"


def test_a_salvaged_record_with_clean_values_passes() -> None:
    """orjson refuses ints past 64 bits; they are fine where the schema does not look."""
    record = salvaged(notes={"big": 2**70, "text": "ü"})
    assert validate(record).raw is record


@pytest.mark.parametrize("reason", ["invalid_json", "too_deep", "not_an_object"])
def test_unreadable_items_are_refused_with_their_reason(reason: Any) -> None:
    with pytest.raises(InvalidRecordError) as caught:
        validate(Unreadable(b"{", reason, "why"))
    assert caught.value.reason == reason
    assert str(caught.value) == "why"


def test_new_reasons_are_known() -> None:
    assert {"invalid_json", "too_deep", "not_an_object"} <= set(INVALID_REASONS)
