"""Event schema v1 end to end in one process: every shape of a v1 event is encoded by the
one writer (single-object, registry framing, and the two-step body) byte for byte as
fastavro writes it, decodes typed, and an API time that does not parse is a dead letter.
"""

from __future__ import annotations

import io
import json
import math
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.changes.event import source_fields
from connector.changes.prepare import PagePreparer
from connector.changes.validate import INVALID_REASONS
from connector.kafka.avro_writer import compile_writer
from connector.kafka.serde import (
    DECIDED_FIELDS,
    BodyEncoder,
    EventDecoder,
    RegistryEncoder,
    SingleObjectEncoder,
    fastavro_fallback,
    value_schema,
)
from connector.models import EventSource, Page
from tests.support.fake_registry import FakeRegistry

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
LONG = st.integers(-(2**63), 2**63 - 1)
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
ZONES = st.sampled_from([UTC, timezone(timedelta(hours=9)), timezone(timedelta(hours=-3))])
DATETIMES = st.datetimes(timezones=ZONES) | st.datetimes(
    min_value=datetime(1902, 1, 1), max_value=datetime(2200, 1, 1)
)
#: a timestamp-millis value: ms since the epoch, or a datetime (aware, or naive = local)
MILLIS = LONG | DATETIMES
#: ms a reader can turn into a datetime (years 1 to 9999): what parsed API times give
READABLE = st.integers(-62_135_596_800_000, 253_402_300_799_999) | DATETIMES
EXTRA = st.none() | st.dictionaries(TEXT, st.integers(), max_size=2).map(json.dumps)


def events(millis: st.SearchStrategy[Any], nan: bool = True) -> st.SearchStrategy[dict[str, Any]]:
    """v1 events, every field of them, each nullable one null, absent or set."""
    double = st.none() | st.floats(allow_nan=nan) | st.integers(-(2**53), 2**53)
    subscore = st.fixed_dictionaries(
        {},
        optional={
            "id": st.none() | TEXT,
            "title": st.none() | TEXT,
            "num_questions": st.none() | LONG,
            "num_attempted": st.none() | LONG,
            "score": double,
            "max_score": double,
            "attempted_max_score": double,
            "items": st.none() | st.lists(TEXT | st.sampled_from(["i-1", "i-2"]), max_size=4),
            "extra_fields_json": EXTRA,
        },
    )
    response = st.fixed_dictionaries(
        {},
        optional={
            "response_id": st.none() | TEXT,
            "score": double,
            "max_score": double,
            "attempted": st.none() | st.booleans(),
            "dt_score_updated": st.none() | millis,
            "extra_fields_json": EXTRA,
        },
    )
    source = st.fixed_dictionaries(
        {
            "connector_name": TEXT,
            "api_version": st.just("v2025.2.LTS"),
            "connector_version": TEXT,
            "lane": st.just("tail") | st.builds("slice:{}".format, TEXT),
            "backfill": st.booleans(),
        }
    )
    return st.fixed_dictionaries(
        {
            "event_id": st.uuids() | st.uuids().map(str),
            "change": st.sampled_from(["created", "status_changed", "score_changed", "unknown"]),
            "session_id": TEXT,
            "user_id": TEXT,
            "activity_id": TEXT,
            "status": TEXT,
            "observed_at": millis,
            "source": source,
        },
        optional={
            "previous_status": st.none() | TEXT,
            "score": double,
            "max_score": double,
            "previous_score": double,
            "previous_max_score": double,
            "subscores": st.none() | st.lists(subscore, max_size=3),
            "responses": st.none() | st.lists(response, max_size=3),
            "dt_started": st.none() | millis,
            "dt_completed": st.none() | millis,
            "dt_saved": st.none() | millis,
            "dt_updated": st.none() | millis,
            "extra_fields_json": EXTRA,
        },
    )


EVENTS = events(MILLIS)
TIMES = ("dt_started", "dt_completed", "dt_saved", "dt_updated", "observed_at")


def fastavro_body(event: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    schemaless_writer(buffer, parse_schema(value_schema()), event)
    return buffer.getvalue()


def registry_encoder() -> RegistryEncoder:
    encoder = RegistryEncoder(FakeRegistry(), "learnosity.sessions.scores")
    encoder.register()
    return encoder


SINGLE = SingleObjectEncoder()
REGISTRY = registry_encoder()
BODY = BodyEncoder()


def test_v1_is_written_inline_whole() -> None:
    """No part of v1 needs the fallback: the fast path covers the whole schema."""
    compile_writer(value_schema())  # would raise UnsupportedSchemaError otherwise


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(EVENTS)
def test_every_v1_event_is_written_as_fastavro_writes_it(event: dict[str, Any]) -> None:
    body = fastavro_body(event)
    assert SINGLE.encode(event) == SINGLE.header + body
    assert REGISTRY.encode(event) == b"\x00" + (REGISTRY.schema_id or 0).to_bytes(4, "big") + body
    assert compile_writer(value_schema(), fastavro_fallback(value_schema()))(event) == body
    fields = {name: value for name, value in event.items() if name not in DECIDED_FIELDS}
    decided = [event.get(name) for name in DECIDED_FIELDS]
    assert BODY.assemble(SINGLE.header, BODY.encode(fields), *decided) == SINGLE.header + body


@settings(max_examples=200, deadline=None)
@given(events(READABLE, nan=False))  # NaN is never equal to itself
def test_v1_events_decode_typed(event: dict[str, Any]) -> None:
    decoded = EventDecoder().decode(SINGLE.encode(event))
    assert decoded == schemaless_reader(io.BytesIO(fastavro_body(event)), value_schema(), None)
    assert decoded["event_id"] == uuid.UUID(str(event["event_id"]))
    for name in TIMES:
        value, read = event.get(name), decoded[name]
        if value is None:
            assert read is None
            continue
        assert isinstance(read, datetime) and read.tzinfo is not None
        if isinstance(value, int):
            assert read == EPOCH + timedelta(milliseconds=value)
        elif value.tzinfo is not None:  # an aware time keeps its instant, to the millisecond
            assert read == value.replace(microsecond=value.microsecond // 1000 * 1000)
    for response, read in zip(
        event.get("responses") or [], decoded["responses"] or [], strict=True
    ):
        moment = response.get("dt_score_updated")
        assert (moment is None) is (read["dt_score_updated"] is None)


# --- API times that do not parse: dead letters, never a crash ----------------------------
GOOD_TIMES = (
    st.datetimes(timezones=st.none() | ZONES).map(lambda d: d.isoformat())
    | st.datetimes(timezones=st.just(UTC)).map(
        lambda d: d.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )
    | st.sampled_from(["2025-03-04T05:06:07Z", "2025-03-04T05:06:07.925Z", "2025-03-04"])
)


def _unparsable(text: str) -> bool:
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return True
    return False


BAD_TIMES = st.sampled_from(
    [
        "yesterday",
        "2025-13-01T00:00:00Z",
        "2025-02-30T00:00:00Z",
        "04/03/2025 05:06",
        "2025-03-04T25:00:00Z",
        "2025-03-04T05:06:07Z trailing",
        "1741064767",
        "NaN",
    ]
) | st.text(max_size=12).filter(lambda t: t != "" and _unparsable(t))
TIME_FIELDS = ("dt_started", "dt_completed", "dt_saved", "dt_updated")


@st.composite
def timed_records(draw: Any) -> tuple[dict[str, Any], set[str]]:
    """A valid record whose times are each absent, null, good or bad; and the bad ones."""
    record: dict[str, Any] = {
        "session_id": draw(st.text(min_size=1, max_size=6).filter(str.isprintable)),
        "user_id": "u",
        "activity_id": "a",
        "status": "Completed",
        "score": 1,
        "max_score": 2,
    }
    bad: set[str] = set()
    for name in TIME_FIELDS:
        kind = draw(st.sampled_from(["absent", "null", "good", "good", "bad"]))
        if kind == "null":
            record[name] = None
        elif kind == "good":
            record[name] = draw(GOOD_TIMES)
        elif kind == "bad":
            record[name] = draw(BAD_TIMES)
            bad.add(name)
    if draw(st.booleans()):
        kind = draw(st.sampled_from(["good", "bad"]))
        time = draw(GOOD_TIMES if kind == "good" else BAD_TIMES)
        record["responses"] = [{"response_id": "r", "score": 1, "dt_score_updated": time}]
        if kind == "bad":
            bad.add("dt_score_updated")
    return record, bad


def preparer() -> PagePreparer:
    return PagePreparer(
        include_responses=True,
        encode_body=BodyEncoder().encode,
        source=source_fields(EventSource("t", "v2025.2.LTS", "0")),
        clock=lambda: 1_741_064_767.89,
    )


@settings(max_examples=300, deadline=None)
@given(st.lists(timed_records(), min_size=1, max_size=6))
def test_a_time_that_does_not_parse_makes_the_record_a_dead_letter(
    drawn: list[tuple[dict[str, Any], set[str]]],
) -> None:
    records = [record for record, _ in drawn]
    prepared = preparer()(Page(tuple(records), "next"))  # never raises
    assert prepared.fetched == len(records)
    expected_dead = [(record, bad) for record, bad in drawn if bad]
    assert len(prepared.dead_letters) == len(expected_dead)
    assert len(prepared.records) == len(records) - len(expected_dead)
    for letter, (record, bad) in zip(prepared.dead_letters, expected_dead, strict=True):
        assert letter.reason == "invalid_value"
        assert letter.error_class == "InvalidRecordError"
        named = letter.message.split(":", 1)[0]
        assert named in bad, (
            letter.message,
            bad,
        )
        assert json.loads(letter.value) == record  # the original JSON
        assert letter.key == record["session_id"].encode()


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(TIME_FIELDS),
    st.none() | st.booleans() | st.integers() | st.floats() | st.lists(st.integers()) | TEXT,
)
def test_no_time_value_crashes_preparation(name: str, value: Any) -> None:
    """Whatever the API sends as a time: a record or a dead letter with a known reason."""
    record = {"session_id": "s", "user_id": "u", "activity_id": "a", "status": "Completed"}
    prepared = preparer()(Page(({**record, name: value},), "next"))
    assert len(prepared.records) + len(prepared.dead_letters) == 1
    for letter in prepared.dead_letters:
        assert letter.reason in INVALID_REASONS
    if isinstance(value, str) and value and _unparsable(value):
        assert [letter.reason for letter in prepared.dead_letters] == ["invalid_value"]
    if isinstance(value, float) and not math.isfinite(value):
        assert prepared.dead_letters  # never an event with a made-up time
