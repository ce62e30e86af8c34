"""The generated Avro writer (``kafka.avro_writer``) is byte for byte fastavro's.

Random record schemas mix what the generated code writes inline (primitives, records,
enums with and without defaults, arrays, ``["null", T]`` unions, ``timestamp-millis``,
``uuid``) with what it hands to its fallback (``kafka.serde.fastavro_fallback``): maps,
``bytes``, ``fixed``, ``float``, decimals, dates, ``timestamp-micros`` and other logical
types, wide unions, and named types defined inside a fallback part or referenced from one,
across namespaces that reuse short names. Random data for each is written three ways:
fastavro's ``schemaless_writer`` (the ground truth), ``compile_writer``, and
``compile_split`` + ``assemble`` around random "decided" fields; all three must agree. Without
a fallback, any schema with a fallback shape is refused at compile time, as before.
"""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_writer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.kafka.avro_writer import (
    UnsupportedSchemaError,
    compile_split,
    compile_writer,
)
from connector.kafka.serde import fastavro_fallback

Schema = Any
Draw = Callable[[st.SearchStrategy[Any]], Any]

LONG = st.integers(-(2**63), 2**63 - 1)
INT = st.integers(-(2**31), 2**31 - 1)
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=8)
ZONES = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=45)), timezone(timedelta(hours=-11))]
)
AWARE = st.datetimes(timezones=ZONES)
#: naive times are written as local time (fastavro's mktime): years mktime handles
NAIVE = st.datetimes(min_value=datetime(1902, 1, 1), max_value=datetime(2200, 1, 1))

INLINE_PRIMITIVES = ("null", "boolean", "int", "long", "double", "string")
FALLBACK_PRIMITIVES = ("bytes", "float")
MILLIS = {"type": "long", "logicalType": "timestamp-millis"}
UUID = {"type": "string", "logicalType": "uuid"}
FALLBACK_LOGICAL = (
    {"type": "int", "logicalType": "date"},
    {"type": "long", "logicalType": "timestamp-micros"},
    {"type": "int", "logicalType": "time-millis"},
    {"type": "long", "logicalType": "time-micros"},
    {"type": "long", "logicalType": "local-timestamp-millis"},
)
#: short names reused across namespaces (a reference "Item" means the enclosing one's)
SHORT_NAMES = ("Item", "Kind", "Node", "Blob")
NAMESPACES = (None, None, "", "a", "b.c")  # None: no "namespace" key (inherited)
#: top-level field names: some are names the generated code uses for itself
FIELD_NAMES = ("fld", "fld", "fld", "buf", "b", "datum", "type", "class", "V", "f1", "E1")


@dataclass
class Names:
    """The named types defined so far (by full name), in document order."""

    defined: dict[str, tuple[Schema, str]] = field(default_factory=dict)
    #: every full name taken (a record's is taken before its fields are drawn)
    taken: set[str] = field(default_factory=set)
    #: a shape the generated code does not write inline was drawn
    fallback: bool = False

    def full(self, name: str, namespace: str) -> str:
        return name if "." in name or not namespace else f"{namespace}.{name}"

    def new_name(self, draw: Draw, namespace: str) -> tuple[dict[str, Any], str, str]:
        """A name (and maybe a namespace) not defined yet: the keys to put in the
        definition, the full name and the namespace of its children."""
        for attempt in range(100):
            short = draw(st.sampled_from(SHORT_NAMES))
            space = draw(st.sampled_from(NAMESPACES))
            keys: dict[str, Any] = {"name": short if attempt < 50 else f"{short}{attempt}"}
            own = namespace if space is None else space
            if space is not None:
                keys["namespace"] = space
            full = self.full(keys["name"], own)
            if full not in self.taken and full not in INLINE_PRIMITIVES:
                self.taken.add(full)
                return keys, full, full.rpartition(".")[0]
        raise AssertionError("no free name")

    def references(self, namespace: str) -> list[str]:
        """How the defined types may be referred to from ``namespace`` (Avro's rules: a
        name without a dot is relative to the enclosing namespace)."""
        out = []
        for full in self.defined:
            space = full.rpartition(".")[0]
            if "." in full:
                out.append(full)
                if space == namespace:
                    out.append(full.rpartition(".")[2])
            elif not namespace:  # the null namespace: reachable only from there
                out.append(full)
        return out

    def resolve(self, name: str, namespace: str) -> tuple[Schema, str]:
        return self.defined[self.full(name, namespace)]


# --- schemas ---------------------------------------------------------------------------------
def draw_type(
    draw: Draw, names: Names, namespace: str, depth: int, in_union: bool = False
) -> Schema:
    """A type; ``in_union``: a branch of ``["null", T]`` (neither null nor a union)."""
    kinds = ["primitive", "primitive", "millis", "uuid", "fallback_primitive", "logical"]
    kinds += ["decimal"]
    if names.references(namespace):
        kinds += ["reference", "reference"]
    if depth > 0:
        kinds += ["record", "record", "enum", "fixed", "array", "array", "map"]
        if not in_union:
            kinds += ["nullable", "nullable", "nullable", "wide_union"]
    kind = draw(st.sampled_from(kinds))
    if kind == "primitive":
        return draw(st.sampled_from(INLINE_PRIMITIVES[1:] if in_union else INLINE_PRIMITIVES))
    if kind == "millis":
        return dict(MILLIS)
    if kind == "uuid":
        return dict(UUID)
    if kind == "reference":
        return draw(st.sampled_from(names.references(namespace)))
    if kind == "array":
        return {"type": "array", "items": draw_type(draw, names, namespace, depth - 1)}
    if kind == "record":
        return draw_record(draw, names, namespace, depth - 1)
    if kind == "enum":
        keys, full, _ = names.new_name(draw, namespace)
        symbols = draw(st.lists(st.sampled_from("ABCDEFGH"), min_size=1, max_size=4, unique=True))
        enum = {"type": "enum", **keys, "symbols": symbols}
        if draw(st.booleans()):
            enum["default"] = draw(st.sampled_from(symbols))
        names.defined[full] = (enum, namespace)
        return enum
    if kind == "nullable":
        return ["null", draw_type(draw, names, namespace, depth - 1, in_union=True)]
    names.fallback = True  # everything below is the fallback's
    if kind == "fallback_primitive":
        return draw(st.sampled_from(FALLBACK_PRIMITIVES))
    if kind == "logical":
        return dict(draw(st.sampled_from(FALLBACK_LOGICAL)))
    if kind == "decimal":
        precision = draw(st.integers(1, 18))
        decimal = {"logicalType": "decimal", "precision": precision}
        decimal["scale"] = draw(st.integers(0, precision))
        if draw(st.booleans()):
            return {"type": "bytes", **decimal}
        keys, full, _ = names.new_name(draw, namespace)
        fixed = {"type": "fixed", **keys, "size": 8, **decimal}
        names.defined[full] = (fixed, namespace)
        return fixed
    if kind == "fixed":
        keys, full, _ = names.new_name(draw, namespace)
        fixed = {"type": "fixed", **keys, "size": draw(st.integers(0, 4))}
        names.defined[full] = (fixed, namespace)
        return fixed
    if kind == "map":
        return {"type": "map", "values": draw_type(draw, names, namespace, depth - 1)}
    return draw_wide_union(draw, names, namespace, depth - 1)


def draw_wide_union(draw: Draw, names: Names, namespace: str, depth: int) -> list[Schema]:
    """A union the generated code does not write inline: more than two branches, or two
    without null first; distinct branches, as Avro requires, named ones defined in order."""
    union: list[Schema] = []
    taken: set[str] = set()
    for _ in range(draw(st.integers(2, 6))):
        kind = draw(st.sampled_from(["primitive", "primitive", "record", "enum", "reference"]))
        if kind == "primitive":
            free = [p for p in INLINE_PRIMITIVES + FALLBACK_PRIMITIVES if p not in union]
            branch: Schema = draw(st.sampled_from(free))
        elif kind == "reference":
            free = [r for r in names.references(namespace) if names.full(r, namespace) not in taken]
            if not free:
                continue
            branch = draw(st.sampled_from(free))
            taken.add(names.full(branch, namespace))
        elif kind == "record":
            branch = draw_record(draw, names, namespace, max(depth, 0))
            taken.add(list(names.defined)[-1])
        else:
            keys, full, _ = names.new_name(draw, namespace)
            branch = {"type": "enum", **keys, "symbols": ["X", "Y"]}
            names.defined[full] = (branch, namespace)
            taken.add(full)
        union.append(branch)
    union += [b for b in ("long", "string") if b not in union][: max(0, 2 - len(union))]
    if len(union) == 2 and union[0] == "null":
        union.reverse()  # ["T", "null"]: not the inline shape either
    return union


def draw_record(draw: Draw, names: Names, namespace: str, depth: int) -> dict[str, Any]:
    keys, full, own = names.new_name(draw, namespace)
    fields = []
    for index in range(draw(st.integers(0, 4))):
        fields.append(draw_field(draw, names, own, depth, f"g{index}_x"))
    record = {"type": "record", **keys, "fields": fields}
    names.defined[full] = (record, namespace)  # after its fields: no recursion
    return record


def draw_field(draw: Draw, names: Names, namespace: str, depth: int, name: str) -> dict[str, Any]:
    field_type = draw_type(draw, names, namespace, depth)
    out: dict[str, Any] = {"name": name, "type": field_type}
    if isinstance(field_type, list) and field_type[0] == "null" and draw(st.booleans()):
        out["default"] = None  # such a field may be absent from the datum
    return out


@st.composite
def schemas(draw: Draw) -> tuple[dict[str, Any], Names]:
    names = Names()
    namespace = draw(st.sampled_from(["", "top", "a"]))
    fields = []
    for index in range(draw(st.integers(1, 7))):
        prefix = draw(st.sampled_from(FIELD_NAMES))
        fields.append(draw_field(draw, names, namespace, 2, f"{prefix}_{index}"))
    record = {"type": "record", "name": "Top", "fields": fields}
    if namespace:
        record["namespace"] = namespace
    return record, names


# --- data -------------------------------------------------------------------------------------
def data_for(schema: Schema, names: Names, namespace: str) -> st.SearchStrategy[Any]:
    """Valid data for ``schema`` (any value fastavro writes), every branch of it."""
    if isinstance(schema, str):
        simple = {
            "null": st.none(),
            "boolean": st.booleans(),
            "int": INT,
            "long": LONG,
            "double": st.floats() | st.integers(-(2**53), 2**53),
            "float": st.floats(width=32),
            "string": TEXT,
            "bytes": st.binary(max_size=6),
        }
        if schema in simple:
            return simple[schema]
        found, space = names.resolve(schema, namespace)
        return data_for(found, names, space)
    if isinstance(schema, list):
        return st.one_of([data_for(branch, names, namespace) for branch in schema])
    kind, logical = schema["type"], schema.get("logicalType")
    if logical == "timestamp-millis":
        return LONG | AWARE | NAIVE
    if logical == "uuid":
        return st.uuids() | st.uuids().map(str)
    if logical == "date":
        return st.dates() | INT
    if logical == "timestamp-micros":
        return AWARE.filter(lambda d: d.year > 1) | st.integers(-(2**62), 2**62)
    if logical in ("time-millis", "time-micros"):
        return st.times()
    if logical == "local-timestamp-millis":
        return NAIVE | LONG
    if logical == "decimal":
        precision, scale = schema["precision"], schema.get("scale", 0)
        unscaled = st.integers(-(10**precision) + 1, 10**precision - 1)
        return unscaled.map(lambda i: Decimal(i).scaleb(-scale))
    if kind in INLINE_PRIMITIVES + FALLBACK_PRIMITIVES:
        return data_for(kind, names, namespace)
    if kind == "array":
        items = data_for(schema["items"], names, namespace)
        repeated = st.sampled_from(["x", "item-1", "é"])  # cached strings, reused
        if schema["items"] == "string":
            items = items | repeated
        return st.lists(items, max_size=4)
    if kind == "map":
        return st.dictionaries(TEXT, data_for(schema["values"], names, namespace), max_size=3)
    if kind == "enum":
        return st.sampled_from(schema["symbols"])
    if kind == "fixed":
        return st.binary(min_size=schema["size"], max_size=schema["size"])
    assert kind == "record", schema
    own = names.full(schema["name"], schema.get("namespace", namespace)).rpartition(".")[0]
    required, optional = {}, {}
    for item in schema["fields"]:
        value = data_for(item["type"], names, own)
        if "default" in item:
            optional[item["name"]] = value
        else:
            required[item["name"]] = value
    return st.fixed_dictionaries(required, optional=optional)


def fastavro_bytes(schema: dict[str, Any], datum: Any) -> bytes:
    buffer = io.BytesIO()
    schemaless_writer(buffer, parse_schema(schema), datum)
    return buffer.getvalue()


def fastavro_bytes_or_none(schema: dict[str, Any], datum: Any) -> bytes | None:
    """fastavro's bytes, or None where fastavro itself refuses the datum (its union
    validation raises for a decimal that another decimal branch cannot hold)."""
    try:
        return fastavro_bytes(schema, datum)
    except ValueError:
        return None


def decidable(schema: dict[str, Any]) -> list[str]:
    """Top-level fields that may be decided (their names become parameters)."""
    return [f["name"] for f in schema["fields"] if f["name"].startswith("fld_")]


# --- the properties ---------------------------------------------------------------------------
WRITER_SETTINGS = settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@WRITER_SETTINGS
@given(st.data())
def test_the_generated_writer_is_fastavro_byte_for_byte(data: st.DataObject) -> None:
    schema, names = data.draw(schemas(), label="schema")
    namespace = schema.get("namespace", "")
    writer = compile_writer(schema, fastavro_fallback(schema))
    for datum in data.draw(st.lists(data_for(schema, names, namespace), min_size=1, max_size=3)):
        expected = fastavro_bytes_or_none(schema, datum)
        if expected is None:  # fastavro refuses it (a union of decimals it cannot tell
            with pytest.raises(Exception):  # noqa: B017 - apart): so must we
                writer(datum)
            continue
        assert writer(datum) == expected


@WRITER_SETTINGS
@given(st.data())
def test_split_and_assemble_is_fastavro_byte_for_byte(data: st.DataObject) -> None:
    schema, names = data.draw(schemas(), label="schema")
    namespace = schema.get("namespace", "")
    decided = tuple(
        data.draw(st.lists(st.sampled_from(decidable(schema)), unique=True), label="decided")
        if decidable(schema)
        else ()
    )
    decided = tuple(name for name in (f["name"] for f in schema["fields"]) if name in decided)
    segments, assemble = compile_split(schema, decided, fastavro_fallback(schema))
    header = data.draw(st.binary(max_size=10), label="header")
    for datum in data.draw(st.lists(data_for(schema, names, namespace), min_size=1, max_size=3)):
        expected = fastavro_bytes_or_none(schema, datum)
        values = [datum.get(name) for name in decided]  # absent only when default null
        if expected is None:  # fastavro refuses it: so must one of the two steps
            with pytest.raises(Exception):  # noqa: B017
                assemble(header, segments(datum), *values)
            continue
        parts = segments(datum)
        assert len(parts) == len(decided) + 1
        assert assemble(header, parts, *values) == header + expected


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schemas())
def test_without_a_fallback_exactly_the_fallback_shapes_are_refused(
    drawn: tuple[dict[str, Any], Names],
) -> None:
    """The old behaviour when no fallback is given: refused at compile time, never a
    writer that fails (or writes something else) later."""
    schema, names = drawn
    decided = tuple(decidable(schema)[:1])
    if names.fallback:
        with pytest.raises(UnsupportedSchemaError):
            compile_writer(schema)
        with pytest.raises(UnsupportedSchemaError):
            compile_split(schema, decided)
    else:
        compile_writer(schema)
        compile_split(schema, decided)


# --- each fallback shape on its own ----------------------------------------------------------
def one_field(field_type: Schema, *before: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "record",
        "name": "R",
        "namespace": "ns",
        "fields": [*before, {"name": "x", "type": field_type}],
    }


INNER = {"type": "record", "name": "Inner", "fields": [{"name": "n", "type": "long"}]}
FALLBACK_SHAPES: list[tuple[str, Schema, Any, tuple[dict[str, Any], ...]]] = [
    ("map", {"type": "map", "values": "long"}, {"a": 1, "b": -2}, ()),
    ("bytes", "bytes", b"\x00\xff", ()),
    ("float", "float", 1.5, ()),
    ("fixed", {"type": "fixed", "name": "F", "size": 2}, b"ab", ()),
    (
        "decimal",
        {"type": "bytes", "logicalType": "decimal", "precision": 5, "scale": 2},
        Decimal("-123.45"),
        (),
    ),
    ("date", {"type": "int", "logicalType": "date"}, datetime(2025, 3, 4).date(), ()),
    (
        "timestamp-micros",
        {"type": "long", "logicalType": "timestamp-micros"},
        datetime(2025, 3, 4, 5, 6, 7, 891011, tzinfo=UTC),
        (),
    ),
    ("wide union", ["null", "string", "long"], 7, ()),
    ("null second", ["string", "null"], None, ()),
    (
        "named type referenced from a fallback part",
        {"type": "map", "values": "Inner"},
        {"k": {"n": 5}},
        ({"name": "inner", "type": INNER},),
    ),
    (
        "named type defined in a fallback part, referenced inline",
        "Inner",
        {"n": 5},
        ({"name": "inner", "type": {"type": "map", "values": INNER}},),
    ),
    (
        "recursive type",
        {
            "type": "record",
            "name": "Node",
            "fields": [{"name": "v", "type": "long"}, {"name": "next", "type": ["null", "Node"]}],
        },
        {"v": 1, "next": {"v": 2, "next": None}},
        (),
    ),
]


@pytest.mark.parametrize(
    ("shape", "datum", "before"),
    [(shape, datum, before) for _, shape, datum, before in FALLBACK_SHAPES],
    ids=[name for name, *_ in FALLBACK_SHAPES],
)
def test_each_fallback_shape_is_refused_alone_and_written_with_the_fallback(
    shape: Schema, datum: Any, before: tuple[dict[str, Any], ...]
) -> None:
    schema = one_field(shape, *before)
    with pytest.raises(UnsupportedSchemaError):
        compile_writer(schema)
    earlier = {"n": 9} if before and before[0]["type"] == INNER else {"k": {"n": 9}}
    full = {"inner": earlier, "x": datum} if before else {"x": datum}
    assert compile_writer(schema, fastavro_fallback(schema))(full) == fastavro_bytes(schema, full)


def test_a_short_name_means_the_enclosing_namespaces_type() -> None:
    """Two types named X in two namespaces: "X" inside namespace b is b.X."""
    schema = {
        "type": "record",
        "name": "R",
        "namespace": "b",
        "fields": [
            {"name": "p", "type": {"type": "record", "name": "X", "namespace": "a",
                                   "fields": [{"name": "n", "type": "long"}]}},
            {"name": "q", "type": {"type": "record", "name": "X",
                                   "fields": [{"name": "s", "type": "string"}]}},
            {"name": "r", "type": "X"},
            {"name": "t", "type": "a.X"},
        ],
    }  # fmt: skip
    datum = {"p": {"n": 1}, "q": {"s": "b"}, "r": {"s": "c"}, "t": {"n": 2}}
    assert compile_writer(schema)(datum) == fastavro_bytes(schema, datum)


# --- values: what is refused, and naive times ---------------------------------------------
VALUE_SCHEMA = {
    "type": "record",
    "name": "V",
    "fields": [
        {"name": "id", "type": UUID},
        {"name": "at", "type": MILLIS},
        {"name": "maybe", "type": ["null", MILLIS], "default": None},
    ],
}


@pytest.mark.parametrize("bad_id", [None, 5, b"0f8b6c2e4c1d8a3b9f000123456789ab", ["x"]])
def test_a_uuid_field_takes_a_str_or_a_uuid_only(bad_id: Any) -> None:
    writer = compile_writer(VALUE_SCHEMA)
    good = {"id": uuid.UUID(int=7), "at": 0}
    assert writer(good) == writer({**good, "id": str(uuid.UUID(int=7))})
    with pytest.raises(TypeError):
        writer({**good, "id": bad_id})  # not written as "None" or "5"


@pytest.mark.parametrize("zone", ["America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"])
def test_a_naive_datetime_is_local_time_as_fastavro_writes_it(
    zone: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        writer = compile_writer(VALUE_SCHEMA)
        for moment in (
            datetime(2025, 3, 9, 2, 30),  # in New York's spring-forward gap
            datetime(2025, 11, 2, 1, 30, 0, 999_999),  # ambiguous there
            datetime(1950, 6, 1, 12, 0, 0, 1_000),
            datetime(2100, 1, 1),
        ):
            datum = {"id": str(uuid.UUID(int=1)), "at": moment, "maybe": moment}
            assert writer(datum) == fastavro_bytes(VALUE_SCHEMA, datum), moment
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.parametrize(
    "name",
    ["class", "type", "len", "isinstance", "buf", "segments", "header", "F1", "E2", "f3", "a-b"],
)
def test_decided_names_that_would_clash_in_the_generated_code_are_refused(name: str) -> None:
    schema = {"type": "record", "name": "R", "fields": [{"name": name, "type": "long"}]}
    with pytest.raises(UnsupportedSchemaError, match="parameters"):
        compile_split(schema, (name,))
