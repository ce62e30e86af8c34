"""Event encodings: single-object checked by an independent reader, registry path with an
in-process registry, the decoder for both, and the Change → event mapping."""

from __future__ import annotations

import io
import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.schema_registry import RegisteredSchema, Schema, SchemaRegistryError
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import to_parsing_canonical_form
from fastavro.utils import generate_many
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.changes import ChangeDetector, SessionEntry, SessionState
from connector.changes.event import epoch_millis, record_fields
from connector.changes.validate import INVALID_REASONS
from connector.errors import FatalError, InvalidRecordError, RetriableError
from connector.kafka.serde import (
    DECIDED_FIELDS,
    BodyEncoder,
    EventDecodeError,
    EventDecoder,
    RegistryEncoder,
    SchemaIncompatibleError,
    SingleObjectEncoder,
    UnsupportedSchemaError,
    change_to_event,
    compile_writer,
    jsonable,
    schema_versions,
    value_schema,
)
from connector.models import Change, ChangeKind, EventSource, ScoreRecord
from tests.support.fake_registry import FakeRegistry

SOURCE = EventSource("learnosity-scores", "v2025.2.LTS", "0.1.0")
OBSERVED = datetime(2025, 3, 4, 5, 6, 7, 890000, tzinfo=UTC)
RECORD: dict[str, Any] = {
    "user_id": "17c456c0",
    "activity_id": "chemistry_classtest1",
    "session_id": "4d3115f0",
    "score": 39,
    "max_score": 40,
    "status": "Pending Scoring",
    "dt_started": "2025-03-04T05:00:00Z",
    "dt_saved": "2025-03-04T05:06:00Z",
    "a_field_added_later": {"nested": [1, 2]},
    "subscores": [
        {
            "id": "subscore-1",
            "title": "biochem",
            "num_questions": 20,
            "num_attempted": 20.0,
            "score": 19,
            "max_score": 20,
            "attempted_max_score": 20,
            "items": ["293486384", "293481468"],
            "weight": 2,
        }
    ],
    "responses": [
        {"response_id": "r1", "score": 0.5, "max_score": 1, "attempted": True, "rubric": "x"}
    ],
}


def change_of(record: dict[str, Any]) -> Change[ScoreRecord]:
    (change,) = ChangeDetector(include_responses=True).detect([record], SessionState()).changes
    return change


def event_of(record: dict[str, Any] = RECORD) -> dict[str, Any]:
    return change_to_event(change_of(record), OBSERVED, SOURCE)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: the event's timestamp-millis fields (the responses' own is typed too)
TIME_FIELDS = ("dt_started", "dt_completed", "dt_saved", "dt_updated", "observed_at")


def typed(event: dict[str, Any]) -> dict[str, Any]:
    """``event`` as an Avro reader returns it: times as aware datetimes, the id a UUID."""

    def moment(ms: int | None) -> datetime | None:
        return None if ms is None else _EPOCH + timedelta(milliseconds=ms)

    out = {**event, "event_id": uuid.UUID(event["event_id"])}
    for name in TIME_FIELDS:
        out[name] = moment(event[name])
    if event["responses"] is not None:
        out["responses"] = [
            {**r, "dt_score_updated": moment(r["dt_score_updated"])} for r in event["responses"]
        ]
    return out


# --- the mapping -------------------------------------------------------------------------------
def test_the_event_carries_every_modeled_field_and_keeps_the_rest() -> None:
    change = change_of(RECORD)
    event = change_to_event(change, OBSERVED, SOURCE)
    assert event == {
        "event_id": change.event_id,
        "change": "created",
        "session_id": "4d3115f0",
        "user_id": "17c456c0",
        "activity_id": "chemistry_classtest1",
        "status": "Pending Scoring",
        "previous_status": None,
        "score": 39.0,
        "max_score": 40.0,
        "previous_score": None,
        "previous_max_score": None,
        "subscores": [
            {
                "id": "subscore-1",
                "title": "biochem",
                "num_questions": 20,
                "num_attempted": 20,
                "score": 19.0,
                "max_score": 20.0,
                "attempted_max_score": 20.0,
                "items": ["293486384", "293481468"],
                "extra_fields_json": '{"weight":2}',
            }
        ],
        "responses": [
            {
                "response_id": "r1",
                "score": 0.5,
                "max_score": 1.0,
                "attempted": True,
                "dt_score_updated": None,
                "extra_fields_json": '{"rubric":"x"}',
            }
        ],
        "dt_started": 1741064400000,  # 2025-03-04T05:00:00Z
        "dt_completed": None,
        "dt_saved": 1741064760000,  # 2025-03-04T05:06:00Z
        "dt_updated": None,
        "observed_at": 1741064767890,
        "source": {
            "connector_name": "learnosity-scores",
            "api_version": "v2025.2.LTS",
            "connector_version": "0.1.0",
            "lane": "tail",
            "backfill": False,
        },
        "extra_fields_json": '{"a_field_added_later":{"nested":[1,2]}}',
    }
    assert type(event["subscores"][0]["num_attempted"]) is int


def test_a_sparse_record_maps_to_nulls() -> None:
    sparse = {"session_id": "s", "user_id": "u", "activity_id": "a", "status": "Incomplete"}
    event = event_of(sparse)
    for name in ("score", "max_score", "subscores", "responses", "dt_saved", "extra_fields_json"):
        assert event[name] is None, name


def test_a_status_change_names_the_previous_status() -> None:
    state = SessionState()
    detector = ChangeDetector()
    state.apply(detector.detect([{**RECORD, "status": "Incomplete"}], state).updates)
    (change,) = detector.detect([RECORD], state).changes
    event = change_to_event(change, OBSERVED, SOURCE)
    assert (event["change"], event["previous_status"]) == ("status_changed", "Incomplete")
    assert (event["previous_score"], event["previous_max_score"]) == (39.0, 40.0)


# --- single-object encoding, checked independently ---------------------------------------------
def crc64_avro(data: bytes) -> int:
    """The Rabin fingerprint exactly as the Avro specification writes it out."""
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    for byte in data:
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp


def test_the_reference_crc_matches_the_avro_spec_vector() -> None:
    # from the Avro specification's test data: fingerprint64 of the schema "null"
    assert crc64_avro(b'"null"') == 7195948357588979594


def test_single_object_header_is_c301_and_the_little_endian_fingerprint() -> None:
    canonical = to_parsing_canonical_form(parse_schema(value_schema())).encode()
    expected = b"\xc3\x01" + crc64_avro(canonical).to_bytes(8, "little")
    data = SingleObjectEncoder().encode(event_of())
    assert data[:10] == expected


def test_single_object_body_reads_back_with_the_schema_file() -> None:
    event = event_of()
    data = SingleObjectEncoder().encode(event)
    schema_file = Path(__file__).resolve().parents[2] / "avro" / "session_score_changed.v1.avsc"
    schema = parse_schema(json.loads(schema_file.read_text(encoding="utf-8")))
    decoded = schemaless_reader(io.BytesIO(data[10:]), schema, None)
    assert isinstance(decoded, dict)
    assert decoded == typed(event)
    assert decoded["observed_at"] == OBSERVED
    assert decoded["dt_started"] == datetime(2025, 3, 4, 5, 0, tzinfo=UTC)


def test_the_decoder_reads_single_object_events() -> None:
    event = event_of()
    decoded = EventDecoder().decode(SingleObjectEncoder().encode(event))
    assert decoded == typed(event)
    as_json = json.loads(json.dumps(jsonable(decoded)))
    assert as_json["observed_at"] == "2025-03-04T05:06:07.890+00:00"
    assert as_json["dt_started"] == "2025-03-04T05:00:00.000+00:00"
    assert as_json["dt_completed"] is None
    assert as_json["event_id"] == event["event_id"]
    assert as_json["subscores"] == event["subscores"]


def test_the_decoder_knows_every_shipped_version() -> None:
    decoder = EventDecoder()
    for schema in schema_versions().values():
        data = SingleObjectEncoder(schema).encode(event_of())
        assert decoder.decode(data)["session_id"] == RECORD["session_id"]


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"", "starts with nothing"),
        (b'{"json": 1}', "neither"),
        (b"\xc3\x01" + bytes(8) + b"\x00", "unknown schema fingerprint"),
        (b"\x00\x00\x00\x00\x01\x02", "no registry is configured"),
    ],
)
def test_the_decoder_refuses_what_is_not_an_event(data: bytes, says: str) -> None:
    with pytest.raises(EventDecodeError, match=says):
        EventDecoder().decode(data)


def test_a_truncated_single_object_event_is_refused() -> None:
    data = SingleObjectEncoder().encode(event_of())
    with pytest.raises(EventDecodeError, match="unreadable"):
        EventDecoder().decode(data[:40])


def test_an_event_the_schema_cannot_hold_is_not_serializable() -> None:
    event = {**event_of(), "score": "thirty-nine"}
    with pytest.raises(InvalidRecordError) as caught:
        SingleObjectEncoder().encode(event)
    assert caught.value.reason == "not_serializable"


# --- validated records always encode -----------------------------------------------------------
NUMBER = st.none() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False, allow_infinity=False)
TEXT = st.none() | st.text(max_size=10)
#: the API's times: ISO 8601 of any precision and offset, or text that is not a time
TIME = (
    st.none()
    | st.datetimes(timezones=st.none() | st.just(UTC)).map(lambda d: d.isoformat())
    | st.datetimes(timezones=st.just(UTC)).map(
        lambda d: d.isoformat(timespec="seconds").replace("+00:00", "Z")
    )
    | st.text(max_size=10)
)
ANY = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5) | st.just([1])


def record_strategy(noise: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Records with well-typed fields, each field possibly replaced by ``noise``."""
    subscore = st.fixed_dictionaries(
        {},
        optional={
            "id": TEXT | noise,
            "title": TEXT,
            "num_questions": st.none() | st.integers(0, 2**63 - 1) | noise,
            "num_attempted": st.none() | st.integers(0, 100) | st.just(3.0),
            "score": NUMBER,
            "max_score": NUMBER | noise,
            "attempted_max_score": NUMBER,
            "items": st.none() | st.lists(st.text(max_size=5), max_size=3) | noise,
            "unknown": ANY,
        },
    )
    response = st.fixed_dictionaries(
        {},
        optional={
            "response_id": TEXT,
            "score": NUMBER | noise,
            "max_score": NUMBER,
            "attempted": st.none() | st.booleans() | noise,
            "dt_score_updated": TIME,
            "unknown": ANY,
        },
    )
    return st.fixed_dictionaries(
        {
            "session_id": st.text(min_size=1, max_size=8),
            "user_id": st.text(min_size=1, max_size=8),
            "activity_id": st.text(min_size=1, max_size=8) | noise,
            "status": st.text(min_size=1, max_size=8) | noise,
        },
        optional={
            "score": NUMBER | noise,
            "max_score": NUMBER,
            "subscores": st.none() | st.lists(subscore, max_size=3) | noise,
            "responses": st.none() | st.lists(response, max_size=3) | noise,
            "dt_started": TIME,
            "dt_saved": TIME | noise,
            "dt_updated": TIME,
            "unknown": ANY,
        },
    )


RECORDS = record_strategy(st.nothing()) | record_strategy(ANY)
TIMED = ("dt_started", "dt_completed", "dt_saved", "dt_updated", "dt_score_updated")


def events_of(record: dict[str, Any]) -> list[tuple[Change[ScoreRecord], dict[str, Any]]]:
    """The changes of ``record`` with their events; a record whose time does not parse
    has none (it is a dead letter: ``invalid_value`` naming the field)."""
    out = []
    for change in ChangeDetector(include_responses=True).detect([record], SessionState()).changes:
        try:
            out.append((change, change_to_event(change, OBSERVED, SOURCE)))
        except InvalidRecordError as exc:
            assert exc.reason == "invalid_value" and str(exc).startswith(TIMED), exc
    return out


@settings(max_examples=300)
@given(RECORDS)
def test_every_record_that_validates_serializes(record: dict[str, Any]) -> None:
    result = ChangeDetector(include_responses=True).detect([record], SessionState())
    for _, error in result.invalid:
        assert error.reason in INVALID_REASONS
    encoder, decoder = SingleObjectEncoder(), EventDecoder()
    for change, event in events_of(record):
        assert decoder.decode(encoder.encode(event))["event_id"] == uuid.UUID(change.event_id)


# --- the registry path, with a registry in this process (tests/support/fake_registry.py) ---------
def mock_registry() -> FakeRegistry:
    return FakeRegistry()


def test_registry_encoding_is_confluent_wire_format_and_decodes() -> None:
    client = mock_registry()
    encoder = RegistryEncoder(client, "learnosity.sessions.scores")
    encoder.register()
    assert encoder.subject == "learnosity.sessions.scores-value"
    assert encoder.schema_id is not None
    event = event_of()
    data = encoder.encode(event)
    assert data[0] == 0 and int.from_bytes(data[1:5], "big") == encoder.schema_id
    decoded = schemaless_reader(io.BytesIO(data[5:]), parse_schema(value_schema()), None)
    assert decoded == typed(event)
    decoder = EventDecoder(client=client, topic="learnosity.sessions.scores")
    assert decoder.decode(data) == decoded
    assert decoder.decode(SingleObjectEncoder().encode(event)) == decoded  # both, one decoder


def test_registry_encoder_dead_letters_what_the_schema_cannot_hold() -> None:
    encoder = RegistryEncoder(mock_registry(), "t")
    encoder.register()
    with pytest.raises(InvalidRecordError) as caught:
        encoder.encode({**event_of(), "change": "vanished"})
    assert caught.value.reason == "not_serializable"


class RefusingRegistry(FakeRegistry):
    """A registry (the subject new) whose register call fails as given."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def register_schema(self, subject: str, schema: Any, normalize_schemas: bool = False) -> int:
        raise self.error


@pytest.mark.parametrize(
    ("error", "expected", "says"),
    [
        (SchemaRegistryError(409, 409, "incompatible"), SchemaIncompatibleError, "incompatible"),
        (SchemaRegistryError(401, 401, "unauthorized"), SchemaIncompatibleError, "USERNAME"),
        (SchemaRegistryError(422, 42201, "invalid schema"), SchemaIncompatibleError, "refused"),
        (SchemaRegistryError(503, 50003, "unavailable"), RetriableError, "503"),
        (ConnectionError("refused"), RetriableError, "unreachable"),
    ],
)
def test_registration_failures_are_classified_with_a_clear_message(
    error: Exception, expected: type[Exception], says: str
) -> None:
    encoder = RegistryEncoder(mock_registry(), "scores")
    encoder._client = RefusingRegistry(error)
    with pytest.raises(expected, match=says) as caught:
        encoder.register()
    assert "scores-value" in str(caught.value)


def test_change_kinds_match_the_schema_enum() -> None:
    by_name = {field["name"]: field for field in value_schema()["fields"]}
    enum = by_name["change"]["type"]
    # every kind the connector writes, then the default a v1 reader maps later kinds to
    assert enum["symbols"] == [*(kind.value for kind in ChangeKind), "unknown"]
    assert enum["default"] == "unknown"
    assert "unknown" not in {kind.value for kind in ChangeKind}  # never written


class AnsweringRegistry:
    """A registry that does not hold our schema and answers compatibility as told; its
    subject exists unless the answer is a 404."""

    def __init__(self, compatible: bool | Exception) -> None:
        self.compatible = compatible
        self.registered = False

    def lookup_schema(self, subject: str, schema: Any, *args: Any, **kwargs: Any) -> Any:
        raise SchemaRegistryError(404, 40403, "Schema not found")

    def test_compatibility_all_versions(self, subject: str, schema: Any, **kwargs: Any) -> bool:
        if isinstance(self.compatible, Exception):
            raise self.compatible
        return self.compatible

    def get_latest_version(self, subject: str, fmt: str | None = None) -> RegisteredSchema:
        if isinstance(self.compatible, SchemaRegistryError):
            raise self.compatible
        schema = Schema(json.dumps(value_schema()), "AVRO")
        return RegisteredSchema(schema_id=7, guid=None, schema=schema, subject=subject, version=1)

    def get_versions(self, subject: str) -> list[int]:
        return [1]

    def get_subjects(self) -> list[str]:
        return ["scores-value"]  # a real registry answers

    def get_version(self, subject: str, version: int) -> RegisteredSchema:
        return self.get_latest_version(subject)  # our own schema: compatible at any level

    def register_schema(self, *args: Any, **kwargs: Any) -> int:
        self.registered = True
        return 1

    def set_compatibility(self, *args: Any, **kwargs: Any) -> str:
        self.registered = True  # a change too: check must not make it
        return "BACKWARD"


def test_a_server_that_is_not_a_registry_fails_the_check() -> None:
    """Any web server answers 404 to a schema lookup; only a registry lists subjects."""
    fake = AnsweringRegistry(SchemaRegistryError(404, 40401, "Subject not found"))
    fake.get_subjects = lambda: (_ for _ in ()).throw(  # type: ignore[method-assign]
        SchemaRegistryError(404, -1, "Not Found")
    )
    encoder = RegistryEncoder(mock_registry(), "scores", url="http://127.0.0.1:9/nothing")
    encoder._client = fake  # type: ignore[assignment]
    with pytest.raises(SchemaIncompatibleError, match="does not answer as a schema registry"):
        encoder.check()


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        (True, "compatible; registered at start"),
        (SchemaRegistryError(404, 40401, "Subject not found"), "is new"),
    ],
)
def test_check_says_what_start_up_will_do(answer: bool | Exception, says: str) -> None:
    encoder = RegistryEncoder(mock_registry(), "scores")
    fake = AnsweringRegistry(answer)
    encoder._client = fake  # type: ignore[assignment]
    assert says in encoder.check()
    assert not fake.registered  # check is read-only


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (False, SchemaIncompatibleError),
        (SchemaRegistryError(403, 40301, "forbidden"), SchemaIncompatibleError),
        (SchemaRegistryError(500, 50001, "boom"), RetriableError),
        (OSError("no route"), RetriableError),
    ],
)
def test_check_fails_clearly(answer: bool | Exception, expected: type[Exception]) -> None:
    encoder = RegistryEncoder(mock_registry(), "scores")
    encoder._client = AnsweringRegistry(answer)  # type: ignore[assignment]
    with pytest.raises(expected, match="scores-value"):
        encoder.check()


def test_check_finds_an_already_registered_schema() -> None:
    encoder = RegistryEncoder(mock_registry(), "scores")
    encoder.register()
    assert f"holds this schema (id {encoder.schema_id})" in encoder.check()
    assert "single-object" in SingleObjectEncoder().check()


def test_naming_the_array_branch_changes_no_byte() -> None:
    event = event_of()
    plain = io.BytesIO()
    schemaless_writer(plain, parse_schema(value_schema()), event)
    assert SingleObjectEncoder().encode(event)[10:] == plain.getvalue()


def test_a_non_list_where_an_array_belongs_still_fails() -> None:
    for value in ("abc", {"a": 1}, ("array", "abc")):
        with pytest.raises(InvalidRecordError):
            SingleObjectEncoder().encode({**event_of(), "subscores": value})


# --- the compiled writer: byte for byte what fastavro writes ------------------------------------
def fastavro_bytes(schema: dict[str, Any], datum: Any) -> bytes:
    buffer = io.BytesIO()
    schemaless_writer(buffer, parse_schema(schema), datum)
    return buffer.getvalue()


@settings(max_examples=200)
@given(RECORDS)
def test_the_compiled_writer_matches_fastavro_on_events(record: dict[str, Any]) -> None:
    compiled = compile_writer(value_schema())  # v1 needs no fallback: all of it inline
    for _, event in events_of(record):
        assert compiled(event) == fastavro_bytes(value_schema(), event)


def test_the_compiled_writer_matches_fastavro_on_random_data() -> None:
    saved = random.getstate()
    random.seed(99)  # fastavro's generator draws from the global random
    try:
        data = list(generate_many(value_schema(), 300))
    finally:
        random.setstate(saved)
    compiled = compile_writer(value_schema())
    for datum in data:
        assert compiled(datum) == fastavro_bytes(value_schema(), datum)


@pytest.mark.parametrize(
    "change",
    [
        {"score": "39"},
        {"score": [1]},
        {"previous_score": "39"},
        {"previous_max_score": True},
        {"change": "vanished"},
        {"event_id": None},
        {"event_id": 5},
        {"dt_updated": "2025-03-04T05:00:00Z"},  # a time must be parsed before encoding
        {"dt_started": 1.5},
        {"observed_at": None},
        {"session_id": None},
        {"session_id": 5},
        {"observed_at": 2**63},
        {"observed_at": 1.5},
        {"subscores": [{"num_questions": 1.5}]},
        {"subscores": [{"num_questions": True}]},
        {"subscores": [{"items": [1]}]},
        {"subscores": ["x"]},
        {"subscores": "abc"},
        {"responses": [{"attempted": "yes"}]},
        {"responses": [{"dt_score_updated": "yesterday"}]},
        {"source": {"connector_name": "x"}},
        {"source": {**event_of()["source"], "backfill": "no"}},
    ],
)
def test_the_compiled_writer_refuses_wrong_values(change: dict[str, Any]) -> None:
    with pytest.raises(InvalidRecordError) as caught:
        SingleObjectEncoder().encode({**event_of(), **change})
    assert caught.value.reason == "not_serializable"


def test_a_missing_required_field_is_refused_and_a_missing_nullable_one_is_null() -> None:
    event = event_of()
    del event["dt_saved"]
    decoded = EventDecoder().decode(SingleObjectEncoder().encode(event))
    assert decoded["dt_saved"] is None
    del event["status"]
    with pytest.raises(InvalidRecordError):
        SingleObjectEncoder().encode(event)


def test_schemas_the_compiler_does_not_know_fall_back_to_fastavro() -> None:
    schema = {
        "type": "record",
        "name": "Other",
        "fields": [{"name": "tags", "type": {"type": "map", "values": "string"}}],
    }
    with pytest.raises(UnsupportedSchemaError):
        compile_writer(schema)
    data = SingleObjectEncoder(schema).encode({"tags": {"a": "b"}})
    assert data[10:] == fastavro_bytes(schema, {"tags": {"a": "b"}})


def test_observed_at_is_exact_to_the_millisecond() -> None:
    # a moment where timestamp() * 1000 in floats gives ...260
    moment = datetime(1978, 8, 4, 1, 22, 25, 261000, tzinfo=UTC)
    assert change_to_event(change_of(RECORD), moment, SOURCE)["observed_at"] == 271041745261


# --- the body encoded in two steps (fetch side, then runner) ------------------------------------
def two_step_bytes(change: Change[ScoreRecord], header: bytes) -> bytes:
    """What the runner publishes: the body encoded ahead, the decided fields filled in."""
    body = BodyEncoder()
    fields = record_fields(change.record, epoch_millis(OBSERVED), SOURCE)
    segments = body.encode(fields)
    assert len(segments) == len(DECIDED_FIELDS) + 1
    return body.assemble(
        header,
        segments,
        change.event_id,
        change.kind,  # a ChangeKind is its symbol, as the runner passes it
        change.previous_status,
        change.previous_score,
        change.previous_max_score,
    )


@settings(max_examples=200)
@given(RECORDS)
def test_the_two_step_body_is_byte_for_byte_fastavros_whole_event(record: dict[str, Any]) -> None:
    encoder = SingleObjectEncoder()
    for change, event in events_of(record):
        expected = encoder.header + fastavro_bytes(value_schema(), event)
        assert two_step_bytes(change, encoder.header) == expected


def test_the_two_step_body_carries_a_previous_status_and_scores() -> None:
    state = SessionState()
    first = change_of(RECORD)
    previous = SessionEntry(first.fingerprint ^ 1, "Incomplete", -1, 12.5, 40.0)
    state.apply({first.session_id: previous})
    (change,) = ChangeDetector(include_responses=True).detect([RECORD], state).changes
    assert (change.previous_status, change.previous_score, change.previous_max_score) == (
        "Incomplete",
        12.5,
        40.0,
    )
    decoded = EventDecoder().decode(two_step_bytes(change, SingleObjectEncoder().header))
    assert decoded == typed(change_to_event(change, OBSERVED, SOURCE))
    assert (decoded["previous_score"], decoded["previous_max_score"]) == (12.5, 40.0)


def test_the_registry_header_frames_the_same_body() -> None:
    client = mock_registry()
    encoder = RegistryEncoder(client, "learnosity.sessions.scores")
    encoder.register()
    change = change_of(RECORD)
    event = change_to_event(change, OBSERVED, SOURCE)
    assert two_step_bytes(change, encoder.header) == encoder.encode(event)


def test_the_registry_header_is_unknown_before_registration() -> None:
    with pytest.raises(FatalError, match="before register"):
        _ = RegistryEncoder(mock_registry(), "t").header


def test_a_body_the_schema_cannot_hold_is_not_serializable() -> None:
    fields = record_fields(change_of(RECORD).record, 0, SOURCE)
    with pytest.raises(InvalidRecordError) as caught:
        BodyEncoder().encode({**fields, "score": "39"})
    assert caught.value.reason == "not_serializable"
    segments = BodyEncoder().encode(fields)
    event_id = str(uuid.uuid4())
    assert BodyEncoder().assemble(b"", segments, event_id, "created", None, None, None)
    for decided in (
        (event_id, "vanished", None, None, None),
        (None, "created", None, None, None),
        (event_id, "created", 5, None, None),
        (event_id, "created", None, "high", None),
        (event_id, "created", None, None),  # one missing
    ):
        with pytest.raises(InvalidRecordError) as caught:
            BodyEncoder().assemble(b"", segments, *decided)
        assert caught.value.reason == "not_serializable"


def test_a_schema_whose_decided_fields_moved_is_refused() -> None:
    schema = value_schema()
    fields = [f for f in schema["fields"] if f["name"] != "change"]
    with pytest.raises(UnsupportedSchemaError):
        BodyEncoder({**schema, "fields": [*fields, schema["fields"][1]]})
