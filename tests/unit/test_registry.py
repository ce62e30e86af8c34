"""``RegistryEncoder`` against a registry in this process (tests/support/fake_registry.py):
subject name strategies, the compatibility level set when it registers, refusals with one
line naming subject and registry, auto-register off and use-latest, and the client's
auth/TLS configuration, with no secret in any message."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryError

from connector.errors import ConnectorError, RetriableError
from connector.kafka import serde
from connector.kafka.serde import (
    RegistryAccess,
    RegistryEncoder,
    SchemaIncompatibleError,
    build_encoder,
    locally_compatible,
    registry_client,
    value_schema,
)
from connector.settings import Settings, SubjectStrategy
from tests.support.fake_registry import FakeRegistry, unrelated_schema

TOPIC = "learnosity.sessions.scores"
URL = "https://registry.example:8081/apis/ccompat/v7"
RECORD = "learnosity.scores.SessionScoreChanged"
PASSWORD = "pa55-w0rd-s3cret"  # looked for in every message
TOKEN = "eyJ0b2tlbi1zM2NyZXQ"


def ours() -> Schema:
    return Schema(json.dumps(value_schema()), "AVRO")


def one_line(error: BaseException) -> str:
    text = str(error)
    assert "\n" not in text, text
    return text


# --- subjects ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("strategy", "subject"),
    [
        (SubjectStrategy.TOPIC, f"{TOPIC}-value"),
        (SubjectStrategy.RECORD, RECORD),
        (SubjectStrategy.TOPIC_RECORD, f"{TOPIC}-{RECORD}"),
    ],
)
def test_the_subject_follows_the_naming_strategy(strategy: SubjectStrategy, subject: str) -> None:
    registry = FakeRegistry()
    encoder = RegistryEncoder(registry, TOPIC, strategy=strategy)
    assert encoder.subject == subject
    encoder.register()
    assert registry.get_subjects() == [subject]
    schema_id = registry.lookup_schema(subject, ours()).schema_id
    assert schema_id is not None and schema_id == encoder.schema_id
    assert encoder.header == b"\x00" + schema_id.to_bytes(4, "big")


# --- registration and the compatibility level --------------------------------------------------
@pytest.mark.parametrize("level", ["BACKWARD_TRANSITIVE", "FULL", "NONE"])
def test_the_compatibility_level_is_set_after_registering(level: str) -> None:
    registry = FakeRegistry()
    encoder = RegistryEncoder(registry, TOPIC, compatibility=level)
    encoder.register()
    subject = f"{TOPIC}-value"
    methods = registry.methods()
    assert methods.index("register_schema") < methods.index("set_compatibility")
    assert ("set_compatibility", subject, level) in registry.calls
    assert registry.get_compatibility(subject) == level


def test_the_default_compatibility_level_is_backward_transitive() -> None:
    registry = FakeRegistry()
    RegistryEncoder(registry, TOPIC).register()
    assert registry.get_compatibility(f"{TOPIC}-value") == "BACKWARD_TRANSITIVE"


def test_registering_again_keeps_the_id() -> None:
    registry = FakeRegistry()
    first = RegistryEncoder(registry, TOPIC)
    first.register()
    second = RegistryEncoder(registry, TOPIC)
    second.register()
    assert first.schema_id == second.schema_id
    assert registry.get_versions(f"{TOPIC}-value") == [1]


def incompatible_registry(subject: str = f"{TOPIC}-value") -> FakeRegistry:
    """A subject holding an unrelated record schema, its compatibility BACKWARD."""
    registry = FakeRegistry(default_level="NONE")
    registry.register_schema(subject, unrelated_schema())
    registry.set_compatibility(subject, "BACKWARD")
    registry.calls.clear()
    return registry


def test_an_incompatible_subject_is_refused_with_one_line_naming_subject_and_registry() -> None:
    registry = incompatible_registry()
    encoder = RegistryEncoder(registry, TOPIC, url=URL)
    with pytest.raises(SchemaIncompatibleError) as caught:
        encoder.register()
    line = one_line(caught.value)
    assert f"'{TOPIC}-value'" in line and URL in line
    assert "register_schema" not in registry.methods()  # nothing registered ...
    assert "set_compatibility" not in registry.methods()  # ... nor the level changed
    assert registry.get_versions(f"{TOPIC}-value") == [1]
    with pytest.raises(SchemaIncompatibleError) as checked:
        encoder.check()
    assert one_line(checked.value) == line


def test_the_registrys_own_refusal_names_the_subject(monkeypatch: pytest.MonkeyPatch) -> None:
    """The registry refuses at registration (the tests said compatible): a 409, one line."""
    registry = incompatible_registry()
    registry.test_compatibility_all_versions = lambda *a, **k: True  # type: ignore[method-assign]
    monkeypatch.setattr("connector.kafka.serde.locally_compatible", lambda *a: True)
    with pytest.raises(SchemaIncompatibleError) as caught:
        RegistryEncoder(registry, TOPIC, url=URL).register()
    assert f"'{TOPIC}-value'" in one_line(caught.value) and "409" in str(caught.value)


def test_an_unrelated_schema_on_a_subject_at_none_is_refused() -> None:
    """The registry's level (NONE, Apicurio's default) accepts anything: the connector
    also judges at its own level (SCHEMA_REGISTRY_COMPATIBILITY)."""
    registry = incompatible_registry()
    registry.set_compatibility(f"{TOPIC}-value", "NONE")  # as Apicurio's default is
    for step in (RegistryEncoder(registry, TOPIC).check, RegistryEncoder(registry, TOPIC).register):
        with pytest.raises(SchemaIncompatibleError):
            step()
    assert sorted(registry.get_versions(f"{TOPIC}-value")) == [1]


# --- auto-register off, use-latest --------------------------------------------------------------
def test_auto_register_off_uses_the_registered_schema() -> None:
    registry = FakeRegistry()
    schema_id = registry.register_schema(f"{TOPIC}-value", ours())
    registry.calls.clear()
    encoder = RegistryEncoder(registry, TOPIC, auto_register=False)
    encoder.register()
    assert encoder.schema_id == schema_id
    assert "register_schema" not in registry.methods()
    assert "set_compatibility" not in registry.methods()
    assert f"id {schema_id}" in encoder.check()


@pytest.mark.parametrize("subject_exists", [False, True])
def test_auto_register_off_with_the_schema_absent_is_refused(subject_exists: bool) -> None:
    registry = incompatible_registry() if subject_exists else FakeRegistry()
    encoder = RegistryEncoder(registry, TOPIC, auto_register=False, url=URL)
    for step in (encoder.register, encoder.check):
        with pytest.raises(SchemaIncompatibleError) as caught:
            step()
        line = one_line(caught.value)
        assert f"'{TOPIC}-value'" in line and URL in line and "AUTO_REGISTER" in line
    assert "register_schema" not in registry.methods()


def reformatted(schema: dict[str, Any]) -> Schema:
    """The same schema as other text (another layout, docs dropped): the same canonical
    form, but not the same string, so a lookup by text does not find it."""
    return Schema(json.dumps(schema, indent=1, sort_keys=True), "AVRO")


def test_use_latest_accepts_the_same_schema_registered_as_other_text() -> None:
    registry = FakeRegistry()
    subject = f"{TOPIC}-value"
    latest_id = registry.register_schema(subject, reformatted(value_schema()))
    with pytest.raises(SchemaRegistryError):
        registry.lookup_schema(subject, ours())  # not found by its text
    registry.calls.clear()
    encoder = RegistryEncoder(registry, TOPIC, auto_register=False, use_latest=True)
    encoder.register()
    assert encoder.schema_id == latest_id
    assert registry.methods() == ["lookup_schema", "get_latest_version"]


@pytest.mark.parametrize("latest", ["unrelated", "evolved"])
def test_use_latest_refuses_a_different_schema(latest: str) -> None:
    registry = FakeRegistry(default_level="NONE")
    subject = f"{TOPIC}-value"
    registry.register_schema(subject, reformatted(value_schema()))
    if latest == "unrelated":
        registry.register_schema(subject, unrelated_schema())
    else:
        evolved = value_schema()
        added = {"name": "attempt", "type": ["null", "long"], "default": None, "doc": "."}
        registry.register_schema(
            subject, reformatted({**evolved, "fields": [*evolved["fields"], added]})
        )
    encoder = RegistryEncoder(registry, TOPIC, auto_register=False, use_latest=True, url=URL)
    with pytest.raises(SchemaIncompatibleError) as caught:
        encoder.register()
    line = one_line(caught.value)
    assert f"'{TOPIC}-value'" in line and URL in line and "version 2" in line
    assert encoder.schema_id is None


# --- the client's configuration -----------------------------------------------------------------
class RecordingClient(FakeRegistry):
    """Stands in for ``SchemaRegistryClient``: keeps the configuration it was made with."""

    made: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, conf: dict[str, Any]) -> None:
        super().__init__()
        RecordingClient.made.append(dict(conf))


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    RecordingClient.made = []
    monkeypatch.setattr(serde, "SchemaRegistryClient", RecordingClient)
    return RecordingClient.made


def test_bearer_and_tls_reach_the_client(recorded: list[dict[str, Any]]) -> None:
    registry_client(
        RegistryAccess(
            URL,
            bearer_token=TOKEN,
            ca_location="/etc/registry/ca.pem",
            certificate_location="/etc/registry/client.pem",
            key_location="/etc/registry/client.key",
        )
    )
    (config,) = recorded
    assert config["url"] == URL
    assert config["bearer.auth.credentials.source"] == "STATIC_TOKEN"
    assert config["bearer.auth.token"] == TOKEN
    assert config["ssl.ca.location"] == "/etc/registry/ca.pem"
    assert config["ssl.certificate.location"] == "/etc/registry/client.pem"
    assert config["ssl.key.location"] == "/etc/registry/client.key"
    assert "basic.auth.user.info" not in config


def test_basic_auth_reaches_the_client_and_nothing_unset_does(
    recorded: list[dict[str, Any]],
) -> None:
    registry_client(RegistryAccess(URL, "scores-app", PASSWORD))
    registry_client(URL)
    basic, bare = recorded
    assert basic == {"url": URL, "basic.auth.user.info": f"scores-app:{PASSWORD}"}
    assert bare == {"url": URL}


def registry_settings(tmp_path: Path, **more: Any) -> Settings:
    files = {}
    for name in ("ca.pem", "client.pem", "client.key"):
        (tmp_path / name).write_text("-----BEGIN-----\n")
        files[name] = str(tmp_path / name)
    values: dict[str, Any] = {
        "learnosity_consumer_key": "k",
        "learnosity_consumer_secret": "s3cret",
        "kafka_bootstrap_servers": "unused:9092",
        "kafka_topic": TOPIC,
        "schema_registry_url": URL,
        "schema_registry_bearer_token": TOKEN,
        "schema_registry_ssl_ca_location": files["ca.pem"],
        "schema_registry_ssl_certificate_location": files["client.pem"],
        "schema_registry_ssl_key_location": files["client.key"],
        "schema_registry_subject_strategy": "topic_record",
        "schema_registry_compatibility": "FULL_TRANSITIVE",
        **more,
    }
    return Settings(**values)


def test_the_settings_reach_the_client_and_the_encoder(
    recorded: list[dict[str, Any]], tmp_path: Path
) -> None:
    settings = registry_settings(tmp_path)
    assert settings.problems(need_kafka=True) == []
    encoder = build_encoder(settings)
    assert isinstance(encoder, RegistryEncoder)
    (config,) = recorded
    assert config["bearer.auth.token"] == TOKEN
    assert config["ssl.ca.location"] == str(tmp_path / "ca.pem")
    assert config["ssl.certificate.location"] == str(tmp_path / "client.pem")
    assert config["ssl.key.location"] == str(tmp_path / "client.key")
    assert encoder.subject == f"{TOPIC}-{RECORD}"
    encoder.register()
    client = encoder._client
    assert isinstance(client, FakeRegistry)
    assert client.get_compatibility(encoder.subject) == "FULL_TRANSITIVE"


# --- no secret in any message -------------------------------------------------------------------
class FailingRegistry(FakeRegistry):
    """Every call fails as given."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def lookup_schema(self, *args: Any, **kwargs: Any) -> Any:
        raise self.error


FAILURES: list[Exception] = [
    SchemaRegistryError(401, 40101, "Unauthorized"),
    SchemaRegistryError(403, 40301, "Forbidden"),
    SchemaRegistryError(409, 409, "incompatible"),
    SchemaRegistryError(422, 42201, "Invalid schema"),
    SchemaRegistryError(500, 50001, "Internal error"),
    ConnectionError(f"cannot reach https://scores-app:{PASSWORD}@registry.example"),
    OSError(f"Bearer {TOKEN} refused"),
]


@pytest.mark.parametrize("error", FAILURES, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("step", ["register", "check"])
def test_no_secret_appears_in_any_error_message(
    error: Exception, step: str, recorded: list[dict[str, Any]], tmp_path: Path
) -> None:
    secret_url = f"https://scores-app:{PASSWORD}@registry.example/apis/ccompat/v7"
    encoder = RegistryEncoder(
        FailingRegistry(error), TOPIC, url=secret_url, auto_register=step == "register"
    )
    with pytest.raises(ConnectorError) as caught:
        getattr(encoder, step)()
    line = one_line(caught.value)
    assert PASSWORD not in line and TOKEN not in line
    assert f"'{TOPIC}-value'" in line
    assert isinstance(caught.value, SchemaIncompatibleError | RetriableError)


@pytest.mark.parametrize("build", ["settings", "incompatible"])
def test_no_secret_in_the_settings_path_either(
    build: str, recorded: list[dict[str, Any]], tmp_path: Path
) -> None:
    settings = registry_settings(
        tmp_path,
        schema_registry_url=f"https://scores-app:{PASSWORD}@registry.example",
        schema_registry_bearer_token="",
        schema_registry_subject_strategy="topic",
    )
    encoder = build_encoder(settings)
    assert isinstance(encoder, RegistryEncoder)
    if build == "incompatible":
        encoder._client = incompatible_registry()
    else:
        encoder._client = FailingRegistry(ConnectionError(PASSWORD))
    with pytest.raises(ConnectorError) as caught:
        encoder.register()
    assert PASSWORD not in one_line(caught.value)
    assert "***@registry.example" in str(caught.value) or build == "settings"
    assert PASSWORD not in repr(RegistryAccess.from_settings(settings))
    assert TOKEN not in repr(RegistryAccess(URL, bearer_token=TOKEN))


def test_the_local_check_follows_the_configured_level() -> None:
    """An added field with a default may follow at BACKWARD; one without may not; an
    unrelated record never may; at NONE anything may."""
    ours = value_schema()
    added = {**ours, "fields": [*ours["fields"], {"name": "x", "type": "long", "default": 0}]}
    required = {**ours, "fields": [*ours["fields"], {"name": "x", "type": "long"}]}
    unrelated = {"type": "record", "name": "Other", "fields": [{"name": "a", "type": "int"}]}
    assert locally_compatible(added, ours, "BACKWARD_TRANSITIVE")
    assert locally_compatible(added, ours, "FULL")
    assert not locally_compatible(required, ours, "BACKWARD")
    assert locally_compatible(required, ours, "FORWARD")
    assert not locally_compatible(unrelated, ours, "BACKWARD")
    assert locally_compatible(unrelated, ours, "NONE")
