"""``learnosity-connector check``: is everything this connector needs reachable and right?

One line per check, ``OK`` or ``FAIL`` with the problem in plain words and what was tried
(the Data API URL, the broker addresses, the registry URL); exit 1 if any check failed,
2 for invalid configuration (every problem listed, nothing reached). It changes
nothing: no topic is created, no cursor moved, no schema registered. Every check runs,
whatever the one before it did.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from connector.cli import add_config_options, describe
from connector.commands.common import load_for_command
from connector.errors import ConnectorError
from connector.kafka.admin import describe_topics
from connector.kafka.serde import build_encoder
from connector.learnosity.client import DataApiClient
from connector.learnosity.paging import base_params
from connector.observability.logs import redact
from connector.settings import Settings


def configure(parser: argparse.ArgumentParser) -> None:
    add_config_options(parser)


def check_learnosity(settings: Settings) -> str:
    client = DataApiClient.from_settings(settings)
    try:
        params = {**base_params(settings), "limit": 1}
        page = client.fetch(params, max_attempts=2)
    except ConnectorError as exc:
        raise ConnectorError(
            f"a signed request to {settings.endpoint_url} failed: {describe(exc)}"
        ) from exc
    finally:
        client.close()
    return f"a signed request to {settings.endpoint_url} was answered ({len(page.records)} record)"


def check_kafka(settings: Settings) -> str:
    topics = describe_topics(
        settings.kafka_client_config(),
        [settings.kafka_topic, settings.kafka_dlq_topic, settings.state_topic],
    )
    notes = []
    for name, info in topics.items():
        if info is None:
            notes.append(f"{name} will be created")
        elif name == settings.state_topic and not info.compacted:
            raise ConnectorError(
                f"state topic {name!r} is not compacted (cleanup.policy={info.cleanup_policy!r})"
            )
        else:
            notes.append(f"{name} exists ({info.partitions} partitions)")
    return f"Kafka at {settings.kafka_bootstrap_servers} answered: " + "; ".join(notes)


def check_registry(settings: Settings) -> str:
    if not settings.schema_registry_url:
        return "not used: events are Avro single-object encoded (SCHEMA_REGISTRY_URL is empty)"
    return build_encoder(settings).check()


def run(args: argparse.Namespace) -> int:
    settings = load_for_command(args, need_kafka=True)
    print("OK    configuration")
    checks: list[tuple[str, Callable[[Settings], str]]] = [
        ("learnosity", check_learnosity),
        ("kafka", check_kafka),
        ("schema registry", check_registry),
    ]
    failed = 0
    for name, check in checks:
        try:
            print(f"OK    {name}: {redact(check(settings))}", flush=True)
        except Exception as exc:  # noqa: BLE001 - a check that breaks is a FAIL line, the rest still run
            failed += 1
            print(f"FAIL  {name}: {describe(exc)}", flush=True)
    return 1 if failed else 0
