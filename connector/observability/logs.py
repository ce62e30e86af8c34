"""Logging: one event per line, JSON by default, secrets redacted by construction.

Stable fields of a JSON line: ``ts`` (ISO 8601 UTC), ``level``, ``logger``, ``event``
(the message), then any ``extra={...}`` fields, then ``exc`` for exceptions. Every value
registered with ``register_secret`` is replaced by ``***`` in every line, whatever path it
took to get there. A warning repeated within ``REPEAT_WINDOW_SECONDS`` is dropped and the
number dropped is reported on its next appearance.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any, TextIO

REPEAT_WINDOW_SECONDS = 60.0
REDACTED = "***"

#: attributes every LogRecord has; anything else on a record came from ``extra=``
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)

_secrets: set[str] = set()
_secrets_lock = threading.Lock()


def register_secret(value: str) -> None:
    """Make ``value`` unprintable in every log line from now on (ignores short values)."""
    if value and len(value) >= 4:
        with _secrets_lock:
            _secrets.add(value)


def redact(text: str) -> str:
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in _extras(record).items():
            line.setdefault(key, value)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return redact(json.dumps(line, default=str, ensure_ascii=False))


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC).strftime("%H:%M:%S")
        extras = " ".join(f"{k}={v}" for k, v in _extras(record).items())
        text = f"{stamp} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if extras:
            text = f"{text}  {extras}"
        if record.exc_info:
            text = f"{text}\n{self.formatException(record.exc_info)}"
        return redact(text)


class RepeatFilter(logging.Filter):
    """Drops a WARNING+ line identical to one emitted less than ``window`` seconds ago."""

    def __init__(self, window: float = REPEAT_WINDOW_SECONDS, clock: Any = time.monotonic):
        super().__init__()
        self._window = window
        self._clock = clock
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, str(record.msg))
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


def configure_logging(level: str = "INFO", fmt: str = "json", stream: TextIO | None = None) -> None:
    """Route every logger to one handler on stderr (stdout is for command output)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RepeatFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # third-party chatter at INFO would bury ours
    for noisy in ("httpx", "httpcore", "httpx2", "httpcore2", "librdkafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
