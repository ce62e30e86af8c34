"""The schema files: frozen once published, documented, and compatible across versions.

Compatibility is checked by what a consumer does: encode data with one version, decode it
with another through Avro schema resolution (fastavro), for every pair of versions.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import random
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.read import SchemaResolutionError
from fastavro.schema import fingerprint, to_parsing_canonical_form
from fastavro.utils import generate_many

from connector.changes import ChangeDetector, SessionState
from connector.changes.event import change_to_event
from connector.models import EventSource

REPO = Path(__file__).resolve().parents[2]
AVRO_DIR = REPO / "connector" / "avro"
VERSIONED = re.compile(r"^(?P<name>[a-z0-9_]+)\.v(?P<version>\d+)\.avsc$")

#: every published file: (sha256 of the file, CRC-64-AVRO fingerprint as on the wire).
#: A published file never changes; a new version is a new file added here after review.
PUBLISHED = {
    "session_score_changed.v1.avsc": (
        # v1 made final before the first release (issue 13): typed times, uuid, enum
        # default, previous scores, the lane in source
        "f719825eb37b6f84bfd9e8beb6442f23d94c7fa96a1f039c2ebfb9c4bf9070c4",
        "0d26c7bbcb7569d1",
    ),
    "user_id_key.v1.avsc": (
        "e6337aec51825cdf5ea9720503ced1afeda582f841663dd7c00f86519c88e815",
        "c70345637248018f",
    ),
}
#: (writer version, reader version) pairs where old readers may NOT read newer data;
#: empty: full transitive compatibility is promised (avro/README.md)
FORWARD_EXEMPT: set[tuple[int, int]] = set()


def versions(name: str) -> dict[int, dict[str, Any]]:
    found = {}
    for path in AVRO_DIR.glob(f"{name}.v*.avsc"):
        match = VERSIONED.match(path.name)
        assert match, f"{path.name}: not named <schema>.v<N>.avsc"
        found[int(match["version"])] = json.loads(path.read_text(encoding="utf-8"))
    return dict(sorted(found.items()))


def wire_fingerprint(schema: Any) -> str:
    return str(fingerprint(to_parsing_canonical_form(parse_schema(schema)), "CRC-64-AVRO"))


# --- published files are frozen ----------------------------------------------------------
def test_every_schema_file_is_published_and_unchanged() -> None:
    files = {path.name: path for path in AVRO_DIR.glob("*.avsc")}
    assert sorted(files) == sorted(PUBLISHED), "new or removed schema file: update PUBLISHED"
    for name, (sha256, wire) in PUBLISHED.items():
        data = files[name].read_bytes()
        assert hashlib.sha256(data).hexdigest() == sha256, f"{name} was edited after publishing"
        assert wire_fingerprint(json.loads(data)) == wire, name


def test_the_readme_lists_every_value_schema_fingerprint() -> None:
    readme = (AVRO_DIR / "README.md").read_text(encoding="utf-8")
    for version, schema in versions("session_score_changed").items():
        assert f"| `session_score_changed.v{version}` | `{wire_fingerprint(schema)}` |" in readme


def test_versions_are_numbered_from_one_without_gaps() -> None:
    for name in ("session_score_changed", "user_id_key"):
        numbers = list(versions(name))
        assert numbers == list(range(1, len(numbers) + 1)), name


def test_the_root_avro_folder_is_the_packaged_one() -> None:
    root = REPO / "avro"
    assert root.is_symlink()
    assert root.resolve() == AVRO_DIR.resolve()


# --- documentation -------------------------------------------------------------------------
def undocumented(schema: Any, where: str) -> Iterator[str]:
    if isinstance(schema, list):
        for branch in schema:
            yield from undocumented(branch, where)
        return
    if not isinstance(schema, dict):
        return
    kind = schema.get("type")
    if kind in ("record", "enum") and not schema.get("doc"):
        yield f"{where} ({schema.get('name')})"
    if kind == "record":
        for field in schema["fields"]:
            if not str(field.get("doc", "")).strip():
                yield f"{where}.{field['name']}"
            yield from undocumented(field["type"], f"{where}.{field['name']}")
    elif kind == "array":
        yield from undocumented(schema["items"], f"{where}[]")
    elif isinstance(kind, dict | list):
        yield from undocumented(kind, where)


def test_every_field_of_every_version_is_documented() -> None:
    for name in ("session_score_changed", "user_id_key"):
        for version, schema in versions(name).items():
            assert list(undocumented(schema, f"{name}.v{version}")) == []
            assert schema.get("doc"), f"{name}.v{version} has no top-level doc"


def field_names(schema: dict[str, Any]) -> set[str]:
    return {field["name"] for field in schema["fields"]}


def test_the_current_schema_has_what_the_design_asks_for() -> None:
    current = list(versions("session_score_changed").values())[-1]
    assert current["namespace"] + "." + current["name"] == "learnosity.scores.SessionScoreChanged"
    assert {
        "event_id", "change", "session_id", "user_id", "activity_id", "status",
        "previous_status", "score", "max_score", "subscores", "responses", "observed_at",
        "source", "extra_fields_json", "dt_started", "dt_completed", "dt_saved", "dt_updated",
        "previous_score", "previous_max_score",
    } <= field_names(current)  # fmt: skip
    by_name = {field["name"]: field for field in current["fields"]}
    subscore = by_name["subscores"]["type"][1]["items"]
    assert {
        "id", "title", "num_questions", "num_attempted", "score", "max_score",
        "attempted_max_score", "items",
    } <= field_names(subscore)  # fmt: skip
    response = by_name["responses"]["type"][1]["items"]
    assert {"response_id", "score", "max_score", "attempted", "dt_score_updated"} <= field_names(
        response
    )
    change = by_name["change"]["type"]
    assert change["symbols"] == ["created", "status_changed", "score_changed", "unknown"]
    assert change["default"] == "unknown"  # a v1 reader maps a later kind to it
    assert by_name["event_id"]["type"] == {"type": "string", "logicalType": "uuid"}
    millis = {"type": "long", "logicalType": "timestamp-millis"}
    assert by_name["observed_at"]["type"] == millis
    for time in ("dt_started", "dt_completed", "dt_saved", "dt_updated"):  # typed, nullable
        assert by_name[time]["type"] == ["null", millis] and by_name[time]["default"] is None
    assert by_name["dt_updated"]["doc"].lower().count("event time") >= 1
    score_updated = {f["name"]: f for f in response["fields"]}["dt_score_updated"]
    assert score_updated["type"] == ["null", millis]
    for nullable in (
        "previous_status", "score", "max_score", "previous_score", "previous_max_score",
        "responses", "dt_saved",
    ):  # fmt: skip
        assert by_name[nullable]["type"][0] == "null" and by_name[nullable]["default"] is None
    for previous in ("previous_score", "previous_max_score"):
        assert by_name[previous]["type"] == ["null", "double"]
    source = {f["name"]: f for f in by_name["source"]["type"]["fields"]}
    assert {"connector_name", "api_version", "connector_version", "lane", "backfill"} <= set(source)
    assert source["lane"]["type"] == "string" and source["backfill"]["type"] == "boolean"


# --- compatibility ---------------------------------------------------------------------------
@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """fastavro's generator uses the global ``random``: seed it, then put it back."""
    saved = random.getstate()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(saved)


def sample_events() -> list[dict[str, Any]]:
    """Realistic events (all fields filled, and mostly null) next to random ones."""
    full = {
        "session_id": "s1", "user_id": "u1", "activity_id": "a1", "status": "Completed",
        "score": 39, "max_score": 40, "dt_saved": "2025-01-01", "unmodeled": {"x": 1},
        "subscores": [{"id": "1", "title": "t", "num_questions": 2, "num_attempted": 1,
                       "score": 1, "max_score": 2, "attempted_max_score": 1, "items": ["i"]}],
        "responses": [{"response_id": "r", "score": 1, "max_score": 1, "attempted": True}],
    }  # fmt: skip
    sparse = {"session_id": "s2", "user_id": "u2", "activity_id": "a2", "status": "Odd"}
    changes = ChangeDetector(True).detect([full, sparse], SessionState()).changes
    source = EventSource("test", "v2025.2.LTS", "0.0.0")
    now = datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    return [change_to_event(change, now, source) for change in changes]


def random_data(schema: dict[str, Any], count: int = 60) -> list[Any]:
    with seeded(1234):
        return list(generate_many(schema, count))


def read_as(writer: dict[str, Any], reader: dict[str, Any], data: list[Any]) -> list[Any]:
    """Write ``data`` with ``writer``; read it back through resolution into ``reader``."""
    parsed_writer, parsed_reader = parse_schema(writer), parse_schema(reader)
    out = []
    for datum in data:
        buffer = io.BytesIO()
        schemaless_writer(buffer, parsed_writer, datum)
        buffer.seek(0)
        out.append(schemaless_reader(buffer, parsed_writer, parsed_reader))
    return out


def assert_compatible(
    older: dict[str, Any], newer: dict[str, Any], data: list[Any] | None = None
) -> None:
    """New readers read old data (backward) and old readers read new data (forward)."""
    old_data = (data or []) + random_data(older)
    new_data = random_data(newer)
    read_as(older, newer, old_data)
    read_as(newer, older, new_data)


def test_every_past_version_reads_and_is_read_by_every_later_one() -> None:
    all_versions = versions("session_score_changed")
    events = sample_events()
    for old, older in all_versions.items():
        for new, newer in all_versions.items():
            if new < old:
                continue
            read_as(older, newer, events + random_data(older))  # backward: always promised
            if (old, new) not in FORWARD_EXEMPT:
                read_as(newer, older, random_data(newer))


def test_the_current_schema_round_trips_realistic_events() -> None:
    current = list(versions("session_score_changed").values())[-1]
    events = sample_events()
    full, sparse = read_as(current, current, events)
    # times are typed: timestamp-millis longs read back as aware datetimes, the id a UUID
    assert full == {
        **events[0],
        "event_id": uuid.UUID(events[0]["event_id"]),
        "dt_saved": datetime(2025, 1, 1, tzinfo=UTC),
        "observed_at": datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
    }
    assert sparse == {
        **events[1],
        "event_id": uuid.UUID(events[1]["event_id"]),
        "observed_at": datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
    }
    assert events[0]["dt_saved"] == 1_735_689_600_000  # the event carries the millis


# the checker itself must be able to fail: evolve v1 in allowed and forbidden ways
def evolved(mutate: Any) -> dict[str, Any]:
    schema = copy.deepcopy(versions("session_score_changed")[1])
    mutate(schema)
    return schema


def _add_field(field: dict[str, Any]) -> Any:
    return lambda schema: schema["fields"].append(field)


def _retype(name: str, new_type: Any) -> Any:
    def mutate(schema: dict[str, Any]) -> None:
        next(f for f in schema["fields"] if f["name"] == name)["type"] = new_type

    return mutate


def _drop_symbol(schema: dict[str, Any]) -> None:
    """A symbol v1 writes removed, and with it the default that would absorb it."""
    enum = next(f for f in schema["fields"] if f["name"] == "change")["type"]
    enum["symbols"].remove("score_changed")
    del enum["default"]


def _add_symbol(schema: dict[str, Any]) -> None:
    enum = next(f for f in schema["fields"] if f["name"] == "change")["type"]
    enum["symbols"].insert(3, "reopened")


def _rename(schema: dict[str, Any]) -> None:
    next(f for f in schema["fields"] if f["name"] == "user_id")["name"] = "learner_id"


def test_allowed_evolution_passes_the_check() -> None:
    v1 = versions("session_score_changed")[1]
    added = {"name": "attempt", "type": ["null", "long"], "default": None, "doc": "."}
    assert_compatible(v1, evolved(_add_field(added)), sample_events())
    assert_compatible(v1, evolved(_add_symbol), sample_events())


def test_a_v1_reader_maps_a_change_kind_added_later_to_unknown() -> None:
    """The enum's default: a later version may add a kind without breaking v1 readers."""
    v1 = versions("session_score_changed")[1]
    newer = evolved(_add_symbol)
    event = {**sample_events()[0], "change": "reopened"}
    (read,) = read_as(newer, v1, [event])
    assert read["change"] == "unknown"
    (same,) = read_as(newer, newer, [event])
    assert same["change"] == "reopened"


@pytest.mark.parametrize(
    "mutate",
    [
        _add_field({"name": "attempt", "type": "long", "doc": "no default"}),
        _retype("score", ["null", "string"]),
        _drop_symbol,
        _rename,
    ],
    ids=["field-without-default", "type-change", "enum-symbol-removed", "rename"],
)
def test_forbidden_evolution_fails_the_check(mutate: Any) -> None:
    v1 = versions("session_score_changed")[1]
    with pytest.raises(SchemaResolutionError):
        assert_compatible(v1, evolved(mutate), sample_events())
