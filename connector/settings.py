"""The connector's configuration: one pydantic-settings model, and the dicts derived from it.

Sources, highest priority first: explicit overrides (command-line flags), environment
variables, a ``.env`` file, secret files (a directory with one file per setting, named
after its environment variable, as Kubernetes mounts a Secret), an optional YAML file
(``--config``), then the defaults below. Every setting's name is its environment
variable (case-insensitive); README.md lists them all.

librdkafka properties that have no setting of their own pass through by one rule:
``LIBRDKAFKA_<NAME>`` becomes property ``<name>`` lowercased with ``_`` read as ``.``
and ``__`` as ``_`` (``LIBRDKAFKA_LINGER_MS=20`` → ``linger.ms=20``), or a ``librdkafka:``
mapping in the YAML file with the property names as keys.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings.exceptions import SettingsError

from connector.errors import ConfigError
from connector.observability.logs import mask_url

#: the statuses ``/sessions/scores`` accepts as a filter, spelled as the API spells them
SESSION_STATUSES = ("Incomplete", "Completed", "Discarded", "Pending Scoring")
MAX_FILTER_IDS = 1000
LIBRDKAFKA_PREFIX = "LIBRDKAFKA_"
DEFAULT_SECRETS_DIR = Path("/etc/learnosity-connector/secrets")
#: a pass-through librdkafka property whose name holds one of these holds a secret
#: (``sasl.oauthbearer.config`` holds the unsecured JWT's claims, often a client secret)
SECRET_PROPERTY_WORDS = (
    "password",
    "secret",
    "pem",
    "token",
    "credential",
    "jaas",
    "oauthbearer.config",
    "private",
)
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "GSSAPI", "OAUTHBEARER")
#: mechanisms that authenticate with KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD
PASSWORD_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
#: Kafka's rule for topic names (kafka.common.internals.Topic)
TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
#: one bootstrap server: ``host:port`` (or ``[v6]:port``), optionally ``PROTOCOL://``
BOOTSTRAP_SERVER = re.compile(
    r"^(?:(?:PLAINTEXT|SSL|SASL_PLAINTEXT|SASL_SSL)://)?"
    r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::(\d{1,5}))?$",
    re.IGNORECASE,
)
#: librdkafka's default transaction.timeout.ms as the connector sets it (kafka/producer.py)
DEFAULT_TRANSACTION_TIMEOUT_MS = 60_000
#: an upper bound for settings in seconds: an hour is already absurd for each of them,
#: and without one ``1e300`` passes validation and overflows at run time
MAX_SECONDS = 3600.0


class Delivery(StrEnum):
    EXACTLY_ONCE = "exactly_once"
    AT_LEAST_ONCE = "at_least_once"


class SubjectStrategy(StrEnum):
    """Confluent's subject name strategies: which subject the value schema lives under."""

    TOPIC = "topic"  # <topic>-value
    RECORD = "record"  # <record full name>
    TOPIC_RECORD = "topic_record"  # <topic>-<record full name>


class Compatibility(StrEnum):
    BACKWARD = "BACKWARD"
    BACKWARD_TRANSITIVE = "BACKWARD_TRANSITIVE"
    FORWARD = "FORWARD"
    FORWARD_TRANSITIVE = "FORWARD_TRANSITIVE"
    FULL = "FULL"
    FULL_TRANSITIVE = "FULL_TRANSITIVE"
    NONE = "NONE"


class LogFormat(StrEnum):
    JSON = "json"
    TEXT = "text"


@dataclass(frozen=True, slots=True)
class StartFrom:
    """Where a connector with no stored cursor starts reading."""

    kind: str  # "earliest", "latest" or "time"
    at: datetime | None = None

    @classmethod
    def parse(cls, text: str) -> StartFrom:
        """Accepts ``earliest``, ``latest``, Unix seconds, or an ISO 8601 date or time."""
        value = text.strip()
        lowered = value.lower()
        if lowered in ("earliest", "latest"):
            return cls(lowered)
        if re.fullmatch(r"\d{1,12}(\.\d+)?", value):
            return cls("time", datetime.fromtimestamp(float(value), tz=UTC))
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(
                f"{text!r} is not 'earliest', 'latest', Unix seconds or an ISO 8601 time"
            ) from None
        if parsed.tzinfo is None:  # a bare time is read as UTC, like the Data API does
            parsed = parsed.replace(tzinfo=UTC)
        return cls("time", parsed.astimezone(UTC))

    def __str__(self) -> str:
        return self.at.isoformat() if self.at else self.kind


def _split_list(value: Any) -> Any:
    """Comma-separated strings (env vars) and YAML lists both become lists of strings."""
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


CommaList = Annotated[list[str], NoDecode]


class Settings(BaseSettings):
    """Every setting of the connector. Field names are the env var names, lowercased."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        case_sensitive=False,
        extra="ignore",
        validate_default=True,
        allow_inf_nan=False,  # "inf" and "nan" are not durations
    )

    # --- Learnosity Data API ---------------------------------------------------------
    learnosity_consumer_key: str = Field(min_length=1)
    learnosity_consumer_secret: SecretStr
    learnosity_domain: str = "localhost"
    learnosity_base_url: str = "https://data.learnosity.com"
    learnosity_api_version: str = "v2025.2.LTS"
    learnosity_start_from: Annotated[StartFrom, NoDecode] = Field(default=StartFrom("earliest"))
    learnosity_poll_interval_seconds: float = Field(default=2.0, gt=0, le=MAX_SECONDS)
    learnosity_max_requests_per_second: float = Field(default=50.0, gt=0, le=100_000)
    learnosity_activity_ids: CommaList = Field(default_factory=list)
    learnosity_user_ids: CommaList = Field(default_factory=list)
    learnosity_statuses: CommaList = Field(default_factory=list)
    learnosity_include_response_scores: bool = False
    learnosity_page_limit: int = Field(default=50, ge=1, le=50)
    learnosity_connect_timeout_seconds: float = Field(default=10.0, gt=0, le=MAX_SECONDS)
    learnosity_read_timeout_seconds: float = Field(default=60.0, gt=0, le=MAX_SECONDS)
    #: requests in flight at once while catching up (time slices); 1 = one cursor only
    learnosity_max_concurrency: int = Field(default=64, ge=1, le=256)
    #: a gap (backfill, or a tail this far behind) larger than this is cut into slices
    learnosity_catchup_lag_seconds: float = Field(default=300.0, gt=0, le=10 * 365 * 86400)
    #: a Data API answer larger than this (decoded) is refused and the page asked again
    #: with half the limit, as for error 20027
    learnosity_max_response_bytes: int = Field(default=64 * 2**20, ge=64 * 1024, le=2**31)

    # --- Kafka -----------------------------------------------------------------------
    kafka_bootstrap_servers: str = ""
    kafka_topic: str = "learnosity.sessions.scores"
    kafka_dlq_topic: str = ""  # empty: "<KAFKA_TOPIC>.dlq"
    #: names the state topic ``<name>.state``: Kafka's topic name rule, 249 characters
    connector_name: str = Field(
        default="learnosity-scores", pattern=r"^[A-Za-z0-9._-]+$", max_length=243
    )
    kafka_delivery: Delivery = Delivery.EXACTLY_ONCE
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = ""
    kafka_sasl_username: str = ""
    kafka_sasl_password: SecretStr = SecretStr("")
    kafka_ssl_ca_location: str = ""
    kafka_topic_partitions: int = Field(default=6, ge=1, le=100_000)
    kafka_topic_replication_factor: int = Field(default=-1, ge=-1, le=32767)  # -1: broker's
    kafka_commit_interval_ms: int = Field(default=500, ge=10, le=3_600_000)
    schema_registry_url: str = ""
    schema_registry_username: str = ""
    schema_registry_password: SecretStr = SecretStr("")
    schema_registry_bearer_token: SecretStr = SecretStr("")
    schema_registry_ssl_ca_location: str = ""
    schema_registry_ssl_certificate_location: str = ""
    schema_registry_ssl_key_location: str = ""
    #: register the value schema when the subject lacks it (off: it must be there)
    schema_registry_auto_register: bool = True
    #: encode with the subject's latest registered schema (with auto-register off)
    schema_registry_use_latest_version: bool = False
    schema_registry_subject_strategy: SubjectStrategy = SubjectStrategy.TOPIC
    #: the compatibility level the connector sets on its subject when it registers
    schema_registry_compatibility: Compatibility = Compatibility.BACKWARD_TRANSITIVE
    #: optional compacted topic with the latest event of each session, keyed by session id
    kafka_table_topic: str = ""
    #: librdkafka pass-through properties (see the module docstring for the naming rule)
    librdkafka: dict[str, str] = Field(default_factory=dict)

    # --- Service ---------------------------------------------------------------------
    http_port: int = Field(default=8080, ge=0, le=65535)
    #: the address /metrics, /healthz and /readyz listen on
    http_bind_address: str = "0.0.0.0"  # noqa: S104 - probes and Prometheus reach the pod's IP
    log_level: str = "INFO"
    log_format: LogFormat = LogFormat.JSON
    shutdown_timeout_seconds: float = Field(default=20.0, gt=0, le=MAX_SECONDS)

    # --- validation ------------------------------------------------------------------
    @field_validator("learnosity_start_from", mode="before")
    @classmethod
    def _parse_start_from(cls, value: Any) -> Any:
        if isinstance(value, StartFrom):
            return value
        if isinstance(value, int | float):
            value = str(value)
        if isinstance(value, datetime):
            value = value.isoformat()
        if not isinstance(value, str):
            raise ValueError("must be 'earliest', 'latest', Unix seconds or ISO 8601")
        return StartFrom.parse(value)

    @field_validator(
        "learnosity_activity_ids", "learnosity_user_ids", "learnosity_statuses", mode="before"
    )
    @classmethod
    def _split(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator("learnosity_consumer_secret")
    @classmethod
    def _secret_not_empty(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("learnosity_activity_ids", "learnosity_user_ids")
    @classmethod
    def _at_most_1000(cls, value: list[str]) -> list[str]:
        if len(value) > MAX_FILTER_IDS:
            raise ValueError(f"has {len(value)} ids; the Data API accepts at most {MAX_FILTER_IDS}")
        return value

    @field_validator("learnosity_statuses")
    @classmethod
    def _known_statuses(cls, value: list[str]) -> list[str]:
        by_lower = {s.lower(): s for s in SESSION_STATUSES}
        unknown = [v for v in value if v.lower() not in by_lower]
        if unknown:
            raise ValueError(
                f"unknown status {', '.join(map(repr, unknown))}; "
                f"known: {', '.join(SESSION_STATUSES)}"
            )
        return [by_lower[v.lower()] for v in value]

    @field_validator("learnosity_base_url", "schema_registry_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if value and not re.match(r"^https?://[^/\s]+$|^https?://[^/\s]+/\S*$", value):
            raise ValueError(f"{mask_url(value)!r} is not an http:// or https:// URL")
        return value

    @field_validator("kafka_topic", "kafka_table_topic")
    @classmethod
    def _topic_name(cls, value: str, info: ValidationInfo) -> str:
        value = value.strip()
        if value or info.field_name == "kafka_topic":
            _check_topic_name(value)
        return value

    @field_validator("kafka_dlq_topic")
    @classmethod
    def _dlq_topic_name(cls, value: str) -> str:
        value = value.strip()
        if value:  # empty: derived from KAFKA_TOPIC
            _check_topic_name(value)
        return value

    @field_validator("kafka_security_protocol")
    @classmethod
    def _security_protocol(cls, value: str) -> str:
        protocol = value.strip().upper()
        if protocol not in SECURITY_PROTOCOLS:
            raise ValueError(f"{value!r} is not one of {', '.join(SECURITY_PROTOCOLS)}")
        return protocol

    @field_validator("kafka_sasl_mechanism")
    @classmethod
    def _sasl_mechanism(cls, value: str) -> str:
        mechanism = value.strip().upper()
        if mechanism and mechanism not in SASL_MECHANISMS:
            raise ValueError(f"{value!r} is not one of {', '.join(SASL_MECHANISMS)}")
        return mechanism

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _bootstrap_servers(cls, value: str) -> str:
        servers = [part.strip() for part in value.split(",") if part.strip()]
        for server in servers:
            found = BOOTSTRAP_SERVER.match(server)
            if not found or not 0 < int(found.group(1) or 9092) < 65536:
                raise ValueError(
                    f"{server!r} is not host:port (a comma-separated list of brokers, "
                    "e.g. broker-1:9092,broker-2:9092; no URL scheme or path)"
                )
        return ",".join(servers)

    @field_validator("http_bind_address")
    @classmethod
    def _bind_address(cls, value: str) -> str:
        value = value.strip()
        if not value or not re.fullmatch(r"[A-Za-z0-9._:-]+|\[[0-9A-Fa-f:.]+\]", value):
            raise ValueError(f"{value!r} is not an IP address or host name to listen on")
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        level = value.upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError("must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return level

    @field_validator("librdkafka", mode="before")
    @classmethod
    def _stringify_properties(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {
                str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in value.items()
            }
        return value

    @model_validator(mode="after")
    def _derived_defaults(self) -> Settings:
        if not self.kafka_dlq_topic:
            self.kafka_dlq_topic = f"{self.kafka_topic}.dlq"
        return self

    # --- secrets among the pass-through properties ----------------------------------------
    def librdkafka_secrets(self) -> list[str]:
        """Values of pass-through properties that hold secrets (``ssl.key.password``,
        ``sasl.oauthbearer.client.secret``, PEM keys, ...): redacted from logs and reprs."""
        return [
            value
            for name, value in self.librdkafka.items()
            if value and any(word in name for word in SECRET_PROPERTY_WORDS)
        ]

    def __repr_args__(self) -> Any:
        hidden = set(self.librdkafka_secrets())
        for name, value in super().__repr_args__():
            if name == "librdkafka" and hidden:
                yield name, {k: "**********" if v in hidden else v for k, v in value.items()}
            elif name in ("learnosity_base_url", "schema_registry_url"):
                yield name, mask_url(str(value))  # credentials in a URL stay out of reprs
            else:
                yield name, value

    # --- derived values ----------------------------------------------------------------
    @property
    def state_topic(self) -> str:
        return f"{self.connector_name}.state"

    @property
    def transactional_id(self) -> str:
        return f"{self.connector_name}.producer"

    @property
    def endpoint_url(self) -> str:
        return f"{self.learnosity_base_url}/{self.learnosity_api_version}/sessions/scores"

    def kafka_client_config(self) -> dict[str, str]:
        """librdkafka properties every client of ours shares: brokers, security, overrides."""
        config: dict[str, str] = {
            "bootstrap.servers": self.kafka_bootstrap_servers,
            "security.protocol": self.kafka_security_protocol,
        }
        if self.kafka_sasl_mechanism:
            config["sasl.mechanism"] = self.kafka_sasl_mechanism
        if self.kafka_sasl_username:
            config["sasl.username"] = self.kafka_sasl_username
        if self.kafka_sasl_password.get_secret_value():
            config["sasl.password"] = self.kafka_sasl_password.get_secret_value()
        if self.kafka_ssl_ca_location:
            config["ssl.ca.location"] = self.kafka_ssl_ca_location
        config.update(self.librdkafka)
        return config

    def kafka_problems(self) -> list[str]:
        """What is missing or contradictory for commands that talk to Kafka and the
        schema registry (``fetch`` does not)."""
        return [text for _fields, text in self.problems(need_kafka=True)]

    def problems(self, *, need_kafka: bool) -> list[Problem]:
        """Problems no single setting shows: settings that contradict each other, or that
        a command talking to Kafka needs. Each with the settings it is about."""
        found = _topic_problems(self)
        if need_kafka:
            found += _kafka_problems(self)
            found += _registry_problems(self)
        return found

    def file_problems(self) -> list[Problem]:
        """Files the settings name that this machine does not have (for the commands that
        would open them: the Kafka clients' CA, the registry's TLS files)."""
        found = _missing_file("kafka_ssl_ca_location", self.kafka_ssl_ca_location)
        if self.schema_registry_url:
            for name in (
                "schema_registry_ssl_ca_location",
                "schema_registry_ssl_certificate_location",
                "schema_registry_ssl_key_location",
            ):
                found += _missing_file(name, str(getattr(self, name)))
        return found

    # --- sources -----------------------------------------------------------------------
    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        yaml_settings = _YamlValuesSource(settings_cls)
        return init_settings, env_settings, dotenv_settings, file_secret_settings, yaml_settings


#: a problem and the settings (field names) it is about
Problem = tuple[tuple[str, ...], str]


def _check_topic_name(name: str) -> None:
    if not name:
        raise ValueError("must not be empty")
    if name in (".", "..") or not TOPIC_NAME.match(name):
        raise ValueError(
            f"{name!r} is not a Kafka topic name (1 to 249 of A-Z a-z 0-9 . _ -, not '.' or '..')"
        )


def _topic_problems(settings: Settings) -> list[Problem]:
    """Every topic the connector writes is its own: events written into the state topic
    (or the DLQ) would break every later start."""
    topics: list[tuple[str, str, str]] = [
        ("kafka_topic", "KAFKA_TOPIC", settings.kafka_topic),
        ("kafka_dlq_topic", "KAFKA_DLQ_TOPIC", settings.kafka_dlq_topic),
    ]
    if settings.kafka_table_topic:
        topics.append(("kafka_table_topic", "KAFKA_TABLE_TOPIC", settings.kafka_table_topic))
    found: list[Problem] = []
    try:
        _check_topic_name(settings.kafka_dlq_topic)
    except ValueError as exc:
        found.append((("kafka_topic", "kafka_dlq_topic"), f"KAFKA_DLQ_TOPIC: {exc}"))
    state = settings.state_topic
    for i, (field, label, name) in enumerate(topics):
        if _same_topic(name, state):
            found.append(
                (
                    (field, "connector_name"),
                    f"{label}: {name!r} is the connector's state topic (<CONNECTOR_NAME>.state, "
                    f"CONNECTOR_NAME={settings.connector_name}); events written there would "
                    f"break every later start: choose another {label} or CONNECTOR_NAME",
                )
            )
        for other_field, other_label, other in topics[:i]:
            if _same_topic(name, other):
                found.append(
                    (
                        (field, other_field),
                        f"{label}: {name!r} is the same topic as {other_label} {other!r}; "
                        "each must be its own (Kafka treats '.' and '_' in names as the same)",
                    )
                )
    return found


def _same_topic(one: str, other: str) -> bool:
    """Kafka refuses topics whose names differ only in '.' against '_' (metric names)."""
    return one.replace(".", "_") == other.replace(".", "_")


def _kafka_problems(settings: Settings) -> list[Problem]:
    protocol = settings.kafka_security_protocol
    mechanism = settings.kafka_sasl_mechanism
    found: list[Problem] = []
    if not settings.kafka_bootstrap_servers.strip():
        found.append(
            (
                ("kafka_bootstrap_servers",),
                "KAFKA_BOOTSTRAP_SERVERS: required (host:port of your brokers)",
            )
        )
    sasl_fields = ("kafka_security_protocol", "kafka_sasl_mechanism")
    if protocol.startswith("SASL"):
        if not mechanism:
            found.append(
                (
                    sasl_fields,
                    f"KAFKA_SASL_MECHANISM: required when KAFKA_SECURITY_PROTOCOL is {protocol}",
                )
            )
        if mechanism in PASSWORD_MECHANISMS:
            for name, value in (
                ("kafka_sasl_username", settings.kafka_sasl_username),
                ("kafka_sasl_password", settings.kafka_sasl_password.get_secret_value()),
            ):
                if not value:
                    found.append(
                        ((*sasl_fields, name), f"{name.upper()}: required for SASL {mechanism}")
                    )
    else:
        given = [
            name.upper()
            for name, value in (
                ("kafka_sasl_mechanism", mechanism),
                ("kafka_sasl_username", settings.kafka_sasl_username),
                ("kafka_sasl_password", settings.kafka_sasl_password.get_secret_value()),
            )
            if value
        ]
        if given:
            found.append(
                (
                    ("kafka_security_protocol", "kafka_sasl_mechanism"),
                    f"{', '.join(given)}: set, but KAFKA_SECURITY_PROTOCOL={protocol} does not "
                    "use SASL, so they would be ignored (SASL_SSL or SASL_PLAINTEXT?)",
                )
            )
    if settings.kafka_ssl_ca_location and "SSL" not in protocol:
        found.append(
            (
                ("kafka_security_protocol", "kafka_ssl_ca_location"),
                f"KAFKA_SSL_CA_LOCATION: set, but KAFKA_SECURITY_PROTOCOL={protocol} does not "
                "use TLS, so it would be ignored (SSL or SASL_SSL?)",
            )
        )
    if settings.kafka_delivery is Delivery.EXACTLY_ONCE:
        raw = settings.librdkafka.get("transaction.timeout.ms", str(DEFAULT_TRANSACTION_TIMEOUT_MS))
        if raw.strip().isdigit() and settings.kafka_commit_interval_ms >= int(raw):
            found.append(
                (
                    ("kafka_commit_interval_ms", "librdkafka"),
                    f"KAFKA_COMMIT_INTERVAL_MS: {settings.kafka_commit_interval_ms} is not below "
                    f"the transaction timeout ({raw} ms, librdkafka transaction.timeout.ms): "
                    "the broker would abort every transaction before it is committed",
                )
            )
    return found


def _registry_problems(settings: Settings) -> list[Problem]:
    found: list[Problem] = []
    username = settings.schema_registry_username
    password = settings.schema_registry_password.get_secret_value()
    token = settings.schema_registry_bearer_token.get_secret_value()
    if not settings.schema_registry_url:
        given = [
            name.upper()
            for name, value in (
                ("schema_registry_username", username),
                ("schema_registry_password", password),
                ("schema_registry_bearer_token", token),
                ("schema_registry_ssl_ca_location", settings.schema_registry_ssl_ca_location),
                (
                    "schema_registry_ssl_certificate_location",
                    settings.schema_registry_ssl_certificate_location,
                ),
                ("schema_registry_ssl_key_location", settings.schema_registry_ssl_key_location),
            )
            if value
        ]
        if given:
            found.append(
                (
                    ("schema_registry_url",),
                    f"{', '.join(given)}: set, but SCHEMA_REGISTRY_URL is empty, so events would "
                    "be written without the registry (set SCHEMA_REGISTRY_URL, or remove them)",
                )
            )
        return found
    if password and not username:
        found.append(
            (
                ("schema_registry_username",),
                "SCHEMA_REGISTRY_USERNAME: required with SCHEMA_REGISTRY_PASSWORD",
            )
        )
    if token and (username or password):
        found.append(
            (
                ("schema_registry_bearer_token", "schema_registry_username"),
                "SCHEMA_REGISTRY_BEARER_TOKEN: set together with SCHEMA_REGISTRY_USERNAME/"
                "PASSWORD; use one of basic or bearer authentication",
            )
        )
    certificate = settings.schema_registry_ssl_certificate_location
    key = settings.schema_registry_ssl_key_location
    if bool(certificate) != bool(key):
        missing = (
            "SCHEMA_REGISTRY_SSL_KEY_LOCATION"
            if certificate
            else ("SCHEMA_REGISTRY_SSL_CERTIFICATE_LOCATION")
        )
        found.append(
            (
                ("schema_registry_ssl_certificate_location", "schema_registry_ssl_key_location"),
                f"{missing}: required for a client certificate (mutual TLS needs both)",
            )
        )
    if settings.schema_registry_use_latest_version and settings.schema_registry_auto_register:
        found.append(
            (
                ("schema_registry_use_latest_version", "schema_registry_auto_register"),
                "SCHEMA_REGISTRY_USE_LATEST_VERSION: true needs SCHEMA_REGISTRY_AUTO_REGISTER="
                "false (encode with the registered schema, or register ours: not both)",
            )
        )
    return found


def _missing_file(field: str, path: str) -> list[Problem]:
    if not path:
        return []
    target = Path(path)
    if not target.exists():
        return [((field,), f"{field.upper()}: {path} does not exist")]
    if target.is_file() and not os.access(target, os.R_OK):
        return [((field,), f"{field.upper()}: {path} cannot be read (permissions)")]
    return []


#: the YAML file's values while load_settings builds a Settings (a source cannot take args)
_yaml_values: ContextVar[dict[str, Any]] = ContextVar("_yaml_values", default={})  # noqa: B039


class _YamlValuesSource(PydanticBaseSettingsSource):
    """The lowest-priority source: the ``--config`` YAML file, keys matched case-blind."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return _yaml_values.get().get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        values = _yaml_values.get()
        return {name: values[name] for name in self.settings_cls.model_fields if name in values}


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError([f"--config {path}: cannot be read ({exc.strerror})"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"--config {path}: not valid YAML ({exc})"]) from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError([f"--config {path}: must be a mapping of setting names to values"])
    return {str(k).lower(): v for k, v in loaded.items()}


def librdkafka_from_env(environ: Mapping[str, str]) -> dict[str, str]:
    """``LIBRDKAFKA_LINGER_MS=20`` → ``{"linger.ms": "20"}`` (``__`` stands for ``_``)."""
    props = {}
    for name, value in environ.items():
        if name.upper().startswith(LIBRDKAFKA_PREFIX) and len(name) > len(LIBRDKAFKA_PREFIX):
            raw = name[len(LIBRDKAFKA_PREFIX) :].lower()
            props[raw.replace("__", "\0").replace("_", ".").replace("\0", "_")] = value
    return props


def _secret_files(directory: Path) -> dict[str, str]:
    """``LIBRDKAFKA_*`` files of a secrets directory: name → content, stripped as the
    other secret files are."""
    found = {}
    for path in directory.iterdir():
        if path.name.upper().startswith(LIBRDKAFKA_PREFIX) and path.is_file():
            try:
                found[path.name] = path.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                problem = f"secret file {path}: unreadable ({type(exc).__name__})"
                raise ConfigError([problem]) from None
    return found


def _env_name(loc: tuple[int | str, ...]) -> str:
    return str(loc[0]).upper() if loc else "configuration"


def format_validation_error(error: ValidationError) -> list[str]:
    """One plain line per problem, named by the env var, never echoing a secret's value."""
    lines = []
    for problem in error.errors():
        name = _env_name(problem["loc"])
        if problem["type"] == "missing":
            lines.append(f"{name}: required but not set")
            continue
        message = problem["msg"].removeprefix("Value error, ")
        lines.append(f"{name}: {message}")
    return lines


#: settings whose problems make librdkafka's own verdict on the configuration redundant
_KAFKA_FIELDS = frozenset(
    {
        "kafka_bootstrap_servers",
        "kafka_security_protocol",
        "kafka_sasl_mechanism",
        "kafka_sasl_username",
        "kafka_sasl_password",
        "kafka_ssl_ca_location",
        "kafka_delivery",
        "kafka_commit_interval_ms",
        "connector_name",
        "librdkafka",
    }
)


def load_settings(
    config_file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    secrets_dir: str | Path | None = None,
    need_kafka: bool = False,
    check_environment: bool = False,
    kafka_check: Callable[[Settings, bool], list[str]] | None = None,
) -> Settings:
    """Build and validate the settings, or raise ConfigError listing every problem.

    Priority: ``overrides`` > environment > ``.env`` > secret files > YAML > defaults.
    Every problem is found in one pass: each setting's own, then those between settings
    (judged with the settings that are valid), then, with ``need_kafka``, what the
    commands talking to Kafka and the registry need. ``check_environment`` adds what
    only this machine can tell: the files the settings name exist; ``kafka_check``
    (``connector.kafka.config_check.config_problems``) what librdkafka refuses: each
    ``LIBRDKAFKA_*`` property always, the client configuration as a whole (the second
    argument) only when no other problem concerns the Kafka settings.
    """
    environ = os.environ
    yaml_values = _read_yaml(Path(config_file)) if config_file else {}
    yaml_librdkafka = yaml_values.pop("librdkafka", None) or {}
    if not isinstance(yaml_librdkafka, dict):
        raise ConfigError([f"--config {config_file}: 'librdkafka' must be a mapping"])
    directory = Path(secrets_dir) if secrets_dir else None
    if directory is None and environ.get("CONNECTOR_SECRETS_DIR"):
        directory = Path(environ["CONNECTOR_SECRETS_DIR"])
    if directory is None and DEFAULT_SECRETS_DIR.is_dir():
        directory = DEFAULT_SECRETS_DIR
    if directory is not None and not directory.is_dir():
        raise ConfigError([f"secrets directory {directory}: does not exist"])

    # pass-through properties: environment > secret files (e.g. ssl.key.password mounted
    # from a Kubernetes Secret as LIBRDKAFKA_SSL_KEY_PASSWORD) > YAML
    from_files = librdkafka_from_env(_secret_files(directory)) if directory else {}
    init: dict[str, Any] = {
        "librdkafka": {**yaml_librdkafka, **from_files, **librdkafka_from_env(environ)}
    }
    init.update({k.lower(): v for k, v in (overrides or {}).items() if v is not None})

    token = _yaml_values.set(yaml_values)
    try:
        settings, lines, failed = _build(directory, init)
    finally:
        _yaml_values.reset(token)
    if settings is not None:
        found = settings.problems(need_kafka=need_kafka)
        if check_environment:
            found += settings.file_problems()
        found = [(fields, text) for fields, text in found if not failed.intersection(fields)]
        lines += [text for _fields, text in found]
        about_kafka = failed.union(*(fields for fields, _text in found)) & _KAFKA_FIELDS
        if kafka_check is not None and need_kafka:
            lines += kafka_check(settings, not about_kafka)
    if lines or settings is None:
        raise ConfigError(lines or ["configuration: cannot be parsed"])
    return settings


def _build(
    directory: Path | None, init: dict[str, Any]
) -> tuple[Settings | None, list[str], set[str]]:
    """Settings, the problems of single settings, and the fields that had one. With
    problems, the settings are built again with stand-ins for the failed fields, so the
    problems between the other settings can be found in the same pass."""
    try:
        return Settings(_secrets_dir=directory, **init), [], set()  # type: ignore[call-arg]
    except ValidationError as exc:
        lines = format_validation_error(exc)
        failed = {str(problem["loc"][0]) for problem in exc.errors() if problem["loc"]}
    except SettingsError as exc:  # a value a source could not even decode (e.g. bad JSON)
        field = re.search(r'field "(\w+)"', str(exc))
        name = field.group(1).upper() if field else "configuration"
        return None, [f"{name}: cannot be parsed"], {name.lower()}
    stand_ins = {name: _stand_in(name) for name in failed if name in Settings.model_fields}
    try:
        again = Settings(_secrets_dir=directory, **{**init, **stand_ins})  # type: ignore[call-arg]
    except (ValidationError, SettingsError):
        return None, lines, failed
    return again, lines, failed


def _stand_in(name: str) -> Any:
    """A valid value for a field whose own value failed: its default, or a placeholder."""
    field = Settings.model_fields[name]
    if not field.is_required():
        return field.get_default(call_default_factory=True)
    return "stand-in"
