"""Settings: every source, and one clear line per problem."""

import os
from pathlib import Path

import pytest

from connector.commands.common import register_settings_secrets
from connector.errors import ConfigError
from connector.kafka.config_check import config_problems
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


# --- every problem in one pass ---------------------------------------------------------------
def problems_of(**overrides: str) -> list[str]:
    """The problems ``run`` would print, with ``overrides`` on top of valid settings."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {**REQUIRED, "KAFKA_BOOTSTRAP_SERVERS": "b:9092", **overrides}.items():
            patch.setenv(name, value)
        try:
            load_settings(need_kafka=True, check_environment=True, kafka_check=config_problems)
        except ConfigError as exc:
            return exc.problems
    return []


def named(problems: list[str]) -> list[str]:
    return sorted(p.split(":")[0] for p in problems)


def test_every_problem_is_found_in_one_pass_before_anything_is_reached(tmp_path: Path) -> None:
    """A missing KAFKA_BOOTSTRAP_SERVERS was reported only once the credentials were
    fixed; contradictions between settings only once every setting was valid."""
    problems = problems_of(
        LEARNOSITY_CONSUMER_SECRET="",
        KAFKA_BOOTSTRAP_SERVERS="",
        KAFKA_TOPIC="learnosity-scores.state",
        KAFKA_SECURITY_PROTOCOL="bogus",
        KAFKA_SSL_CA_LOCATION=str(tmp_path / "missing-ca.pem"),
        LEARNOSITY_READ_TIMEOUT_SECONDS="inf",
        LEARNOSITY_POLL_INTERVAL_SECONDS="0",
        KAFKA_COMMIT_INTERVAL_MS="60000",
        LIBRDKAFKA_NO_SUCH_PROPERTY="1",
    )
    assert named(problems) == [
        "KAFKA_BOOTSTRAP_SERVERS",
        "KAFKA_COMMIT_INTERVAL_MS",
        "KAFKA_SECURITY_PROTOCOL",
        "KAFKA_SSL_CA_LOCATION",
        "KAFKA_TOPIC",
        "LEARNOSITY_CONSUMER_SECRET",
        "LEARNOSITY_POLL_INTERVAL_SECONDS",
        "LEARNOSITY_READ_TIMEOUT_SECONDS",
        "LIBRDKAFKA_NO_SUCH_PROPERTY",
    ], problems
    assert all("\n" not in p for p in problems)
    by_name = {p.split(":")[0]: p for p in problems}
    assert "state topic" in by_name["KAFKA_TOPIC"]
    assert "finite" in by_name["LEARNOSITY_READ_TIMEOUT_SECONDS"]
    assert "does not exist" in by_name["KAFKA_SSL_CA_LOCATION"]
    assert "No such configuration property" in by_name["LIBRDKAFKA_NO_SUCH_PROPERTY"]


@pytest.mark.parametrize(
    "name",
    [
        "LEARNOSITY_POLL_INTERVAL_SECONDS",
        "LEARNOSITY_MAX_REQUESTS_PER_SECOND",
        "LEARNOSITY_CONNECT_TIMEOUT_SECONDS",
        "LEARNOSITY_READ_TIMEOUT_SECONDS",
        "LEARNOSITY_CATCHUP_LAG_SECONDS",
        "SHUTDOWN_TIMEOUT_SECONDS",
    ],
)
@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e300"])
def test_no_float_setting_takes_infinity_nan_or_an_overflow(name: str, value: str) -> None:
    """``inf`` passed validation and raised OverflowError at run time."""
    assert named(problems_of(**{name: value})) == [name]


@pytest.mark.parametrize(
    ("settings", "complaint"),
    [
        ({"KAFKA_TOPIC": ""}, "KAFKA_TOPIC: must not be empty"),
        ({"KAFKA_TOPIC": "events/2026"}, "KAFKA_TOPIC: 'events/2026' is not a Kafka topic name"),
        ({"KAFKA_TOPIC": "x" * 250}, "is not a Kafka topic name"),
        ({"KAFKA_DLQ_TOPIC": ".."}, "KAFKA_DLQ_TOPIC: '..' is not a Kafka topic name"),
        ({"KAFKA_TOPIC": "x" * 246}, "KAFKA_DLQ_TOPIC: '" + "x" * 246 + ".dlq' is not"),
        (
            {"KAFKA_DLQ_TOPIC": "learnosity-scores.state"},
            "KAFKA_DLQ_TOPIC: 'learnosity-scores.state' is the connector's state topic",
        ),
        (
            {"KAFKA_TOPIC": "t", "KAFKA_DLQ_TOPIC": "t"},
            "KAFKA_DLQ_TOPIC: 't' is the same topic as KAFKA_TOPIC 't'",
        ),
        ({"KAFKA_TOPIC": "a.b", "KAFKA_DLQ_TOPIC": "a_b"}, "the same topic as KAFKA_TOPIC 'a.b'"),
        (
            {"KAFKA_TABLE_TOPIC": "learnosity.sessions.scores"},
            "KAFKA_TABLE_TOPIC: 'learnosity.sessions.scores' is the same topic as KAFKA_TOPIC",
        ),
        (
            {"CONNECTOR_NAME": "c" * 244},
            "CONNECTOR_NAME: String should have at most 243 characters",
        ),
        (
            {"KAFKA_BOOTSTRAP_SERVERS": "http://broker:9092"},
            "KAFKA_BOOTSTRAP_SERVERS: 'http://broker:9092' is not host:port",
        ),
        ({"KAFKA_BOOTSTRAP_SERVERS": "broker:99999"}, "'broker:99999' is not host:port"),
        ({"KAFKA_BOOTSTRAP_SERVERS": "broker 9092"}, "'broker 9092' is not host:port"),
        (
            {"KAFKA_SECURITY_PROTOCOL": "TLS"},
            "KAFKA_SECURITY_PROTOCOL: 'TLS' is not one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL",
        ),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-1"},
            "KAFKA_SASL_MECHANISM: 'SCRAM-SHA-1' is not one of",
        ),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"},
            "KAFKA_SASL_MECHANISM: required when KAFKA_SECURITY_PROTOCOL is SASL_SSL",
        ),
        (
            {
                "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                "KAFKA_SASL_USERNAME": "u",
            },
            "KAFKA_SASL_PASSWORD: required for SASL SCRAM-SHA-512",
        ),
        (
            {"KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p"},
            "KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD: set, but "
            "KAFKA_SECURITY_PROTOCOL=PLAINTEXT does not use SASL",
        ),
        (
            {"KAFKA_SSL_CA_LOCATION": "/"},
            "KAFKA_SSL_CA_LOCATION: set, but KAFKA_SECURITY_PROTOCOL=PLAINTEXT does not use TLS",
        ),
        (
            {"KAFKA_COMMIT_INTERVAL_MS": "5000", "LIBRDKAFKA_TRANSACTION_TIMEOUT_MS": "5000"},
            "KAFKA_COMMIT_INTERVAL_MS: 5000 is not below the transaction timeout (5000 ms",
        ),
        (
            {"SCHEMA_REGISTRY_USERNAME": "u"},
            "SCHEMA_REGISTRY_USERNAME: set, but SCHEMA_REGISTRY_URL is empty",
        ),
        (
            {"SCHEMA_REGISTRY_URL": "http://r:8081", "SCHEMA_REGISTRY_PASSWORD": "p"},
            "SCHEMA_REGISTRY_USERNAME: required with SCHEMA_REGISTRY_PASSWORD",
        ),
        (
            {
                "SCHEMA_REGISTRY_URL": "http://r:8081",
                "SCHEMA_REGISTRY_USERNAME": "u",
                "SCHEMA_REGISTRY_BEARER_TOKEN": "t",
            },
            "use one of basic or bearer authentication",
        ),
        (
            {"SCHEMA_REGISTRY_URL": "http://r:8081", "SCHEMA_REGISTRY_USE_LATEST_VERSION": "true"},
            "SCHEMA_REGISTRY_USE_LATEST_VERSION: true needs SCHEMA_REGISTRY_AUTO_REGISTER=false",
        ),
        (
            {
                "SCHEMA_REGISTRY_URL": "http://r:8081",
                "SCHEMA_REGISTRY_SSL_CERTIFICATE_LOCATION": "/",
            },
            "SCHEMA_REGISTRY_SSL_KEY_LOCATION: required for a client certificate",
        ),
        (
            {
                "SCHEMA_REGISTRY_URL": "http://r:8081",
                "SCHEMA_REGISTRY_SSL_CA_LOCATION": "/no/ca.pem",
            },
            "SCHEMA_REGISTRY_SSL_CA_LOCATION: /no/ca.pem does not exist",
        ),
        ({"HTTP_BIND_ADDRESS": "0.0.0.0 "}, ""),
        (
            {"HTTP_BIND_ADDRESS": "all interfaces"},
            "HTTP_BIND_ADDRESS: 'all interfaces' is not an IP address",
        ),
        (
            {"LIBRDKAFKA_LINGER_MS": "soon"},
            "LIBRDKAFKA_LINGER_MS: librdkafka refuses linger.ms='soon': Invalid value",
        ),
        (
            {"LIBRDKAFKA_TRANSACTION_TIMEOUT_MS": "30000"},
            "Kafka client settings: librdkafka refuses them: "
            "`message.timeout.ms` must be set <= `transaction.timeout.ms`",
        ),
    ],
)
def test_misconfiguration_that_used_to_break_later(
    settings: dict[str, str], complaint: str
) -> None:
    problems = problems_of(**settings)
    if not complaint:
        assert problems == []
        return
    assert len(problems) == 1 and complaint in problems[0], problems


def test_valid_kafka_and_registry_settings_pass(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not checked here: librdkafka reads it when a TLS connection is made\n")
    assert (
        problems_of(
            KAFKA_BOOTSTRAP_SERVERS="SASL_SSL://b-1:9096, b-2:9096,[::1]:9096,b-3",
            KAFKA_SECURITY_PROTOCOL="sasl_ssl",
            KAFKA_SASL_MECHANISM="scram-sha-512",
            KAFKA_SASL_USERNAME="u",
            KAFKA_SASL_PASSWORD="p",
            KAFKA_TABLE_TOPIC="learnosity.sessions.latest",
            SCHEMA_REGISTRY_URL="https://r.example:8081",
            SCHEMA_REGISTRY_AUTO_REGISTER="false",
            SCHEMA_REGISTRY_USE_LATEST_VERSION="true",
            LIBRDKAFKA_LINGER_MS="20",
            LIBRDKAFKA_TRANSACTION_TIMEOUT_MS="90000",
            LIBRDKAFKA_MESSAGE_TIMEOUT_MS="80000",
        )
        == []
    )
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {**REQUIRED, "KAFKA_BOOTSTRAP_SERVERS": " b-1:9096 , b-2:9096 "}.items():
            patch.setenv(name, value)
        patch.setenv("KAFKA_SECURITY_PROTOCOL", "sasl_ssl")
        patch.setenv("KAFKA_SASL_MECHANISM", "plain")
        patch.setenv("KAFKA_SASL_USERNAME", "u")
        patch.setenv("KAFKA_SASL_PASSWORD", "p")
        settings = load_settings(need_kafka=True)
    assert settings.kafka_bootstrap_servers == "b-1:9096,b-2:9096"
    assert settings.kafka_security_protocol == "SASL_SSL"
    assert settings.kafka_sasl_mechanism == "PLAIN"


def test_librdkafka_complaints_never_echo_a_secret() -> None:
    secret = 'k"p\\w'
    problems = problems_of(
        LIBRDKAFKA_SSL_KEY_PASSWORD=secret,
        LIBRDKAFKA_SSL_KEY_LOCATION="/no/such/key.pem",
        KAFKA_SECURITY_PROTOCOL="SSL",
    )
    assert problems and all(secret not in p for p in problems), problems
    assert any("ssl.key.location" in p for p in problems), problems


def test_a_url_with_credentials_is_masked_in_problems() -> None:
    problems = problems_of(SCHEMA_REGISTRY_URL="ftp://user:s3cr3t-Ü@registry:8081")
    assert problems == [
        "SCHEMA_REGISTRY_URL: 'ftp://***@registry:8081' is not an http:// or https:// URL"
    ]


def test_secrets_in_urls_and_tokens_are_registered_for_redaction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    set_env(
        monkeypatch,
        SCHEMA_REGISTRY_URL="https://svc:url%22pass@registry:8081",
        SCHEMA_REGISTRY_BEARER_TOKEN="bearer-tok-9",
        LIBRDKAFKA_SASL_OAUTHBEARER_CONFIG="principal=me clientSecret=oauth-cfg-7",
        LEARNOSITY_BASE_URL="https://tok-only-5@data.example",
    )
    settings = load_settings()
    assert "oauth-cfg-7" not in repr(settings)  # sasl.oauthbearer.config holds secrets
    assert "url%22pass" not in repr(settings) and "tok-only-5" not in repr(settings)
    assert "schema_registry_url='https://***@registry:8081'" in repr(settings)
    register_settings_secrets(settings)
    line = (
        'url-pass url"pass, encoded url%22pass; token bearer-tok-9; '
        "config principal=me clientSecret=oauth-cfg-7; token-as-user tok-only-5"
    )
    assert redact(line) == "url-pass ***, encoded ***; token ***; config ***; token-as-user ***"
