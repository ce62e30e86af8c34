"""What every command that reads settings does first: load them, set up logging."""

from __future__ import annotations

import argparse
from typing import Any
from urllib.parse import unquote, urlsplit

from connector.errors import ConnectorError, FatalError, SourceFatalError
from connector.observability.logs import configure_logging, mask_url, register_secret
from connector.settings import Settings, load_settings


def load_for_command(
    args: argparse.Namespace, *, need_kafka: bool, overrides: dict[str, Any] | None = None
) -> Settings:
    """Validate the settings (raises ConfigError listing every problem, all in one pass,
    including the files they name and what librdkafka refuses), then log with them."""
    kafka_check = None
    if need_kafka:
        from connector.kafka.config_check import config_problems  # noqa: PLC0415 - librdkafka

        kafka_check = config_problems
    settings = load_settings(
        getattr(args, "config", None),
        overrides,
        secrets_dir=getattr(args, "secrets_dir", None),
        need_kafka=need_kafka,
        check_environment=True,
        kafka_check=kafka_check,
    )
    setup_logging(settings)
    return settings


def setup_logging(settings: Settings) -> None:
    """Make the settings' secrets unprintable, then log as they say (each process once)."""
    register_settings_secrets(settings)
    configure_logging(
        settings.log_level,
        settings.log_format.value,
        librdkafka_debug=bool(settings.librdkafka.get("debug")),
    )


def register_settings_secrets(settings: Settings) -> None:
    """Every secret the settings hold, for the log redaction: the secret settings, the
    credentials in the URLs, and the pass-through librdkafka properties that hold secrets."""
    for secret in (
        settings.learnosity_consumer_secret,
        settings.kafka_sasl_password,
        settings.schema_registry_password,
        settings.schema_registry_bearer_token,
    ):
        register_secret(secret.get_secret_value())
    for url in (settings.schema_registry_url, settings.learnosity_base_url):
        for part in url_credentials(url):
            register_secret(part)
    for value in settings.librdkafka_secrets():
        register_secret(value)


def url_credentials(url: str) -> list[str]:
    """The password (and a user name standing alone, as a token) in ``url``'s user info."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    if parts.password:
        return [parts.password, unquote(parts.password)]
    if parts.username and "@" in parts.netloc:  # https://token@host
        return [parts.username, unquote(parts.username)]
    return []


def data_api_failure(endpoint: str, exc: ConnectorError, attempts: int | None = None) -> FatalError:
    """One line for a Data API request that failed for good: where, and why."""
    where = mask_url(endpoint)
    detail = str(exc).replace(f" with {where}", "").replace(f" talking to {where}", "")
    if isinstance(exc, SourceFatalError) and (exc.code or exc.http_status):
        return FatalError(f"the Data API at {where} refused the request: {detail}")
    if isinstance(exc, SourceFatalError):
        return FatalError(f"the Data API at {where}: {detail}")
    tried = f" after {attempts} attempts" if attempts else ""
    return FatalError(f"no usable answer from the Data API at {where}{tried}: {detail}")
