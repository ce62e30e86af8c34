"""``check`` runs every check whatever the one before it did, one line each."""

from __future__ import annotations

import argparse

import pytest

from connector.commands import check
from connector.errors import RetriableError
from connector.observability.logs import register_secret
from connector.settings import Settings


def test_a_check_that_breaks_is_a_fail_line_and_the_others_still_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing CA file used to crash ``check`` after ``OK configuration``, skipping the
    registry; an unexpected error is now one FAIL line like any other."""
    register_secret("check-§-secret")

    def breaks(_settings: Settings) -> str:
        raise FileNotFoundError(2, "No such file or directory", "/etc/ssl/missing.pem")

    def unreachable(_settings: Settings) -> str:
        raise RetriableError("no answer from Kafka at b:9092 within 15 s: refused")

    def fine(_settings: Settings) -> str:
        return "answered with check-§-secret at https://user:pw@registry:8081"

    monkeypatch.setattr(check, "load_for_command", lambda *_a, **_k: None)
    monkeypatch.setattr(check, "check_learnosity", breaks)
    monkeypatch.setattr(check, "check_kafka", unreachable)
    monkeypatch.setattr(check, "check_registry", fine)
    code = check.run(argparse.Namespace())
    assert code == 1
    assert capsys.readouterr().out.splitlines() == [
        "OK    configuration",
        "FAIL  learnosity: FileNotFoundError: [Errno 2] No such file or directory: "
        "'/etc/ssl/missing.pem'",
        "FAIL  kafka: no answer from Kafka at b:9092 within 15 s: refused",
        "OK    schema registry: answered with *** at https://***@registry:8081",
    ]
