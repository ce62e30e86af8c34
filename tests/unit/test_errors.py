"""Errors: they cross from the fetch process to the runner by pickle and must arrive
unchanged; and every command ends every failure with one line."""

from __future__ import annotations

import argparse
import logging
import pickle

import pytest

from connector import cli, errors
from connector.errors import (
    ConfigError,
    ConnectorError,
    FatalError,
    InvalidRecordError,
    KafkaFatalError,
    RateLimitedError,
    RetriableError,
    SourceFatalError,
    TransientError,
    one_line,
)
from connector.observability.logs import register_secret


@pytest.mark.parametrize(
    "error",
    [
        ConfigError(["LEARNOSITY_CONSUMER_KEY: missing", "KAFKA_TOPIC: empty"]),
        RateLimitedError("429 from the Data API", retry_after=3.5),
        TransientError("read timeout", reason="timeout"),
        SourceFatalError("41003: signature refused", 41003, 401),
        InvalidRecordError("score: a string", reason="wrong_type"),
        FatalError("the fetcher failed"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_an_error_survives_pickling_unchanged(error: ConnectorError) -> None:
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is type(error)
    assert str(back) == str(error)
    assert back.args == error.args
    assert vars(back) == vars(error)


def test_every_error_class_pickles() -> None:
    classes = [
        value
        for value in vars(errors).values()
        if isinstance(value, type) and issubclass(value, ConnectorError)
    ]
    assert len(classes) >= 10
    for cls in classes:
        error = cls.__new__(cls)
        error.args = ("message",)
        assert str(pickle.loads(pickle.dumps(error))) == "message"


# --- how a command ends: one line, never a traceback unless LOG_LEVEL=DEBUG ---------------------
class FakeCommand:
    """A command module whose ``run`` raises what the test gives it."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def configure(self, parser: argparse.ArgumentParser) -> None:
        return None

    def run(self, args: argparse.Namespace) -> int:
        raise self.error


def ends_with(
    error: BaseException,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    log_level: str = "INFO",
) -> tuple[int, list[str]]:
    monkeypatch.setattr(cli, "_load", lambda _name: FakeCommand(error))
    monkeypatch.setenv("LOG_LEVEL", log_level)
    logging.getLogger().setLevel(logging.INFO)
    code = cli.main(["status"])
    captured = capsys.readouterr()
    assert captured.out == ""
    return code, captured.err.splitlines()


def chained(outer: Exception, inner: BaseException) -> Exception:
    try:
        try:
            raise inner
        except BaseException as exc:
            raise outer from exc
    except Exception as exc:
        return exc


@pytest.mark.parametrize(
    ("error", "line"),
    [
        (FatalError("fenced"), "error: fenced"),
        (
            RetriableError("no answer from Kafka at b:9092 within 15 s: refused"),
            "error: no answer from Kafka at b:9092 within 15 s: refused",
        ),
        (
            chained(
                TransientError("connection problem with https://x.invalid/v1: ConnectError"),
                OSError("[Errno -2] Name or service not known"),
            ),
            "error: connection problem with https://x.invalid/v1: ConnectError "
            "([Errno -2] Name or service not known)",
        ),
        (ValueError("bad\nthing  here"), "error: ValueError: bad thing here"),
        (
            KafkaFatalError("Kafka at https://user:pw@b:9092 refused us"),
            "error: Kafka at https://***@b:9092 refused us",
        ),
    ],
    ids=["fatal", "retriable", "cause", "unexpected", "url"],
)
def test_every_failure_ends_with_one_line_and_exit_1(
    error: Exception,
    line: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A RetriableError (an unreachable broker) or anything unexpected used to end in a
    traceback; now every failure is one line."""
    code, lines = ends_with(error, capsys, monkeypatch)
    assert (code, lines) == (1, [line])


def test_the_traceback_only_with_log_level_debug(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    error = chained(RetriableError("it failed"), OSError("deep cause"))
    code, lines = ends_with(error, capsys, monkeypatch, log_level="DEBUG")
    assert code == 1
    assert lines[0] == "Traceback (most recent call last):"
    assert "OSError: deep cause" in lines
    assert lines[-1] == "error: it failed (deep cause)"


def test_configuration_problems_one_line_each_exit_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    register_secret("cfg-secret-§")
    error = ConfigError(["A: first", "B: second\nline", "C: has cfg-secret-§"])
    code, lines = ends_with(error, capsys, monkeypatch)
    assert (code, lines) == (
        2,
        ["config error: A: first", "config error: B: second line", "config error: C: has ***"],
    )


def test_one_line() -> None:
    assert one_line("a\n  b\tc\r\n") == "a b c"
