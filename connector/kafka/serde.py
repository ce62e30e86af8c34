"""Event values as bytes, and back: the only module that imports fastavro.

One Avro body writer (``avro_writer``: generated from the schema, byte for byte what
fastavro writes, and fastavro itself for any part of a schema the generated code does not
cover), framed two ways (``connector/avro/``, also ``avro/`` at the root):
    registry        ``SCHEMA_REGISTRY_URL`` set: Confluent wire format (``00``, 4-byte
                    big-endian schema id, Avro body); the subject (by the configured name
                    strategy) checked, registered and its compatibility set at start
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
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any, Final, Protocol

from confluent_kafka.schema_registry import (
    Schema,
    SchemaRegistryClient,
    SchemaRegistryError,
)
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint as schema_fingerprint
from fastavro.schema import to_parsing_canonical_form
from fastavro.utils import generate_many

from connector import __version__
from connector.changes.event import change_to_event, source_fields
from connector.errors import ConnectorError, FatalError, InvalidRecordError, RetriableError
from connector.kafka.avro_writer import (
    Fallback,
    UnsupportedSchemaError,
    compile_split,
    compile_writer,
)
from connector.models import EventSource
from connector.settings import Settings, SubjectStrategy

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


def fastavro_fallback(schema: Mapping[str, Any]) -> Fallback:
    """Writers for the parts of ``schema`` the generated code leaves to fastavro."""
    named: dict[str, Any] = {}
    parse_schema(dict(schema), named_schemas=named)

    wrapper_name = "connector_fallback_part"
    while wrapper_name in named:
        wrapper_name += "_"

    def writer(part: Any) -> Callable[[Any], bytes]:
        # the part is written as the one field of a record: Avro writes a record as its
        # fields in order, so the bytes are the part's own. fastavro keeps the named
        # types a parsed *record* references, but parses any other schema again on each
        # write, without them: a part such as {"type": "map", "values": "ns.Inner"} or a
        # fixed would fail with UnknownType
        wrapper = parse_schema(
            {"type": "record", "name": wrapper_name, "fields": [{"name": "v", "type": part}]},
            named_schemas=dict(named),
        )

        def write(value: Any) -> bytes:
            buffer = io.BytesIO()
            schemaless_writer(buffer, wrapper, {"v": value})
            return buffer.getvalue()

        return write

    return writer


def _not_serializable(exc: Exception) -> InvalidRecordError:
    return InvalidRecordError(
        f"the event does not fit the Avro schema: {type(exc).__name__}: {exc}"[:500],
        reason="not_serializable",
    )


#: the event fields that depend on committed state, decided by the runner; every other
#: field is encoded ahead of the decision (in the fetch process) by ``BodyEncoder``
DECIDED_FIELDS: Final = (
    "event_id",
    "change",
    "previous_status",
    "previous_score",
    "previous_max_score",
)


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
        self._segments, self._assemble = compile_split(
            schema, DECIDED_FIELDS, fastavro_fallback(schema)
        )

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
        self.header = single_object_header(schema)
        self._write = compile_writer(schema, fastavro_fallback(schema))

    def register(self) -> None:
        """Nothing to register: the fingerprint in every message names the schema."""

    def check(self) -> str:
        return (
            "not used: events are Avro single-object encoded "
            f"(schema fingerprint {self.header[2:].hex()})"
        )

    def encode(self, event: Mapping[str, Any]) -> bytes:
        try:
            return self.header + self._write(event)
        except Exception as exc:  # writers raise many types for bad data
            raise _not_serializable(exc) from exc


@dataclass(frozen=True)
class RegistryAccess:
    """How to reach the registry: URL, auth (basic or bearer) and TLS."""

    url: str
    username: str = ""
    password: str = field(default="", repr=False)
    bearer_token: str = field(default="", repr=False)
    ca_location: str = ""
    certificate_location: str = ""
    key_location: str = ""

    @classmethod
    def from_settings(cls, settings: Settings) -> RegistryAccess:
        return cls(
            settings.schema_registry_url,
            settings.schema_registry_username,
            settings.schema_registry_password.get_secret_value(),
            settings.schema_registry_bearer_token.get_secret_value(),
            settings.schema_registry_ssl_ca_location,
            settings.schema_registry_ssl_certificate_location,
            settings.schema_registry_ssl_key_location,
        )

    def __repr__(self) -> str:  # the URL may carry credentials in its user info
        return (
            f"RegistryAccess(url={_masked(self.url)!r}, username={self.username!r}, "
            f"ca_location={self.ca_location!r}, "
            f"certificate_location={self.certificate_location!r}, "
            f"key_location={self.key_location!r})"
        )


def registry_client(access: RegistryAccess | str) -> SchemaRegistryClient:
    if isinstance(access, str):
        access = RegistryAccess(access)
    config: dict[str, Any] = {"url": access.url}
    if access.username:
        config["basic.auth.user.info"] = f"{access.username}:{access.password}"
    if access.bearer_token:
        config["bearer.auth.credentials.source"] = "STATIC_TOKEN"
        config["bearer.auth.token"] = access.bearer_token
        config["bearer.auth.logical.cluster"] = ""  # Confluent Cloud's; others ignore it
    for key, value in (
        ("ssl.ca.location", access.ca_location),
        ("ssl.certificate.location", access.certificate_location),
        ("ssl.key.location", access.key_location),
    ):
        if value:
            config[key] = value
    return SchemaRegistryClient(config)


def _registry_error(exc: SchemaRegistryError, subject: str, action: str) -> ConnectorError:
    """Translate a registry failure by what the caller should do (never echoes secrets)."""
    status = exc.http_status_code
    detail = f"HTTP {status}, error {exc.error_code}: {exc.error_message}"
    if status == 409:
        return SchemaIncompatibleError(
            f"the schema registry refuses the event schema for subject {subject!r} as "
            f"incompatible with the versions registered before ({detail}). Evolve the "
            f"schema compatibly (see avro/README.md) or use a new topic."
        )
    if status in (401, 403):
        return SchemaIncompatibleError(
            f"the schema registry refused to {action} subject {subject!r}: not authorized; "
            "check SCHEMA_REGISTRY_USERNAME/SCHEMA_REGISTRY_PASSWORD or "
            f"SCHEMA_REGISTRY_BEARER_TOKEN ({detail})"
        )
    if status == 422 or (400 <= status < 500 and status not in (408, 429)):
        return SchemaIncompatibleError(
            f"the schema registry refused to {action} subject {subject!r} ({detail})"
        )
    return RetriableError(f"schema registry: {action} {subject!r} failed ({detail})")


def subject_name(strategy: SubjectStrategy, topic: str, schema: Mapping[str, Any]) -> str:
    """The value schema's subject by Confluent's naming strategies."""
    record = str(schema["name"])
    if "." not in record and schema.get("namespace"):
        record = f"{schema['namespace']}.{record}"
    if strategy is SubjectStrategy.RECORD:
        return record
    if strategy is SubjectStrategy.TOPIC_RECORD:
        return f"{topic}-{record}"
    return f"{topic}-value"


def _masked(url: str) -> str:
    """``url`` fit for a message: credentials in its user info replaced by ``***``."""
    return re.sub(r"(?<=://)[^/@\s]*@", "***@", url)


#: random data per direction that ``locally_compatible`` writes and reads back
COMPATIBILITY_SAMPLES: Final = 25


def locally_compatible(ours: Any, theirs: Any, level: str) -> bool:
    """Whether ``ours`` may follow ``theirs`` at ``level``, by Avro schema resolution:
    data written with one schema read with the other (``BACKWARD``: ours reads theirs;
    ``FORWARD``: theirs reads ours; ``FULL``: both)."""
    directions = []
    if level.startswith(("BACKWARD", "FULL")):
        directions.append((theirs, ours))
    if level.startswith(("FORWARD", "FULL")):
        directions.append((ours, theirs))
    for writer, reader in directions:
        try:
            parsed_writer, parsed_reader = parse_schema(writer), parse_schema(reader)
            for datum in generate_many(parsed_writer, COMPATIBILITY_SAMPLES):
                buffer = io.BytesIO()
                schemaless_writer(buffer, parsed_writer, datum)
                buffer.seek(0)
                schemaless_reader(buffer, parsed_writer, parsed_reader)
        except Exception:  # noqa: BLE001 - any failure to resolve is an incompatibility
            return False
    return True


def _schema_id(value: int | None) -> int:
    if value is None:
        raise RetriableError("the schema registry answered without a schema id")
    return int(value)


def _not_found(exc: SchemaRegistryError) -> bool:
    return exc.http_status_code == 404


class RegistryEncoder:
    """Confluent wire format through the schema registry (``SCHEMA_REGISTRY_URL``).

    At start (``register``):
        auto-register on    the schema is tested against the subject's registered versions
                            (refused at once if incompatible), registered, and the
                            subject's compatibility level set (``SCHEMA_REGISTRY_COMPATIBILITY``)
        auto-register off   the schema must be registered already; with use-latest, the
                            subject's latest version is used when it is the same schema
    The body is written by the one writer; the registry only names the schema id.
    """

    def __init__(
        self,
        client: SchemaRegistryClient,
        topic: str,
        schema: Mapping[str, Any] | None = None,
        *,
        strategy: SubjectStrategy = SubjectStrategy.TOPIC,
        compatibility: str = "BACKWARD_TRANSITIVE",
        auto_register: bool = True,
        use_latest: bool = False,
        url: str = "",
        also_topics: tuple[str, ...] = (),
    ) -> None:
        schema = schema if schema is not None else value_schema()
        self.subject = subject_name(strategy, topic, schema)
        #: subjects of other topics carrying the same events (the table topic), so that
        #: ksqlDB and Flink find the schema where they look for it
        self._also = tuple(
            name
            for name in (subject_name(strategy, other, schema) for other in also_topics)
            if name != self.subject
        )
        self._client = client
        self._schema = Schema(json.dumps(schema), "AVRO")
        self._canonical = to_parsing_canonical_form(parse_schema(dict(schema)))
        self._write = compile_writer(schema, fastavro_fallback(schema))
        self._compatibility = compatibility
        self._auto_register = auto_register
        self._use_latest = use_latest
        self._where = f" at {_masked(url)}" if url else ""
        self.schema_id: int | None = None

    def register(self) -> None:
        """Find or register the schema; fail with one clear line if that is refused."""
        self.schema_id = self._call("register the schema under", self._register)

    def _register(self) -> int:
        if not self._auto_register:
            return self._registered_id()
        if not self._compatible():
            raise self._incompatible()
        schema_id = int(self._client.register_schema(self.subject, self._schema))
        self._client.set_compatibility(self.subject, self._compatibility)
        for subject in self._also:  # the same schema, so the same id
            self._client.register_schema(subject, self._schema)
            self._client.set_compatibility(subject, self._compatibility)
        return schema_id

    def _registered_id(self) -> int:
        """The id of our schema in the subject (auto-register off)."""
        try:
            return _schema_id(self._client.lookup_schema(self.subject, self._schema).schema_id)
        except SchemaRegistryError as exc:
            if not _not_found(exc):
                raise
        if self._use_latest:
            latest = self._client.get_latest_version(self.subject)
            text = latest.schema.schema_str if latest.schema is not None else None
            registered = to_parsing_canonical_form(parse_schema(json.loads(text or "null")))
            if registered == self._canonical:
                return _schema_id(latest.schema_id)
            raise SchemaIncompatibleError(
                f"the latest schema of subject {self.subject!r}{self._where} (version "
                f"{latest.version}) is not the connector's event schema; register the "
                "connector's schema, or turn SCHEMA_REGISTRY_AUTO_REGISTER on"
            )
        raise SchemaIncompatibleError(
            f"subject {self.subject!r}{self._where} does not hold the connector's event "
            "schema and SCHEMA_REGISTRY_AUTO_REGISTER is off: register it (avro/), or turn "
            "auto-register or SCHEMA_REGISTRY_USE_LATEST_VERSION on"
        )

    def _compatible(self) -> bool:
        """True when the subject is new, holds the schema, or accepts it as a new version
        at the registry's level and at ours (``SCHEMA_REGISTRY_COMPATIBILITY``): a
        registry's default level is often NONE, which accepts any unrelated schema."""
        try:
            self._client.lookup_schema(self.subject, self._schema)
            return True
        except SchemaRegistryError as exc:
            if not _not_found(exc):
                raise
        try:
            if not self._client.test_compatibility_all_versions(self.subject, self._schema):
                return False
            versions = self._client.get_versions(self.subject)
        except SchemaRegistryError as exc:
            if _not_found(exc):
                return True  # a new subject: anything is compatible with nothing
            raise
        if not self._compatibility.endswith("TRANSITIVE"):
            versions = versions[-1:]
        ours = json.loads(self._schema.schema_str or "null")
        for version in versions:
            registered = self._client.get_version(self.subject, version).schema
            theirs = json.loads((registered.schema_str if registered else None) or "null")
            if not locally_compatible(ours, theirs, self._compatibility):
                return False
        return True

    def _incompatible(self) -> SchemaIncompatibleError:
        return SchemaIncompatibleError(
            f"the event schema is incompatible with the versions registered under subject "
            f"{self.subject!r}{self._where}: evolve the schema compatibly (see avro/README.md), "
            "use a new topic, or change the subject's compatibility level"
        )

    def _call(self, action: str, step: Callable[[], Any]) -> Any:
        try:
            return step()
        except SchemaRegistryError as exc:
            raise _registry_error(exc, self.subject, action) from exc
        except ConnectorError:
            raise
        except Exception as exc:  # the HTTP client's errors: unreachable
            raise RetriableError(
                f"schema registry{self._where} unreachable while trying to {action} "
                f"{self.subject!r}: {type(exc).__name__}"
            ) from exc

    def check(self) -> str:
        """Whether start-up registration would succeed, without registering anything."""

        def look() -> str:
            self._require_registry()
            if not self._auto_register:
                return f"subject {self.subject!r} holds the schema (id {self._registered_id()})"
            if not self._compatible():
                raise self._incompatible()
            try:
                found = self._client.lookup_schema(self.subject, self._schema)
                return f"subject {self.subject!r} holds this schema (id {found.schema_id})"
            except SchemaRegistryError as exc:
                if not _not_found(exc):
                    raise
            try:
                self._client.get_latest_version(self.subject)
            except SchemaRegistryError as exc:
                if _not_found(exc):
                    return f"subject {self.subject!r} is new: the schema is registered at start"
                raise
            return f"subject {self.subject!r}: the schema is compatible; registered at start"

        result: str = self._call("check the schema of", look)
        return f"{result}{self._where}"

    def _require_registry(self) -> None:
        """A real registry lists its subjects; any server answers 404 to a lookup."""
        try:
            subjects = self._client.get_subjects()
        except SchemaRegistryError as exc:
            if exc.http_status_code in (404, 405) or exc.error_code == -1:
                raise SchemaIncompatibleError(
                    f"the server{self._where} does not answer as a schema registry "
                    f"(listing subjects: HTTP {exc.http_status_code}): check "
                    "SCHEMA_REGISTRY_URL (Apicurio's: <base>/apis/ccompat/v7)"
                ) from exc
            raise
        if not isinstance(subjects, list):
            raise SchemaIncompatibleError(
                f"the server{self._where} does not answer as a schema registry "
                "(its subject list is not a list): check SCHEMA_REGISTRY_URL"
            )

    @property
    def header(self) -> bytes:
        """Confluent wire format: magic byte 0 and the 4-byte big-endian schema id."""
        if self.schema_id is None:
            raise FatalError("RegistryEncoder.header before register(): the schema id is unknown")
        return bytes((CONFLUENT_MAGIC,)) + self.schema_id.to_bytes(4, "big")

    def encode(self, event: Mapping[str, Any]) -> bytes:
        header = self.header
        try:
            return header + self._write(event)
        except Exception as exc:  # writers raise many types for bad data
            raise _not_serializable(exc) from exc


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
            client = registry_client(RegistryAccess(registry_url, username, password))
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


def jsonable(value: Any) -> Any:
    """A decoded event ready for ``json.dumps``: times as ISO 8601 text, UUIDs as text."""
    if isinstance(value, datetime):
        return value.isoformat(timespec="milliseconds")
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Mapping):
        return {key: jsonable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [jsonable(item) for item in value]
    return value


# --- from settings -----------------------------------------------------------------------
def build_encoder(settings: Settings) -> EventEncoder:
    """The encoder the settings ask for; call ``register()`` on it before producing."""
    if settings.schema_registry_url:
        return RegistryEncoder(
            registry_client(RegistryAccess.from_settings(settings)),
            settings.kafka_topic,
            strategy=settings.schema_registry_subject_strategy,
            compatibility=str(settings.schema_registry_compatibility),
            auto_register=settings.schema_registry_auto_register,
            use_latest=settings.schema_registry_use_latest_version,
            url=settings.schema_registry_url,
            also_topics=(settings.kafka_table_topic,) if settings.kafka_table_topic else (),
        )
    return SingleObjectEncoder()


def build_decoder(settings: Settings) -> EventDecoder:
    client = (
        registry_client(RegistryAccess.from_settings(settings))
        if settings.schema_registry_url
        else None
    )
    return EventDecoder(topic=settings.kafka_topic, client=client)
