"""Fingerprints: what matters changes them, nothing else does; event ids are stable."""

from __future__ import annotations

import copy
import random
import re
import uuid
from collections.abc import Callable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from connector.changes.fingerprint import canonical_form, event_id, fingerprint
from tests.support.records import DOCUMENTED_RECORD

#: pinned: a change here means every tracked session re-emits once after an upgrade
#: (version 2: orjson writes the canonical form; version 1 was 0xB1FEB11030E608E4)
DOCUMENTED_RECORD_FINGERPRINT = 0xE69130A1D0E03721
#: pinned too, for what the JSON writer could format differently: fractions, exponents
#: and non-ASCII text
UNUSUAL_RECORD = {
    **DOCUMENTED_RECORD,
    "score": 12.75,
    "max_score": 1e16,
    "subscores": [
        {
            **DOCUMENTED_RECORD["subscores"][0],
            "title": "Probabilités & 有機化学",
            "score": 0.1,
            "max_score": 1e-07,
        }
    ],
}
UNUSUAL_RECORD_FINGERPRINT = 0x2F8BA7592C7DEC47

SEEDS = st.integers(0, 2**32 - 1)
NUMBERS = st.one_of(st.none(), st.integers(-(10**6), 10**6), st.floats(-1e6, 1e6))


def shuffled(obj: Any, rng: random.Random) -> Any:
    """The same JSON value with every object's keys in a random order."""
    if isinstance(obj, dict):
        keys = list(obj)
        rng.shuffle(keys)
        return {key: shuffled(obj[key], rng) for key in keys}
    if isinstance(obj, list):
        return [shuffled(item, rng) for item in obj]
    return obj


def as_floats(obj: Any) -> Any:
    """Every int (not bool) as the equal float."""
    if isinstance(obj, dict):
        return {key: as_floats(value) for key, value in obj.items()}
    if isinstance(obj, list):
        return [as_floats(item) for item in obj]
    if type(obj) is int:
        return float(obj)
    return obj


def test_the_documented_record_has_a_pinned_fingerprint() -> None:
    # stable across processes and Python versions: no hash(), no dict order
    assert fingerprint(DOCUMENTED_RECORD, False) == DOCUMENTED_RECORD_FINGERPRINT


def test_numbers_and_text_are_written_as_pinned() -> None:
    assert canonical_form(UNUSUAL_RECORD, False).decode() == (
        '[2,"Completed",12.75,10000000000000000,[["subscore-1","Probabilités & 有機化学",'
        '20,20,0.1,1e-7,20,["293486384","293481468"]]]]'
    )
    assert fingerprint(UNUSUAL_RECORD, False) == UNUSUAL_RECORD_FINGERPRINT


def test_what_orjson_cannot_write_still_has_a_stable_fingerprint() -> None:
    huge = {**DOCUMENTED_RECORD, "score": 2**70}
    assert canonical_form(huge, False).startswith(b'[2,"Completed",1180591620717411303424,')
    assert fingerprint(huge, False) == fingerprint(dict(huge), False)
    assert fingerprint(huge, False) != DOCUMENTED_RECORD_FINGERPRINT


def test_the_fingerprint_is_64_bits() -> None:
    assert 0 <= fingerprint(DOCUMENTED_RECORD, True) < 2**64


@given(SEEDS)
def test_key_order_does_not_matter(seed: int) -> None:
    record = shuffled(DOCUMENTED_RECORD, random.Random(seed))
    assert fingerprint(record, False) == DOCUMENTED_RECORD_FINGERPRINT


def test_ints_and_equal_floats_fingerprint_equal() -> None:
    assert fingerprint(as_floats(DOCUMENTED_RECORD), False) == DOCUMENTED_RECORD_FINGERPRINT
    assert canonical_form({"score": -0.0}, False) == canonical_form({"score": 0}, False)


@given(st.integers(-(2**53), 2**53))
def test_any_whole_number_equals_its_float(value: int) -> None:
    as_int = {**DOCUMENTED_RECORD, "score": value}
    as_float = {**DOCUMENTED_RECORD, "score": float(value)}
    assert fingerprint(as_int, False) == fingerprint(as_float, False)


VOLATILE_VALUES = st.one_of(st.none(), st.text(max_size=30), st.integers(), st.booleans())


@given(
    st.dictionaries(
        st.sampled_from(["dt_saved", "dt_updated", "dt_started", "dt_completed", "new_field"]),
        VOLATILE_VALUES,
    ),
    st.dictionaries(st.sampled_from(["dt_score_updated", "unknown"]), VOLATILE_VALUES),
)
def test_volatile_and_unknown_fields_are_ignored(
    top: dict[str, Any], per_response: dict[str, Any]
) -> None:
    base = {**DOCUMENTED_RECORD, "responses": [{"response_id": "r1", "score": 1}]}
    changed = copy.deepcopy(base)
    changed.update(top)
    changed["responses"][0].update(per_response)
    changed["subscores"][0]["unknown_subscore_field"] = top.get("new_field")
    for include_responses in (False, True):
        assert fingerprint(changed, include_responses) == fingerprint(base, include_responses)


def test_absent_null_and_empty_lists_are_the_same() -> None:
    bare = {"status": "Incomplete"}
    variant: dict[str, Any]
    for variant in ({"subscores": None}, {"subscores": []}, {"score": None}):
        assert fingerprint({**bare, **variant}, False) == fingerprint(bare, False)
    for variant in ({"responses": None}, {"responses": []}):
        assert fingerprint({**bare, **variant}, True) == fingerprint(bare, True)


MATTERING_EDITS: list[tuple[str, Callable[[dict[str, Any]], object]]] = [
    ("status", lambda r: r.update(status="Pending Scoring")),
    ("score", lambda r: r.update(score=38)),
    ("score to null", lambda r: r.update(score=None)),
    ("fractional score", lambda r: r.update(score=39.5)),
    ("max_score", lambda r: r.update(max_score=41)),
    ("subscore score", lambda r: r["subscores"][0].update(score=18)),
    ("subscore attempted", lambda r: r["subscores"][0].update(num_attempted=19)),
    ("subscore items", lambda r: r["subscores"][0]["items"].append("1")),
    ("subscore title", lambda r: r["subscores"][0].update(title="chem")),
    ("subscore added", lambda r: r["subscores"].append({"id": "subscore-2"})),
    ("subscores removed", lambda r: r.update(subscores=None)),
]


def test_every_field_that_matters_changes_the_fingerprint() -> None:
    seen = {DOCUMENTED_RECORD_FINGERPRINT}
    for name, edit in MATTERING_EDITS:
        record = copy.deepcopy(DOCUMENTED_RECORD)
        edit(record)
        value = fingerprint(record, False)
        assert value not in seen, name
        seen.add(value)


@given(NUMBERS, NUMBERS)
def test_a_different_score_gives_a_different_fingerprint(a: Any, b: Any) -> None:
    def same(x: Any, y: Any) -> bool:
        return x == y and (x is None) == (y is None)

    fa = fingerprint({**DOCUMENTED_RECORD, "score": a}, False)
    fb = fingerprint({**DOCUMENTED_RECORD, "score": b}, False)
    assert (fa == fb) == same(a, b)


def test_response_scores_count_only_when_asked_for() -> None:
    base = {**DOCUMENTED_RECORD, "responses": [{"response_id": "r1", "score": 1, "max_score": 1}]}
    rescored = copy.deepcopy(base)
    rescored["responses"][0]["score"] = 0
    assert fingerprint(base, False) == fingerprint(rescored, False)
    assert fingerprint(base, True) != fingerprint(rescored, True)
    for field, value in (("attempted", True), ("max_score", 2), ("response_id", "r2")):
        edited = copy.deepcopy(base)
        edited["responses"][0][field] = value
        assert fingerprint(base, True) != fingerprint(edited, True), field


# --- event ids -----------------------------------------------------------------------------
UUID_V8 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


@settings(max_examples=50)
@given(st.text(min_size=1, max_size=40), st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1))
def test_event_ids_are_deterministic_uuid_v8(session_id: str, fp: int, previous: int) -> None:
    session_id = session_id.encode("utf-8", "replace").decode("utf-8")  # no lone surrogates
    first = event_id(session_id, fp, previous)
    assert first == event_id(session_id, fp, previous)
    assert UUID_V8.match(first)
    assert uuid.UUID(first).variant == uuid.RFC_4122


def test_event_ids_differ_by_session_content_and_previous_content() -> None:
    ids = {
        event_id("s1", 1, None),
        event_id("s2", 1, None),
        event_id("s1", 2, None),
        event_id("s1", 1, 2),
        event_id("s1", 1, 3),
    }
    assert len(ids) == 5
    # the session id is length-prefixed: no ambiguity between id bytes and fingerprints
    assert event_id("a", 1, None) != event_id("a\x00", 1, None)
