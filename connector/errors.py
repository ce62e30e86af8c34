"""One exception tree for the whole connector, grouped by what the caller should do.

    ConnectorError
    ├── ConfigError              bad configuration: fail at start, one line per problem
    ├── RetriableError           try the same operation again after a wait
    │   ├── RateLimitedError     the Data API said 429 / 42000 (carries retry_after)
    │   └── TransientError       5xx, timeouts, resets, truncated or invalid JSON
    ├── ResponseTooLargeError    20027: ask again for a smaller page
    ├── AbortableError           abort the Kafka transaction, re-read from the committed cursor
    ├── InvalidRecordError       one API record cannot be used: it goes to the dead-letter topic
    └── FatalError               nothing here can fix it: exit non-zero with one clear line
        ├── SourceFatalError     Learnosity refused the request (credentials, domain, version)
        └── KafkaFatalError      fenced, unauthorized, or an unrecoverable producer state

Lower-level errors (httpx2, confluent-kafka) are translated at the module boundary that
imports the library, with ``raise ... from exc``, so nothing above it imports them.
Messages never contain secrets: they are built from codes, URLs and settings names only.
"""

from __future__ import annotations

from typing import Any


class ConnectorError(Exception):
    """Base of every error the connector raises on purpose."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Exception's default re-calls __init__ with ``args``, which subclasses with
        # other signatures (ConfigError) turn into a different message; errors cross
        # into the runner from the fetch process, so they must come back unchanged
        return (_rebuild, (type(self), self.args, dict(self.__dict__)))


def _rebuild(cls: type[ConnectorError], args: tuple[Any, ...], state: dict[str, Any]) -> Any:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class ConfigError(ConnectorError):
    """The configuration is unusable; ``problems`` has one plain line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid configuration:\n" + "\n".join(f"  {p}" for p in self.problems))


class RetriableError(ConnectorError):
    """The same operation may succeed if tried again after a wait."""


class RateLimitedError(RetriableError):
    """The Data API rate limit was hit; ``retry_after`` is the server's hint in seconds."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TransientError(RetriableError):
    """A failure of the network or the service that usually passes (5xx, timeout, reset)."""

    def __init__(self, message: str, reason: str = "transient") -> None:
        super().__init__(message)
        #: short machine-readable cause, used as a metric label (bounded set of values)
        self.reason = reason


class ResponseTooLargeError(ConnectorError):
    """Code 20027: the page would be too large; ask again with a smaller ``limit``."""


class AbortableError(ConnectorError):
    """The current Kafka transaction must be aborted and its input re-read."""


class InvalidRecordError(ConnectorError):
    """One API record cannot be turned into an event; it belongs in the dead-letter topic."""

    def __init__(self, message: str, reason: str = "invalid_record") -> None:
        super().__init__(message)
        self.reason = reason


class FatalError(ConnectorError):
    """Nothing the connector can do will fix this; it must stop with a clear message."""


class SourceFatalError(FatalError):
    """Learnosity refused the request in a way retrying cannot fix."""

    def __init__(self, message: str, code: int | None = None, http_status: int | None = None):
        super().__init__(message)
        self.code = code
        self.http_status = http_status


class KafkaFatalError(FatalError):
    """Kafka refused us for good: fenced by another instance, unauthorized, or broken."""


class ProducerFencedError(KafkaFatalError):
    """Our transactional id has a newer epoch: another instance took over, or the broker
    aborted a transaction of ours that outlived its timeout (the process was paused)."""


class ShutdownRequested(ConnectorError):
    """A wait was cut short because the connector is shutting down."""


def one_line(text: str) -> str:
    """``text`` as one line: line breaks and runs of blanks become one space."""
    return " ".join(text.split())
