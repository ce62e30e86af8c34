"""Request signing against the SDK's published test vector and an independent HMAC."""

import hashlib
import hmac
import json

import pytest
from learnosity_sdk.request import Init, init
from pydantic import SecretStr

from connector.learnosity.signing import sdk_headers, signed_form

# The "02" test vector published in the official SDKs' own unit tests (Python, PHP, Java, JS)
VECTOR_KEY = "yis0TYCu7U9V4o7M"
VECTOR_SECRET = "74c5fd430cf1242a527f6223aebd42d30464be22"
VECTOR_TIMESTAMP = "20140626-0528"
VECTOR_SIGNATURE = "e19c8a62fba81ef6baf2731e2ab0512feaf573ca5ca5929c2ee9a77303d2e197"


def independent_signature(secret: str, *parts: str) -> str:
    digest = hmac.new(secret.encode(), "_".join(parts).encode(), hashlib.sha256).hexdigest()
    return f"$02${digest}"


def test_vector_matches_an_independent_hmac() -> None:
    expected = independent_signature(
        VECTOR_SECRET, VECTOR_KEY, "localhost", VECTOR_TIMESTAMP, '{"limit":100}', "get"
    )
    assert expected == f"$02${VECTOR_SIGNATURE}"


def test_signed_form_reproduces_the_published_vector(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(init, "format_utc_time", lambda: VECTOR_TIMESTAMP)
    Init.disable_telemetry()
    try:
        form = signed_form(VECTOR_KEY, SecretStr(VECTOR_SECRET), "localhost", {"limit": 100})
    finally:
        Init.enable_telemetry()
    security = json.loads(form["security"])
    assert security["signature"] == f"$02${VECTOR_SIGNATURE}"
    assert form["request"] == '{"limit":100}'
    assert form["action"] == "get"


def test_each_request_is_signed_over_exactly_what_is_sent() -> None:
    form = signed_form("key", SecretStr("s3cr3t-value"), "example.org", {"sort": "asc", "x": "é"})
    security = json.loads(form["security"])
    request = json.loads(form["request"])
    assert request["meta"]["sdk"]["lang"] == "python"  # SDK telemetry, signed too
    assert "é" in form["request"]  # non-ASCII kept as is, as the service signs it
    assert security["signature"] == independent_signature(
        "s3cr3t-value", "key", "example.org", security["timestamp"], form["request"], "get"
    )
    assert "s3cr3t-value" not in json.dumps(form)


def test_sdk_headers_name_the_consumer_and_action() -> None:
    headers = sdk_headers("key", "https://data.learnosity.com/v2025.2.LTS/sessions/scores")
    assert headers["X-Learnosity-Consumer"] == "key"
    assert headers["X-Learnosity-Action"] == "get_/sessions/scores"
    assert headers["X-Learnosity-SDK"].startswith("Python:")
