"""Settings: every source, and one clear line per problem."""

import os
from pathlib import Path

import pytest

from connector.commands.common import register_settings_secrets
from connector.errors import ConfigError
from connector.observability.logs import redact
from connector.settings import Delivery, StartFrom, librdkafka_from_env, load_settings

REQUIRED = {"LEARNOSITY_CONSUMER_KEY": "key", "LEARNOSITY_CONSUMER_SECRET": "shh-1234"}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:

    for name in list(os.environ):
        if name.startswith(
            ("LEARNOSITY_", "KAFKA_", "LIBRDKAFKA_", "SCHEMA_REGISTRY", "CONNECTOR_")
        ):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray .env


def set_env(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    for name, value in {**REQUIRED, **values}.items():
        monkeypatch.setenv(name, value)


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch)
    settings = load_settings()
    assert settings.learnosity_base_url == "https://data.learnosity.com"
    assert settings.learnosity_api_version == "v2025.2.LTS"
    assert settings.kafka_topic == "learnosity.sessions.scores"
    assert settings.kafka_dlq_topic == "learnosity.sessions.scores.dlq"
    assert settings.state_topic == "learnosity-scores.state"
    assert settings.kafka_delivery is Delivery.EXACTLY_ONCE
    assert settings.learnosity_start_from == StartFrom("earliest")
    assert settings.endpoint_url == "https://data.learnosity.com/v2025.2.LTS/sessions/scores"


def test_every_problem_is_listed_on_its_own_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEARNOSITY_STATUSES", "Completed,Finished")
    monkeypatch.setenv("LEARNOSITY_START_FROM", "last tuesday")
    monkeypatch.setenv("LEARNOSITY_BASE_URL", "ftp://data.learnosity.com")
    monkeypatch.setenv("LEARNOSITY_ACTIVITY_IDS", ",".join(f"a{i}" for i in range(1001)))
    with pytest.raises(ConfigError) as caught:
        load_settings()
    problems = caught.value.problems
    assert sorted(p.split(":")[0] for p in problems) == sorted(
        [
            "LEARNOSITY_CONSUMER_KEY",
            "LEARNOSITY_CONSUMER_SECRET",
            "LEARNOSITY_STATUSES",
            "LEARNOSITY_START_FROM",
            "LEARNOSITY_BASE_URL",
            "LEARNOSITY_ACTIVITY_IDS",
        ]
    )
    assert any("'Finished'" in p for p in problems)
    assert any("1001 ids" in p for p in problems)
    assert all("\n" not in p for p in problems)


def test_a_bad_secret_value_is_never_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, KAFKA_SASL_PASSWORD="hunter2-secret", HTTP_PORT="not-a-port")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "HTTP_PORT" in str(caught.value)
    settings_repr = repr(load_settings(overrides={"http_port": 9}))
    assert "hunter2-secret" not in settings_repr and "shh-1234" not in settings_repr


def test_kafka_is_required_only_where_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch)
    load_settings()
    with pytest.raises(ConfigError, match="KAFKA_BOOTSTRAP_SERVERS"):
        load_settings(need_kafka=True)


def test_lists_statuses_and_start_from(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(
        monkeypatch,
        LEARNOSITY_USER_IDS=" u1, u2 ,,",
        LEARNOSITY_STATUSES="pending scoring,COMPLETED",
        LEARNOSITY_START_FROM="1700000000",
    )
    settings = load_settings()
    assert settings.learnosity_user_ids == ["u1", "u2"]
    assert settings.learnosity_statuses == ["Pending Scoring", "Completed"]
    assert settings.learnosity_start_from.at is not None
    assert settings.learnosity_start_from.at.timestamp() == 1700000000


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("earliest", "earliest"),
        ("LATEST", "latest"),
        ("2026-01-01", "time"),
        ("2026-01-01T10:00:00+02:00", "time"),
        ("1700000000.5", "time"),
    ],
)
def test_start_from_forms(text: str, kind: str) -> None:
    assert StartFrom.parse(text).kind == kind


def test_yaml_file_sits_under_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "connector.yaml"
    config.write_text(
        "LEARNOSITY_CONSUMER_KEY: from-yaml\n"
        "learnosity_consumer_secret: yaml-secret\n"
        "kafka_topic: yaml.topic\n"
        "learnosity_user_ids: [a, b]\n"
        "librdkafka:\n  linger.ms: 5\n  enable.idempotence: true\n"
    )
    monkeypatch.setenv("KAFKA_TOPIC", "env.topic")
    settings = load_settings(config)
    assert settings.learnosity_consumer_key == "from-yaml"
    assert settings.kafka_topic == "env.topic"
    assert settings.learnosity_user_ids == ["a", "b"]
    assert settings.librdkafka == {"linger.ms": "5", "enable.idempotence": "true"}


def test_bad_yaml_is_one_clear_line(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_settings(config)
    with pytest.raises(ConfigError, match="cannot be read"):
        load_settings(tmp_path / "missing.yaml")


def test_secret_files_as_kubernetes_mounts_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "LEARNOSITY_CONSUMER_SECRET").write_text("from-file")
    (secrets / "KAFKA_SASL_PASSWORD").write_text("sasl-from-file")
    monkeypatch.setenv("LEARNOSITY_CONSUMER_KEY", "key")
    settings = load_settings(secrets_dir=secrets)
    assert settings.learnosity_consumer_secret.get_secret_value() == "from-file"
    assert settings.kafka_sasl_password.get_secret_value() == "sasl-from-file"
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(secrets_dir=tmp_path / "nope")


def test_pass_through_properties_from_secret_files(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "LIBRDKAFKA_SSL_KEY_PASSWORD").write_text("kp-from-file\n")
    (secrets / "LIBRDKAFKA_LINGER_MS").write_text("55")
    set_env(monkeypatch, LIBRDKAFKA_LINGER_MS="77")  # the environment wins over a file
    settings = load_settings(secrets_dir=secrets)
    assert settings.librdkafka["ssl.key.password"] == "kp-from-file"
    assert settings.librdkafka["linger.ms"] == "77"
    assert "kp-from-file" not in repr(settings)


def test_dotenv_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("LEARNOSITY_CONSUMER_KEY=dot\nLEARNOSITY_CONSUMER_SECRET=env\n")
    assert load_settings().learnosity_consumer_key == "dot"


def test_librdkafka_pass_through_rule() -> None:
    assert librdkafka_from_env(
        {"LIBRDKAFKA_LINGER_MS": "20", "LIBRDKAFKA_A__B_C": "x", "OTHER": "y"}
    ) == {"linger.ms": "20", "a_b.c": "x"}


def test_kafka_client_config_carries_security(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(
        monkeypatch,
        KAFKA_BOOTSTRAP_SERVERS="b:9092",
        KAFKA_SECURITY_PROTOCOL="SASL_SSL",
        KAFKA_SASL_MECHANISM="SCRAM-SHA-512",
        KAFKA_SASL_USERNAME="u",
        KAFKA_SASL_PASSWORD="p",
        KAFKA_SSL_CA_LOCATION="/ca.pem",
        LIBRDKAFKA_LINGER_MS="7",
    )
    config = load_settings(need_kafka=True).kafka_client_config()
    assert config == {
        "bootstrap.servers": "b:9092",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "u",
        "sasl.password": "p",
        "ssl.ca.location": "/ca.pem",
        "linger.ms": "7",
    }


def test_secret_pass_through_properties_are_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(
        monkeypatch,
        LIBRDKAFKA_SSL_KEY_PASSWORD="kp-secret-77",
        LIBRDKAFKA_SASL_OAUTHBEARER_CLIENT_SECRET="oauth-secret-88",
        LIBRDKAFKA_LINGER_MS="7",
    )
    settings = load_settings()
    config = settings.kafka_client_config()
    assert config["ssl.key.password"] == "kp-secret-77"  # still handed to librdkafka
    assert config["sasl.oauthbearer.client.secret"] == "oauth-secret-88"
    shown = repr(settings)
    assert "kp-secret-77" not in shown and "oauth-secret-88" not in shown
    assert "'linger.ms': '7'" in shown  # what is not a secret stays visible
    register_settings_secrets(settings)
    assert redact("key kp-secret-77, oauth oauth-secret-88") == "key ***, oauth ***"
