"""Event values as bytes, and back: the only module that imports fastavro.

Two encodings of the same Avro schema (``connector/avro/``, also ``avro/`` at the root):
    registry        ``SCHEMA_REGISTRY_URL`` set: Confluent wire format (``00``, 4-byte
                    big-endian schema id, Avro body) via confluent-kafka's
                    ``AvroSerializer``; subject ``<topic>-value``, registered at start
    single-object   otherwise: Avro single-object encoding (``C3 01``, the schema's
                    8-byte little-endian CRC-64-AVRO fingerprint, Avro body)
``EventDecoder`` reads both, telling them apart by the first byte.

Errors, by what the caller does with them:
    InvalidRecordError(reason="not_serializable")   this event only: dead-letter it
    SchemaIncompatibleError (FatalError)            the registry refuses our schema
    RetriableError                                  the registry is unreachable or failing
    EventDecodeError                                bytes that are not one of our events
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any, Final, Protocol

from confluent_kafka.schema_registry import (
    Schema,
    SchemaRegistryClient,
    SchemaRegistryError,
)
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint as schema_fingerprint
from fastavro.schema import to_parsing_canonical_form

from connector import __version__
from connector.changes.event import change_to_event, source_fields
from connector.errors import ConnectorError, FatalError, InvalidRecordError, RetriableError
from connector.kafka.avro_writer import UnsupportedSchemaError, compile_split, compile_writer
from connector.models import EventSource
from connector.settings import Settings

__all__ = [
    "CONFLUENT_MAGIC",
    "DECIDED_FIELDS",
    "SINGLE_OBJECT_MAGIC",
    "BodyEncoder",
    "EventDecodeError",
    "EventDecoder",
    "EventEncoder",
    "RegistryEncoder",
    "SchemaIncompatibleError",
    "SingleObjectEncoder",
    "UnsupportedSchemaError",
    "build_decoder",
    "build_encoder",
    "change_to_event",
    "compile_writer",
    "jsonable",
    "schema_versions",
    "single_object_header",
    "source_fields",
    "source_from_settings",
    "value_schema",
]

VALUE_SCHEMA: Final = "session_score_changed"
KEY_SCHEMA: Final = "user_id_key"
SINGLE_OBJECT_MAGIC: Final = b"\xc3\x01"
CONFLUENT_MAGIC: Final = 0
_VERSIONED_FILE = re.compile(r"^(?P<name>[a-z0-9_]+)\.v(?P<version>[1-9][0-9]*)\.avsc$")


class SchemaIncompatibleError(FatalError):
    """The schema registry refused to register our schema (incompatible or invalid)."""


class EventDecodeError(ConnectorError):
    """The bytes are not an event this connector wrote (or its schema is unknown)."""


# --- schema files ----------------------------------------------------------------------
@cache
def schema_versions(name: str = VALUE_SCHEMA) -> dict[int, dict[str, Any]]:
    """Every version of schema ``name`` shipped in ``connector/avro``, by version number."""
    versions: dict[int, dict[str, Any]] = {}
    for entry in resources.files("connector").joinpath("avro").iterdir():
        match = _VERSIONED_FILE.match(entry.name)
        if match and match["name"] == name:
            versions[int(match["version"])] = json.loads(entry.read_text(encoding="utf-8"))
    if not versions:
        raise FatalError(f"no {name}.v*.avsc schema file is installed with the connector")
    return dict(sorted(versions.items()))


def value_schema() -> dict[str, Any]:
    """The current (highest-numbered) version of the event value schema."""
    versions = schema_versions(VALUE_SCHEMA)
    return versions[max(versions)]


def single_object_header(schema: Mapping[str, Any]) -> bytes:
    """``C3 01`` + the 8-byte little-endian CRC-64-AVRO fingerprint of the canonical form.

    fastavro's hex fingerprint already lists the bytes least significant first.
    """
    canonical = to_parsing_canonical_form(parse_schema(dict(schema)))
    return SINGLE_OBJECT_MAGIC + bytes.fromhex(schema_fingerprint(canonical, "CRC-64-AVRO"))


def source_from_settings(settings: Settings) -> EventSource:
    return EventSource(settings.connector_name, settings.learnosity_api_version, __version__)


# --- encoders --------------------------------------------------------------------------
class EventEncoder(Protocol):
    def register(self) -> None:
        """Make the schema known where consumers find it; call once before producing."""

    def encode(self, event: Mapping[str, Any]) -> bytes:
        """The value bytes of one event (``change_to_event``'s result)."""

    @property
    def header(self) -> bytes:
        """What precedes every Avro body (``BodyEncoder.assemble``); known after
        ``register()``."""

    def check(self) -> str:
        """Read-only: can events be encoded as configured? A plain-words answer, or raise."""


def array_union_fields(schema: Mapping[str, Any]) -> tuple[str, ...]:
    """Top-level fields typed ``["null", array]`` (subscores, responses)."""
    return tuple(
        field["name"]
        for field in schema["fields"]
        if isinstance(field["type"], list)
        and any(isinstance(t, dict) and t.get("type") == "array" for t in field["type"])
    )


def writer_datum(event: Mapping[str, Any], array_unions: tuple[str, ...]) -> dict[str, Any]:
    """``event`` with its nullable arrays' union branch named (fastavro tuple notation).

    To pick a union branch fastavro validates the whole value against each candidate;
    for arrays of records that walk costs about a quarter of the encoding time. Naming
    the branch skips it. Only real lists are named, so a wrong value still fails.
    """
    datum = dict(event)
    for name in array_unions:
        value = datum.get(name)
        if type(value) is list:
            datum[name] = ("array", value)
    return datum


def _not_serializable(exc: Exception) -> InvalidRecordError:
    return InvalidRecordError(
        f"the event does not fit the Avro schema: {type(exc).__name__}: {exc}"[:500],
        reason="not_serializable",
    )


#: the event fields that depend on committed state, decided by the runner; every other
#: field is encoded ahead of the decision (in the fetch process) by ``BodyEncoder``
DECIDED_FIELDS: Final = ("event_id", "change", "previous_status")


class BodyEncoder:
    """Encodes an event body in two steps: ahead, and when the change is decided.

    ``encode(fields)`` writes every field but the decided ones (``DECIDED_FIELDS``) and
    returns the bytes between them, in schema order (one more segment than decided
    fields); ``assemble`` writes the decided values into the gaps. Avro binary has no
    field tags or lengths around records, so the concatenation is byte for byte the
    body fastavro writes for the whole event (``avro_writer.compile_split``).
    """

    def __init__(self, schema: Mapping[str, Any] | None = None) -> None:
        schema = dict(schema if schema is not None else value_schema())
        self._segments, self._assemble = compile_split(schema, DECIDED_FIELDS)

    def encode(self, fields: Mapping[str, Any]) -> tuple[bytes, ...]:
        """The segments of ``fields`` (an event without its decided fields)."""
        try:
            return self._segments(fields)
        except Exception as exc:  # the writers raise many types for bad data
            raise _not_serializable(exc) from exc

    def assemble(self, header: bytes, segments: tuple[bytes, ...], *decided: Any) -> bytes:
        """``header`` + the whole body: ``segments`` with ``decided`` values between them
        (in ``DECIDED_FIELDS`` order). Raises ``InvalidRecordError`` for a bad value."""
        try:
            return self._assemble(header, segments, *decided)
        except Exception as exc:  # the writers raise many types for bad data
            raise _not_serializable(exc) from exc


class SingleObjectEncoder:
    """Avro single-object encoding: needs no registry, readers need the schema files."""

    def __init__(self, schema: Mapping[str, Any] | None = None) -> None:
        schema = schema if schema is not None else value_schema()
        self._parsed = parse_schema(dict(schema))
        self._array_unions = array_union_fields(schema)
        self.header = single_object_header(schema)
        try:
            self._compiled: Callable[[Mapping[str, Any]], bytes] | None = compile_writer(schema)
        except UnsupportedSchemaError:
            self._compiled = None  # a future schema shape: fastavro handles everything

    def register(self) -> None:
        """Nothing to register: the fingerprint in every message names the schema."""

    def check(self) -> str:
        return (
            "not used: events are Avro single-object encoded "
            f"(schema fingerprint {self.header[2:].hex()})"
        )

    def encode(self, event: Mapping[str, Any]) -> bytes:
        try:
            if self._compiled is not None:
                return self.header + self._compiled(event)
            buffer = io.BytesIO()
            buffer.write(self.header)
            schemaless_writer(buffer, self._parsed, writer_datum(event, self._array_unions))
        except Exception as exc:  # writers raise many types for bad data
            raise _not_serializable(exc) from exc
        return buffer.getvalue()


def registry_client(url: str, username: str = "", password: str = "") -> SchemaRegistryClient:
    config: dict[str, Any] = {"url": url}
    if username:
        config["basic.auth.user.info"] = f"{username}:{password}"
    return SchemaRegistryClient(config)


def _registry_error(exc: SchemaRegistryError, subject: str, action: str) -> ConnectorError:
    """Translate a registry failure by what the caller should do (never echoes secrets)."""
    status = exc.http_status_code
    detail = f"HTTP {status}, error {exc.error_code}: {exc.error_message}"
    if status == 409:
        return SchemaIncompatibleError(
            f"the schema registry refuses the event schema for subject {subject!r} as "
            f"incompatible with the versions registered before ({detail}). Evolve the "
            f"schema backward-compatibly (see avro/README.md) or use a new topic."
        )
    if status in (401, 403):
        return SchemaIncompatibleError(
            f"the schema registry refused to {action} subject {subject!r}: not authorized; "
            f"check SCHEMA_REGISTRY_USERNAME and SCHEMA_REGISTRY_PASSWORD ({detail})"
        )
    if status == 422 or (400 <= status < 500 and status not in (408, 429)):
        return SchemaIncompatibleError(
            f"the schema registry refused to {action} subject {subject!r} ({detail})"
        )
    return RetriableError(f"schema registry: {action} {subject!r} failed ({detail})")


class RegistryEncoder:
    """Confluent wire format through the schema registry at ``SCHEMA_REGISTRY_URL``."""

    def __init__(
        self,
        client: SchemaRegistryClient,
        topic: str,
        schema: Mapping[str, Any] | None = None,
    ) -> None:
        schema = schema if schema is not None else value_schema()
        self.subject = f"{topic}-value"
        self._client = client
        self._schema = Schema(json.dumps(schema), "AVRO")
        self._serializer = AvroSerializer(
            client, self._schema, conf={"auto.register.schemas": True}
        )
        self._context = SerializationContext(topic, MessageField.VALUE)
        self._array_unions = array_union_fields(schema)
        self.schema_id: int | None = None

    def register(self) -> None:
        """Register (or find) the schema under ``<topic>-value``; fail clearly if refused."""
        try:
            self.schema_id = self._client.register_schema(self.subject, self._schema)
        except SchemaRegistryError as exc:
            raise _registry_error(exc, self.subject, "register the schema under") from exc
        except Exception as exc:  # requests/httpx errors: unreachable
            raise RetriableError(
                f"schema registry unreachable while registering {self.subject!r}: "
                f"{type(exc).__name__}"
            ) from exc

    def check(self) -> str:
        """Whether start-up registration would succeed, without registering anything."""
        try:
            try:
                found = self._client.lookup_schema(self.subject, self._schema)
                return f"subject {self.subject!r} has this schema (id {found.schema_id})"
            except SchemaRegistryError as exc:
                if exc.http_status_code != 404:
                    raise
            try:
                compatible = self._client.test_compatibility(self.subject, self._schema)
            except SchemaRegistryError as exc:
                if exc.http_status_code == 404:
                    return f"subject {self.subject!r} is new: the schema is registered at start"
                raise
        except SchemaRegistryError as exc:
            raise _registry_error(exc, self.subject, "check the schema of") from exc
        except Exception as exc:  # requests/httpx errors: unreachable
            raise RetriableError(
                f"schema registry unreachable while checking {self.subject!r}: {type(exc).__name__}"
            ) from exc
        if not compatible:
            raise SchemaIncompatibleError(
                f"the schema registry would refuse the event schema for subject "
                f"{self.subject!r}: incompatible with the versions registered before. Evolve "
                f"the schema backward-compatibly (see avro/README.md) or use a new topic."
            )
        return f"subject {self.subject!r}: the schema is compatible; registered at start"

    @property
    def header(self) -> bytes:
        """Confluent wire format: magic byte 0 and the 4-byte big-endian schema id."""
        if self.schema_id is None:
            raise FatalError("RegistryEncoder.header before register(): the schema id is unknown")
        return bytes((CONFLUENT_MAGIC,)) + self.schema_id.to_bytes(4, "big")

    def encode(self, event: Mapping[str, Any]) -> bytes:
        try:
            value = self._serializer(writer_datum(event, self._array_unions), self._context)
        except SchemaRegistryError as exc:
            raise _registry_error(exc, self.subject, "register the schema under") from exc
        except Exception as exc:  # fastavro raises many types for bad data
            raise _not_serializable(exc) from exc
        assert value is not None  # only None in, None out
        return bytes(value)


# --- decoding --------------------------------------------------------------------------
class EventDecoder:
    """Decodes both encodings to the event dict (``observed_at`` as an aware datetime).

    Single-object messages are read with whichever shipped schema version has the
    fingerprint in their header; registry messages with the schema their id names (so
    a registry is needed only if such messages are read).
    """

    def __init__(
        self,
        registry_url: str | None = None,
        topic: str = "",
        *,
        client: SchemaRegistryClient | None = None,
        username: str = "",
        password: str = "",
    ) -> None:
        self._by_fingerprint = {
            single_object_header(schema)[2:]: parse_schema(schema)
            for schema in schema_versions(VALUE_SCHEMA).values()
        }
        if client is None and registry_url:
            client = registry_client(registry_url, username, password)
        self._deserializer = AvroDeserializer(client) if client is not None else None
        self._context = SerializationContext(topic, MessageField.VALUE)

    def decode(self, data: bytes) -> dict[str, Any]:
        if data[:2] == SINGLE_OBJECT_MAGIC:
            return self._decode_single_object(data)
        if data[:1] == bytes((CONFLUENT_MAGIC,)):
            return self._decode_registry(data)
        raise EventDecodeError(
            f"not an event: starts with {data[:2].hex() or 'nothing'}, "
            "neither C301 (single-object) nor 00 (schema registry)"
        )

    def _decode_single_object(self, data: bytes) -> dict[str, Any]:
        writer = self._by_fingerprint.get(data[2:10])
        if writer is None:
            raise EventDecodeError(
                f"single-object event with unknown schema fingerprint {data[2:10].hex()}: "
                "written by a newer connector? (known: "
                f"{', '.join(fp.hex() for fp in self._by_fingerprint)})"
            )
        try:
            event = schemaless_reader(io.BytesIO(data[10:]), writer, None)
        except Exception as exc:  # truncated or corrupt bodies fail variously
            raise EventDecodeError(f"single-object event body unreadable: {exc!r}") from exc
        if not isinstance(event, dict):
            raise EventDecodeError(f"single-object value is a {type(event).__name__}")
        return event

    def _decode_registry(self, data: bytes) -> dict[str, Any]:
        if self._deserializer is None:
            raise EventDecodeError(
                "event in schema-registry wire format, but no registry is configured "
                "(set SCHEMA_REGISTRY_URL)"
            )
        try:
            event = self._deserializer(data, self._context)
        except SchemaRegistryError as exc:
            raise _registry_error(exc, f"schema id {data[1:5].hex()}", "look up") from exc
        except Exception as exc:  # the serializer wraps many causes
            raise EventDecodeError(f"registry-framed event unreadable: {exc!r}") from exc
        if not isinstance(event, dict):
            raise EventDecodeError(f"registry-framed value is a {type(event).__name__}")
        return event


def jsonable(event: Mapping[str, Any]) -> dict[str, Any]:
    """The decoded event with ``observed_at`` as ISO 8601 text, ready for ``json.dumps``."""
    observed = event.get("observed_at")
    out = dict(event)
    if isinstance(observed, datetime):
        out["observed_at"] = observed.isoformat(timespec="milliseconds")
    return out


# --- from settings -----------------------------------------------------------------------
def build_encoder(settings: Settings) -> EventEncoder:
    """The encoder the settings ask for; call ``register()`` on it before producing."""
    if settings.schema_registry_url:
        client = registry_client(
            settings.schema_registry_url,
            settings.schema_registry_username,
            settings.schema_registry_password.get_secret_value(),
        )
        return RegistryEncoder(client, settings.kafka_topic)
    return SingleObjectEncoder()


def build_decoder(settings: Settings) -> EventDecoder:
    return EventDecoder(
        settings.schema_registry_url or None,
        settings.kafka_topic,
        username=settings.schema_registry_username,
        password=settings.schema_registry_password.get_secret_value(),
    )
