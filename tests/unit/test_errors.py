"""Errors cross from the fetch process to the runner by pickle, and must arrive unchanged."""

from __future__ import annotations

import pickle

import pytest

from connector import errors
from connector.errors import (
    ConfigError,
    ConnectorError,
    FatalError,
    InvalidRecordError,
    RateLimitedError,
    SourceFatalError,
    TransientError,
)


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
