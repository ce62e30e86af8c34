"""The chart's ``settings`` map accepts exactly the connector's settings it has no value for.

Every field of ``Settings`` reaches the pod one way: a typed value of the chart (written
into the ConfigMap by the ``learnosity-connector.settings`` helper), a secret file
(the chart's Secret or an existing one, projected under the setting's name), the
``LIBRDKAFKA_<NAME>`` pass-through (``kafka.librdkafka``), or by its env var name in
``settings``, whose names ``values.schema.json`` enumerates. A setting added to the
connector without one of these fails here, as does a name the schema allows that the
connector does not know, or a secret the schema would let into the ConfigMap. No Helm
needed: the chart's files are read as text.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from pydantic import SecretStr

from connector.settings import Settings

CHART = Path(__file__).resolve().parents[2] / "helm" / "learnosity-connector"
HELPERS = (CHART / "templates" / "_helpers.tpl").read_text(encoding="utf-8")
DEPLOYMENT = (CHART / "templates" / "deployment.yaml").read_text(encoding="utf-8")
SCHEMA = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
ENV_NAME = re.compile(r'"([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)"')


def define(name: str) -> str:
    """The body of one ``{{- define "<name>" -}}`` block of _helpers.tpl."""
    match = re.search(
        r'{{-? define "' + re.escape(name) + r'" -?}}(.*?){{-? end }}\n\n', HELPERS + "\n\n", re.S
    )
    assert match, f"no define {name!r} in _helpers.tpl"
    return match.group(1)


def all_settings() -> set[str]:
    return {name.upper() for name in Settings.model_fields}


def secret_settings() -> set[str]:
    return {
        name.upper()
        for name, field in Settings.model_fields.items()
        if field.annotation is SecretStr
    }


def typed_by_the_chart() -> set[str]:
    """The names the settings helper writes from the chart's own values."""
    return set(ENV_NAME.findall(define("learnosity-connector.settings")))


def secret_files_of_the_chart() -> set[str]:
    """The names of the secret files: the chart's Secret's keys and each projected path."""
    stored = set(ENV_NAME.findall(define("learnosity-connector.secretData")))
    projected = set(re.findall(r"path: ([A-Z][A-Z0-9_]+)\s*$", DEPLOYMENT, re.M))
    return stored | projected


def schema_names() -> list[str]:
    names: list[str] = SCHEMA["properties"]["settings"]["propertyNames"]["enum"]
    return names


def test_the_settings_map_takes_exactly_the_settings_without_a_value_of_their_own() -> None:
    names = set(schema_names())
    typed = typed_by_the_chart()
    secrets = secret_settings()
    # the pass-through dict; its properties are kafka.librdkafka / librdkafkaSecrets
    passthrough = {"LIBRDKAFKA"}
    assert names <= all_settings(), f"the schema allows unknown settings: {names - all_settings()}"
    assert not names & typed, f"set through a typed value, not settings: {names & typed}"
    assert not names & secrets, f"secrets must not go through the ConfigMap: {names & secrets}"
    missing = all_settings() - names - typed - secrets - passthrough
    assert not missing, (
        f"settings the chart cannot set: {sorted(missing)}; add them to "
        "settings.propertyNames.enum in values.schema.json (a secret: to the chart's Secret)"
    )
    assert schema_names() == sorted(names), "keep the enum sorted"


def test_typed_values_and_secret_files_are_real_settings() -> None:
    """The other half: what the helper and the Deployment name, the connector knows."""
    typed = typed_by_the_chart()
    assert {"KAFKA_BOOTSTRAP_SERVERS", "SCHEMA_REGISTRY_URL", "HTTP_PORT"} <= typed
    # LIBRDKAFKA_<NAME>: pass-through properties the chart derives (client certificate)
    typed = {name for name in typed if not name.startswith("LIBRDKAFKA_")}
    assert typed <= all_settings(), typed - all_settings()
    files = {name for name in secret_files_of_the_chart() if not name.startswith("LIBRDKAFKA_")}
    assert files == secret_settings(), (
        f"secret settings without a file: {sorted(secret_settings() - files)}; "
        f"files that are no secret setting: {sorted(files - secret_settings())}"
    )


def test_the_reading_of_the_chart_finds_what_it_looks_for() -> None:
    """The control: the parsing above sees a name added to the helper or the schema."""
    assert "LEARNOSITY_CONSUMER_KEY" in typed_by_the_chart()
    assert "SCHEMA_REGISTRY_BEARER_TOKEN" in secret_files_of_the_chart()
    assert "LEARNOSITY_MAX_RESPONSE_BYTES" in schema_names()
    assert not ENV_NAME.findall('"lower_case" "NOUNDERSCORE"')
