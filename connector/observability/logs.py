"""Logging: one event per line, JSON by default, secrets redacted by construction.

Stable fields of a JSON line: ``ts`` (ISO 8601 UTC), ``level``, ``logger``, ``event``
(the message), then any ``extra={...}`` fields, then ``exc`` for exceptions.

Secrets: every value registered with ``register_secret`` (whatever its length or the
characters in it) is replaced by ``***`` in the message, in every extra field and in
the traceback, *before* the line is formatted, so JSON or repr escaping cannot hide a
secret from the redaction; its escaped spellings (repr, JSON, URL-encoded) are replaced
too. The user and password of a URL (``https://user:pass@host``) are masked wherever a
URL appears. The redaction sits on the one handler every logger reaches (the root's)
and in the log record factory, so third-party loggers' messages are redacted even on a
handler of their own.

A warning repeated within ``REPEAT_WINDOW_SECONDS`` is dropped and the number dropped is
reported on its next appearance; "repeated" means the same logger, the same rendered
message and the same extra fields, so a different error under the same message is shown.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, ClassVar, TextIO
from urllib.parse import quote, quote_plus

REPEAT_WINDOW_SECONDS = 60.0
REDACTED = "***"
#: loggers that chatter at INFO (one line per HTTP request, per broker connection)
NOISY_LOGGERS = ("httpx", "httpcore", "httpx2", "httpcore2", "librdkafka")
LIBRDKAFKA_LOGGER = "librdkafka"

#: attributes every LogRecord has; anything else on a record came from ``extra=``
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "taskName"}
)
#: ``scheme://user:password@`` or ``scheme://token@`` in any text
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/\s@?#]+@")


class _Registered:
    """The secrets registered, and every spelling of them, longest first (so a longer
    one is never half-replaced by a shorter one it contains)."""

    lock = threading.Lock()
    secrets: ClassVar[set[str]] = set()
    spellings: ClassVar[tuple[str, ...]] = ()


def spellings(secret: str) -> set[str]:
    """``secret`` and the ways it is written once escaped: inside a repr (either quote
    style), in JSON (ASCII or not), URL-encoded."""
    single = repr("\"'" + secret)[4:-1]  # in a repr quoted with ': ' and \ escaped
    forms = {
        secret,
        single,
        single.replace("\\'", "'"),  # in a repr quoted with ": ' left alone
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        quote(secret, safe=""),
        quote_plus(secret, safe=""),
    }
    return {form for form in forms if form}


def register_secret(value: str) -> None:
    """Make ``value`` unprintable in every log line from now on, however short."""
    if not value:
        return
    with _Registered.lock:
        if value in _Registered.secrets:
            return
        _Registered.secrets.add(value)
        forms = set(_Registered.spellings) | spellings(value)
        _Registered.spellings = tuple(sorted(forms, key=lambda s: (-len(s), s)))


def redact(text: str) -> str:
    """``text`` without any registered secret (in any spelling) or URL credentials."""
    for form in _Registered.spellings:
        if form in text:
            text = text.replace(form, REDACTED)
    if "@" in text:
        text = _URL_USERINFO.sub(rf"\1{REDACTED}@", text)
    return text


def mask_url(url: str) -> str:
    """``url`` fit for a message: its user info (credentials) replaced by ``***``."""
    return _URL_USERINFO.sub(rf"\1{REDACTED}@", url)


def _clean(value: Any) -> Any:
    """A JSON-ready copy of an extra field's value with every secret redacted."""
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        shown = str(value)
        return redact(shown) if redact(shown) != shown else value
    if isinstance(value, dict):
        return {redact(str(k)): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_clean(v) for v in value]
    return redact(str(value))


def _extras(record: logging.LogRecord) -> Iterable[tuple[str, Any]]:
    return ((k, v) for k, v in vars(record).items() if k not in _STANDARD_ATTRS)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": redact(record.getMessage()),
        }
        for key, value in _extras(record):
            line.setdefault(key, _clean(value))
        if record.exc_info:
            line["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(line, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC).strftime("%H:%M:%S")
        extras = " ".join(f"{k}={_clean(v)}" for k, v in _extras(record))
        text = f"{stamp} {record.levelname:<7} {record.name}: {redact(record.getMessage())}"
        if extras:
            text = f"{text}  {extras}"
        if record.exc_info:
            text = f"{text}\n{redact(self.formatException(record.exc_info))}"
        return text


def _repeat_key(record: logging.LogRecord) -> tuple[str, ...]:
    """What makes a line the same line: logger, rendered message and extra fields."""
    extras = sorted((k, repr(v)) for k, v in _extras(record) if k != "repeats_suppressed")
    return (record.name, str(record.levelno), record.getMessage(), repr(extras))


class RepeatFilter(logging.Filter):
    """Drops a WARNING+ line identical to one emitted less than ``window`` seconds ago."""

    def __init__(
        self, window: float = REPEAT_WINDOW_SECONDS, clock: Callable[[], float] = time.monotonic
    ):
        super().__init__()
        self._window = window
        self._clock = clock
        self._seen: dict[tuple[str, ...], tuple[float, int]] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = _repeat_key(record)
        now = self._clock()
        with self._lock:
            last, dropped = self._seen.get(key, (-float("inf"), 0))
            if now - last < self._window:
                self._seen[key] = (last, dropped + 1)
                return False
            self._seen[key] = (now, 0)
            if len(self._seen) > 1000:  # bounded: forget the oldest entries
                for old in sorted(self._seen, key=lambda k: self._seen[k][0])[:500]:
                    del self._seen[old]
        if dropped:
            record.repeats_suppressed = dropped
        return True


_base_factory = logging.getLogRecordFactory()


def _redacting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    """Every record any logger makes carries its message already redacted, so a
    third-party handler of its own (not ours) cannot print a secret either."""
    record = _base_factory(*args, **kwargs)
    if _Registered.spellings or "@" in str(record.msg):
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a broken format string: leave it to logging
            return record
        record.msg, record.args = redact(message), None
    return record


def configure_logging(
    level: str = "INFO",
    fmt: str = "json",
    stream: TextIO | None = None,
    *,
    librdkafka_debug: bool = False,
) -> None:
    """Route every logger to one handler on stderr (stdout is for command output).

    ``librdkafka_debug``: the Kafka clients were given librdkafka's ``debug`` property
    (``LIBRDKAFKA_DEBUG``), so their debug lines are wanted whatever ``level`` says.
    """
    logging.setLogRecordFactory(_redacting_factory)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RepeatFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # third-party chatter at INFO would bury ours
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if librdkafka_debug:
        logging.getLogger(LIBRDKAFKA_LOGGER).setLevel(logging.DEBUG)
