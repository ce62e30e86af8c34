"""What every command that reads settings does first: load them, set up logging."""

from __future__ import annotations

import argparse
from typing import Any

from connector.observability.logs import configure_logging, register_secret
from connector.settings import Settings, load_settings


def load_for_command(
    args: argparse.Namespace, *, need_kafka: bool, overrides: dict[str, Any] | None = None
) -> Settings:
    """Validate the settings (raises ConfigError listing every problem), then log with them."""
    settings = load_settings(
        getattr(args, "config", None),
        overrides,
        secrets_dir=getattr(args, "secrets_dir", None),
        need_kafka=need_kafka,
    )
    setup_logging(settings)
    return settings


def setup_logging(settings: Settings) -> None:
    """Make the settings' secrets unprintable, then log as they say (each process once)."""
    register_settings_secrets(settings)
    configure_logging(settings.log_level, settings.log_format.value)


def register_settings_secrets(settings: Settings) -> None:
    """Every secret the settings hold, for the log redaction: the secret settings and the
    pass-through librdkafka properties that hold secrets."""
    for secret in (
        settings.learnosity_consumer_secret,
        settings.kafka_sasl_password,
        settings.schema_registry_password,
    ):
        register_secret(secret.get_secret_value())
    for value in settings.librdkafka_secrets():
        register_secret(value)
