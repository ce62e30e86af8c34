"""Every librdkafka client of ours is made here, and what went wrong with it is read here.

Each client logs through Python logging (without a ``logger``, librdkafka prints its own
lines straight to stderr, bypassing the JSON format and the secret redaction) and
reports its errors to a ``ClientWatch``. librdkafka retries a broker connection forever
and, when a call times out, says only ``Broker transport failure``; the real cause
(authentication failed, certificate verify failed, connection refused, a name that does
not resolve) arrives separately, through ``error_cb`` and the log. The watch keeps those,
and ``await_metadata`` and ``failure`` turn them into one plain line that names the
broker address and what to check. A cause that waiting cannot cure (authentication,
TLS, authorization) ends the wait at once.
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, ClusterMetadata

from connector.errors import KafkaFatalError, RetriableError

#: librdkafka's own log lines, at WARNING and above unless LOG_LEVEL=DEBUG or
#: LIBRDKAFKA_DEBUG asks for more
LIBRDKAFKA_LOG = logging.getLogger("librdkafka")

#: how long commands wait for a first answer from the brokers
METADATA_TIMEOUT_SECONDS = 15.0
#: how long a TLS diagnosis may take (our own handshake, to read the verify error)
TLS_DIAGNOSIS_TIMEOUT_SECONDS = 5.0

AUTHENTICATION_CODES = frozenset(
    {KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED}
)
AUTHORIZATION_CODES = frozenset(
    {
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.GROUP_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
        KafkaError.DELEGATION_TOKEN_AUTHORIZATION_FAILED,
    }
)

_WHERE_PREFIX = re.compile(r"^(?:\[thrd:[^\]]*\]:\s*)?(?:[a-z_]+://)?[^\s/]+/(?:bootstrap|\d+):\s*")
_TIMING_SUFFIX = re.compile(
    r"\s*\(after \d+ms in state [A-Z_]+(?:, \d+ identical error\(s\) suppressed)?\)$"
)
_BROKER_IN_TEXT = re.compile(
    r"^(?:\[thrd:[^\]]*\]:\s*)?(?:[a-z_]+://)?(\[[^\]]+\]|[^\s/:]+):(\d+)/"
)


def tidy(text: str) -> str:
    """librdkafka's error text without the broker prefix and the timing suffix, which
    differ from one attempt to the next (and would defeat the repeat filter)."""
    return _TIMING_SUFFIX.sub("", _WHERE_PREFIX.sub("", text.strip()))


@dataclass(frozen=True, slots=True)
class Cause:
    """Why the brokers could not be used, in plain words."""

    text: str
    #: waiting will not cure it (credentials, TLS, authorization): stop waiting at once
    decisive: bool


@dataclass(frozen=True, slots=True)
class _Seen:
    code: int | None  # None: a log line, not an error event
    text: str  # as librdkafka wrote it (with the broker prefix)


class ClientWatch:
    """What a client's ``error_cb`` and log reported; thread-safe, bounded."""

    def __init__(self) -> None:
        self._seen: deque[_Seen] = deque(maxlen=64)
        self._lock = threading.Lock()

    def error(self, error: KafkaError) -> None:
        with self._lock:
            self._seen.append(_Seen(error.code(), error.str()))

    def log_line(self, facility: str, text: str) -> None:
        if facility == "FAIL":
            with self._lock:
                self._seen.append(_Seen(None, text))

    def clear(self) -> None:
        with self._lock:
            self._seen.clear()

    def cause(self, config: dict[str, Any] | None = None) -> Cause | None:
        """The most telling cause seen, or None; ``config`` lets a TLS failure be
        diagnosed further (wrong CA or a host name the certificate does not name)."""
        with self._lock:
            seen = list(self._seen)
        if not seen:
            return None

        def newest(codes: frozenset[int | None]) -> _Seen | None:
            return next((s for s in reversed(seen) if s.code in codes), None)

        for codes, explain in _CAUSES:
            if (found := newest(codes)) is not None:
                return explain(found.text, config)
        return Cause(tidy(seen[-1].text), False)


def _authentication(text: str, _config: dict[str, Any] | None) -> Cause:
    return Cause(
        f"authentication failed: {tidy(text)} (check KAFKA_SASL_USERNAME, "
        "KAFKA_SASL_PASSWORD and KAFKA_SASL_MECHANISM)",
        True,
    )


def _authorization(text: str, _config: dict[str, Any] | None) -> Cause:
    return Cause(f"not authorized: {tidy(text)}", True)


def _tls(text: str, config: dict[str, Any] | None) -> Cause:
    return Cause(_tls_cause(text, config), True)


def _resolve(text: str, _config: dict[str, Any] | None) -> Cause:
    return Cause(f"{tidy(text)} (check KAFKA_BOOTSTRAP_SERVERS)", False)


def _transport(text: str, _config: dict[str, Any] | None) -> Cause:
    cleaned = tidy(text)
    return Cause(_transport_cause(cleaned), "PLAINTEXT broker listener" in cleaned)


def _all_down(text: str, _config: dict[str, Any] | None) -> Cause:
    return Cause(f"no broker answered ({tidy(text)})", False)


#: what the brokers said, most telling first, and how to say it
_CAUSES: tuple[tuple[frozenset[int | None], Callable[[str, dict[str, Any] | None], Cause]], ...] = (
    (frozenset(AUTHENTICATION_CODES), _authentication),
    (frozenset(AUTHORIZATION_CODES), _authorization),
    (frozenset({KafkaError._SSL}), _tls),
    (frozenset({KafkaError._RESOLVE}), _resolve),
    (frozenset({KafkaError._TRANSPORT, None}), _transport),
    (frozenset({KafkaError._ALL_BROKERS_DOWN}), _all_down),
)


def _transport_cause(text: str) -> str:
    lowered = text.lower()
    if "connect to" in lowered or "timed out" in lowered:
        return f"{text} (check KAFKA_BOOTSTRAP_SERVERS)"
    if "plaintext broker listener" in lowered:
        return f"{text} (check KAFKA_SECURITY_PROTOCOL)"
    if "closed by peer" in lowered:
        return f"{text}: the listener may expect TLS or SASL (check KAFKA_SECURITY_PROTOCOL)"
    return text


def _tls_cause(text: str, config: dict[str, Any] | None) -> str:
    cleaned = tidy(text)
    if "certificate verify failed" not in cleaned:
        return f"TLS handshake failed: {cleaned} (check KAFKA_SECURITY_PROTOCOL)"
    found = _BROKER_IN_TEXT.match(text.strip())
    verdict = None
    if found and config is not None:
        verdict = diagnose_tls(found.group(1).strip("[]"), int(found.group(2)), config)
    if verdict and "hostname mismatch" in verdict.lower():
        hint = "the address in KAFKA_BOOTSTRAP_SERVERS must be a name in the broker's certificate"
    elif verdict:
        hint = "check KAFKA_SSL_CA_LOCATION: the CA that signed the broker's certificate"
    else:
        verdict = "the broker certificate could not be verified"
        hint = (
            "check KAFKA_SSL_CA_LOCATION, and that the address in KAFKA_BOOTSTRAP_SERVERS is "
            "a name in the broker's certificate"
        )
    return f"TLS certificate verify failed: {verdict} ({hint})"


def diagnose_tls(host: str, port: int, config: dict[str, Any]) -> str | None:
    """Our own TLS handshake with the broker, as librdkafka is configured to make it,
    for the verify error OpenSSL gives (librdkafka reports only that verifying failed)."""
    location = str(config.get("ssl.ca.location") or "")
    pem = str(config.get("ssl.ca.pem") or "")
    try:
        if location and location != "probe":
            is_dir = Path(location).is_dir()
            context = ssl.create_default_context(
                cafile=None if is_dir else location, capath=location if is_dir else None
            )
        elif pem:
            context = ssl.create_default_context(cadata=pem)
        else:
            context = ssl.create_default_context()
    except (OSError, ssl.SSLError, ValueError):
        return None
    algorithm = str(config.get("ssl.endpoint.identification.algorithm", "https")).lower()
    context.check_hostname = algorithm != "none"
    try:
        with (
            socket.create_connection((host, port), timeout=TLS_DIAGNOSIS_TIMEOUT_SECONDS) as raw,
            context.wrap_socket(raw, server_hostname=host),
        ):
            return None  # it verifies for us: the cause is in librdkafka's own settings
    except ssl.SSLCertVerificationError as exc:
        return str(exc.verify_message or exc.reason or "verify failed")
    except (OSError, ssl.SSLError):
        return None


def servers_of(config: dict[str, Any]) -> str:
    return str(config.get("bootstrap.servers") or "(no KAFKA_BOOTSTRAP_SERVERS)")


def failure(
    config: dict[str, Any],
    watch: ClientWatch,
    what: str = "",
    *,
    waited: float | None = None,
    error: KafkaError | None = None,
) -> KafkaFatalError | RetriableError:
    """One line for a Kafka call that failed: what, where, and the real cause.

    Decisive causes (credentials, TLS, authorization) are fatal; the rest (nothing
    answered in time) retriable, so a caller that can wait may try again.
    """
    where = f"Kafka at {servers_of(config)}"
    prefix = f"{what}: " if what else ""
    cause = watch.cause(config)
    if error is not None and error.code() in AUTHORIZATION_CODES:
        cause = Cause(f"not authorized: {error.str()}", True)
    if cause is not None and cause.decisive:
        return KafkaFatalError(f"{prefix}{where}: {cause.text}")
    within = f" within {waited:g} s" if waited is not None else ""
    detail = cause.text if cause is not None else (error.str() if error is not None else "")
    message = f"{prefix}no answer from {where}{within}"
    if detail:
        message = f"{message}: {detail}"
    if error is not None and error.fatal():
        return KafkaFatalError(message)
    return RetriableError(message)


class _Client(Protocol):
    def list_topics(self, topic: str | None = None, timeout: float = -1) -> ClusterMetadata: ...

    def poll(self, timeout: float = -1) -> Any: ...


def await_metadata(
    client: _Client,
    watch: ClientWatch,
    config: dict[str, Any],
    what: str = "",
    *,
    timeout: float = METADATA_TIMEOUT_SECONDS,
    topic: str | None = None,
) -> ClusterMetadata:
    """The cluster's metadata, waiting at most ``timeout`` seconds; a decisive cause
    (authentication, TLS) ends the wait at once. Raises ``failure(...)``.

    ``client`` must have nothing assigned (``poll`` serves its callbacks here)."""
    started = time.monotonic()
    deadline = started + timeout
    while True:
        remaining = deadline - time.monotonic()
        try:
            return client.list_topics(topic, timeout=max(0.1, min(1.0, remaining)))
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if error.code() in AUTHORIZATION_CODES:
                raise failure(config, watch, what, error=error) from exc
        with contextlib.suppress(KafkaException):
            client.poll(0)  # serves error_cb and the log: the cause arrives this way
        cause = watch.cause()
        if (cause is not None and cause.decisive) or time.monotonic() >= deadline:
            raise failure(config, watch, what, waited=round(time.monotonic() - started))


class _LogRelay:
    """librdkafka's log callback: Python logging, with the watch told of failures.

    Broker connection failures (facility ``FAIL``) go to DEBUG: the same failure comes
    through ``error_cb``, which producers log in plain words and commands report in
    their one line. So does the warning that a producer property given to every client
    (``LIBRDKAFKA_*``) is ignored by a consumer.
    """

    def __init__(self, watch: ClientWatch) -> None:
        self._watch = watch

    def log(self, level: int, fmt: str, *args: Any) -> None:
        facility = str(args[0]) if args else ""
        text = str(args[-1]) if args else fmt
        self._watch.log_line(facility, text)
        if facility == "FAIL" or (facility == "CONFWARN" and "will be ignored" in text):
            level = min(level, logging.DEBUG)
        if LIBRDKAFKA_LOG.isEnabledFor(level):
            LIBRDKAFKA_LOG.log(level, "%s: %s", facility, tidy(text))


def _wired(config: dict[str, Any], watch: ClientWatch | None) -> dict[str, Any]:
    watch = watch if watch is not None else ClientWatch()
    wired = {**config, "logger": _LogRelay(watch)}
    own = config.get("error_cb")
    if own is None:
        wired["error_cb"] = watch.error
    else:

        def both(error: KafkaError) -> None:
            watch.error(error)
            own(error)

        wired["error_cb"] = both
    return wired


def make_producer(config: dict[str, Any], watch: ClientWatch | None = None) -> Producer:
    return Producer(_wired(config, watch))


def make_consumer(config: dict[str, Any], watch: ClientWatch | None = None) -> Consumer:
    return Consumer(_wired(config, watch))


def make_admin(config: dict[str, Any], watch: ClientWatch | None = None) -> AdminClient:
    return AdminClient(_wired(config, watch))
