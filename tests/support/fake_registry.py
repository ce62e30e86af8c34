"""A schema registry in this process, for unit tests of ``kafka.serde.RegistryEncoder``.

confluent-kafka's ``MockSchemaRegistryClient`` stores, looks up and serves schemas (so
``AvroDeserializer`` reads what the encoder wrote), but it has no compatibility levels:
its ``test_compatibility_all_versions`` and ``set_compatibility`` would go over HTTP.
``FakeRegistry`` adds them, as a Confluent registry behaves:

    compatibility   per subject (``levels``); a subject without one has ``default_level``
    test            a new schema is compatible with a subject's versions when the level is
                    NONE or every version is the same record (by full name); a subject
                    without versions answers 404 (40401), as Confluent's does
    register        refused with 409 when that test fails, as a real registry refuses
    calls           every call in order: (method, subject, detail)
"""

from __future__ import annotations

import json
from typing import Any

from confluent_kafka.schema_registry import RegisteredSchema, Schema, SchemaRegistryError
from confluent_kafka.schema_registry._sync.mock_schema_registry_client import (
    MockSchemaRegistryClient,
)


def record_name(schema: Schema) -> str:
    parsed = json.loads(schema.schema_str or "null")
    name = str(parsed["name"])
    space = parsed.get("namespace")
    return name if "." in name or not space else f"{space}.{name}"


class FakeRegistry(MockSchemaRegistryClient):
    def __init__(self, default_level: str = "BACKWARD") -> None:
        super().__init__({"url": "mock://fake-registry"})
        self.default_level = default_level
        self.levels: dict[str, str] = {}
        self.calls: list[tuple[str, str | None, Any]] = []

    # --- what the mock lacks ------------------------------------------------------------
    def set_compatibility(self, subject_name: str | None = None, level: str | None = None) -> str:
        assert subject_name is not None and level is not None
        self.calls.append(("set_compatibility", subject_name, level))
        self.levels[subject_name] = level.upper()
        return level.upper()

    def get_compatibility(self, subject_name: str | None = None) -> str:
        return self.levels.get(subject_name or "", self.default_level)

    def test_compatibility_all_versions(
        self, subject_name: str, schema: Schema, normalize: bool = False, verbose: bool = False
    ) -> bool:
        self.calls.append(("test_compatibility_all_versions", subject_name, None))
        return self._compatible(subject_name, schema)

    def _compatible(self, subject_name: str, schema: Schema) -> bool:
        versions = self._store.get_versions(subject_name)
        if not versions:
            raise SchemaRegistryError(404, 40401, f"Subject '{subject_name}' not found.")
        if self.get_compatibility(subject_name) == "NONE":
            return True
        return all(
            record_name(registered.schema) == record_name(schema)
            for registered in self._store.subject_schemas[subject_name]
            if registered.schema is not None
        )

    # --- the mock's, recorded (and refusing as a registry does) -------------------------
    def register_schema(
        self, subject_name: str, schema: Schema, normalize_schemas: bool = False
    ) -> int:
        self.calls.append(("register_schema", subject_name, None))
        try:
            compatible = self._compatible(subject_name, schema)
        except SchemaRegistryError:
            compatible = True  # a new subject
        if (
            not compatible
            and self._store.get_registered_schema_by_schema(subject_name, schema) is None
        ):
            raise SchemaRegistryError(
                409, 409, "Schema being registered is incompatible with an earlier schema"
            )
        return super().register_schema(subject_name, schema, normalize_schemas)

    def lookup_schema(
        self, subject_name: str, schema: Schema, *args: Any, **kwargs: Any
    ) -> RegisteredSchema:
        self.calls.append(("lookup_schema", subject_name, None))
        return super().lookup_schema(subject_name, schema, *args, **kwargs)

    def get_latest_version(self, subject_name: str, fmt: str | None = None) -> RegisteredSchema:
        self.calls.append(("get_latest_version", subject_name, None))
        return super().get_latest_version(subject_name, fmt)

    def methods(self) -> list[str]:
        return [method for method, *_ in self.calls]


def unrelated_schema(name: str = "Unrelated") -> Schema:
    """A record schema that is not the event's (another full name, other fields)."""
    record = {
        "type": "record",
        "name": name,
        "namespace": "elsewhere",
        "fields": [{"name": "n", "type": "long"}],
    }
    return Schema(json.dumps(record), "AVRO")
