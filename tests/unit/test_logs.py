"""Log lines: JSON with stable fields, secrets redacted by construction, repeats limited."""

import io
import json
import logging

from connector.observability.logs import (
    JsonFormatter,
    RepeatFilter,
    TextFormatter,
    configure_logging,
    register_secret,
)


def record(msg: str, level: int = logging.WARNING, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("connector.test", level, __file__, 1, msg, None, None)
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


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


def test_configure_logging_writes_json_to_the_stream() -> None:
    stream = io.StringIO()
    configure_logging("INFO", "json", stream)
    logging.getLogger("connector.x").info("hello", extra={"n": 1})
    logging.getLogger("connector.x").debug("hidden")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(entry["event"], entry["n"]) for entry in lines] == [("hello", 1)]
