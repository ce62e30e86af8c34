"""Log lines: JSON with stable fields, secrets redacted by construction, repeats limited."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from connector.observability.logs import (
    LIBRDKAFKA_LOGGER,
    JsonFormatter,
    RepeatFilter,
    TextFormatter,
    configure_logging,
    mask_url,
    redact,
    register_secret,
    spellings,
)

#: secrets an operator may really have: quotes, backslashes, tabs, unicode, 1 to 3 characters
ADVERSARIAL = [
    "pa\"ss\\wo\trd-ü-'x",
    'q"\\',  # three characters: a quote and a backslash
    "\t€",  # two: a tab and a non-ASCII character
    "§",  # one
    "%2F/+ &",  # what URL encoding changes
]


def record(msg: str, level: int = logging.WARNING, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("connector.test", level, __file__, 1, msg, None, None)
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


def strings(value: Any) -> Iterator[str]:
    """Every string inside a decoded JSON value, keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)
    else:
        yield str(value)


@pytest.fixture
def root_stream() -> Iterator[io.StringIO]:
    """The connector's logging, into a string; the test's own handlers restored after."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level, logging.getLogRecordFactory())
    stream = io.StringIO()
    configure_logging("DEBUG", "json", stream)
    yield stream
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])
    logging.setLogRecordFactory(saved[2])


def test_json_line_has_stable_fields_and_extras() -> None:
    line = json.loads(JsonFormatter().format(record("caught up", pages=3)))
    assert list(line)[:4] == ["ts", "level", "logger", "event"]
    assert line["event"] == "caught up" and line["pages"] == 3 and line["level"] == "warning"


def test_registered_secrets_are_redacted_everywhere() -> None:
    register_secret("tops3cret-abc")
    rec = record("failed with tops3cret-abc", detail="x tops3cret-abc y")
    for formatter in (JsonFormatter(), TextFormatter()):
        text = formatter.format(rec)
        assert "tops3cret-abc" not in text and "***" in text


@pytest.mark.parametrize("secret", ADVERSARIAL, ids=repr)
def test_adversarial_secrets_are_redacted_before_formatting(secret: str) -> None:
    """Quotes, backslashes and tabs are escaped by JSON; redacting the formatted line
    missed them. Redaction happens first, in every field, whatever the length."""
    register_secret(secret)
    try:
        raise RuntimeError(f"boom {secret!r} {json.dumps(secret)}")
    except RuntimeError:
        exc_info = sys.exc_info()
    rec = record(
        "auth failed for %s",
        detail=f"value {secret} and repr {secret!r}",
        nested={"inner": [secret, {"deep": f"<{secret}>"}]},
        url=f"https://user:{secret}@registry.example/path",
    )
    rec.args = (secret,)
    rec.exc_info = exc_info
    line = JsonFormatter().format(rec)
    decoded = json.loads(line)  # still one valid JSON object
    for text in strings(decoded):
        for form in spellings(secret):
            assert form not in text, (form, text)
    assert decoded["event"] == "auth failed for ***"
    assert json.dumps(secret)[1:-1] not in line  # the escaped spelling is not printed either
    text_line = TextFormatter().format(rec)
    body = text_line.split("connector.test: ", 1)[1]
    assert secret not in body and repr(secret)[1:-1] not in body


def test_short_secrets_are_redacted_too() -> None:
    """A secret shorter than 4 characters was never redacted; now every one is."""
    register_secret("Ω7")
    assert redact("token Ω7 end") == "token *** end"


def test_a_number_that_is_a_secret_is_redacted() -> None:
    register_secret("918273645")
    line = json.loads(JsonFormatter().format(record("x", pin=918273645, other=5)))
    assert line["pin"] == "***" and line["other"] == 5


def test_credentials_in_urls_are_masked_everywhere() -> None:
    text = "POST https://svc-key:svc%20secret@registry.example:8081/subjects and http://tok@h/x"
    assert redact(text) == "POST https://***@registry.example:8081/subjects and http://***@h/x"
    assert mask_url("https://u:p@h:1/a?b=c") == "https://***@h:1/a?b=c"
    assert mask_url("http://h:1/a") == "http://h:1/a"
    line = json.loads(JsonFormatter().format(record("calling", url="https://a:b@h/x")))
    assert line["url"] == "https://***@h/x"


def test_third_party_loggers_are_redacted_even_on_their_own_handler(
    root_stream: io.StringIO,
) -> None:
    """The record factory redacts the message itself, so a library's own handler (which
    our formatter never sees) cannot print a secret either."""
    register_secret("lib-secret-Ж")
    own = io.StringIO()
    library = logging.getLogger("some.library")
    handler = logging.StreamHandler(own)
    library.addHandler(handler)
    library.propagate = False
    try:
        library.warning("connecting with %s to %s", "lib-secret-Ж", "https://u:pw@host/")
    finally:
        library.removeHandler(handler)
        library.propagate = True
    assert own.getvalue().strip() == "connecting with *** to https://***@host/"
    logging.getLogger("httpx").warning("HTTP Request: POST https://k:lib-secret-Ж@r/x")
    line = json.loads(root_stream.getvalue().splitlines()[-1])
    assert line["event"] == "HTTP Request: POST https://***@r/x"


def test_repeated_warnings_are_dropped_then_counted() -> None:
    now = [0.0]
    repeat = RepeatFilter(window=60, clock=lambda: now[0])
    assert repeat.filter(record("stalled"))
    assert not repeat.filter(record("stalled"))
    assert not repeat.filter(record("stalled"))
    assert repeat.filter(record("other warning"))
    assert repeat.filter(record("stalled", level=logging.INFO))  # info is never limited
    now[0] = 61.0
    again = record("stalled")
    assert repeat.filter(again)
    assert vars(again)["repeats_suppressed"] == 2


def test_the_repeat_filter_keys_on_what_differs() -> None:
    """The same message with a different error is a different line: it used to be
    swallowed for a minute because the filter keyed on the message template only."""
    repeat = RepeatFilter(window=60, clock=lambda: 0.0)
    refused = "_TRANSPORT: Connect to ipv4#10.0.0.1:9092 failed: refused"
    auth = "_AUTHENTICATION: SASL authentication error: invalid credentials"
    assert repeat.filter(record("kafka client error", kafka_error=refused))
    assert repeat.filter(record("kafka client error", kafka_error=auth))
    assert not repeat.filter(record("kafka client error", kafka_error=refused))
    templated = record("retrying %s", detail=1)
    templated.args = ("init_transactions",)
    assert repeat.filter(templated)
    other = record("retrying %s", detail=1)
    other.args = ("commit_transaction",)
    assert repeat.filter(other)


def test_configure_logging_writes_json_to_the_stream() -> None:
    stream = io.StringIO()
    configure_logging("INFO", "json", stream)
    logging.getLogger("connector.x").info("hello", extra={"n": 1})
    logging.getLogger("connector.x").debug("hidden")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(entry["event"], entry["n"]) for entry in lines] == [("hello", 1)]


def test_librdkafka_debug_lifts_the_librdkafka_logger() -> None:
    stream = io.StringIO()
    configure_logging("INFO", "json", stream)
    assert not logging.getLogger(LIBRDKAFKA_LOGGER).isEnabledFor(logging.DEBUG)
    configure_logging("INFO", "json", stream, librdkafka_debug=True)
    assert logging.getLogger(LIBRDKAFKA_LOGGER).isEnabledFor(logging.DEBUG)
    configure_logging("INFO", "json", stream)
    assert not logging.getLogger(LIBRDKAFKA_LOGGER).isEnabledFor(logging.DEBUG)
