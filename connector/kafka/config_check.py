"""The Kafka client configuration, judged by librdkafka before any client connects.

A client is made with the configuration (without ``bootstrap.servers``, so nothing
connects) and destroyed: librdkafka refuses unknown properties, bad values, missing or
unreadable certificates and contradictions (``message.timeout.ms`` above
``transaction.timeout.ms``, say) at that moment, in its own words.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaException, Producer

from connector.kafka.producer import PRODUCER_DEFAULTS
from connector.settings import Delivery, Settings


class _Silent:
    def log(self, level: int, fmt: str, *args: Any) -> None:
        return None


def _librdkafka_refuses(config: dict[str, Any]) -> str | None:
    """librdkafka's complaint about ``config`` (a client is made, nothing connects)."""
    conf = {k: v for k, v in config.items() if k != "bootstrap.servers"}
    try:
        Producer({**conf, "logger": _Silent()})
    except KafkaException as exc:
        return str(exc.args[0].str()).removeprefix("Failed to create producer: ")
    except (TypeError, ValueError) as exc:
        return str(exc)
    return None


def env_name(prop: str) -> str:
    """The variable that sets librdkafka ``prop``: ``linger.ms`` → LIBRDKAFKA_LINGER_MS."""
    return "LIBRDKAFKA_" + prop.replace("_", "__").replace(".", "_").upper()


def config_problems(settings: Settings, whole: bool = True) -> list[str]:
    """What librdkafka refuses, one line each, before any client connects: each
    ``LIBRDKAFKA_*`` property on its own (an unknown name, a bad value), then, with
    ``whole``, the producer ``run`` makes, as a whole (contradictions, certificates)."""
    secrets = {*settings.librdkafka_secrets(), settings.kafka_sasl_password.get_secret_value()}

    def hide(text: str) -> str:
        for secret in sorted(filter(None, secrets), key=len, reverse=True):
            text = text.replace(secret, "***")
        return text

    problems = []
    for prop, value in sorted(settings.librdkafka.items()):
        if refused := _librdkafka_refuses({prop: value}):
            shown = "***" if value in secrets else repr(value)
            problems.append(f"{env_name(prop)}: librdkafka refuses {prop}={shown}: {hide(refused)}")
    if problems or not whole:
        return problems
    config: dict[str, Any] = {**PRODUCER_DEFAULTS, **settings.kafka_client_config()}
    only_errors = str(config["delivery.report.only.error"]).lower() in ("true", "1")
    config["delivery.report.only.error"] = only_errors
    if settings.kafka_delivery is Delivery.EXACTLY_ONCE:
        config["transactional.id"] = settings.transactional_id
    if refused := _librdkafka_refuses(config):
        problems.append(f"Kafka client settings: librdkafka refuses them: {hide(refused)}")
    return problems
