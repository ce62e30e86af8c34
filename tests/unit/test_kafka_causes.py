"""The real cause of a Kafka failure, in one line naming the broker address.

librdkafka says ``Broker transport failure`` when a call times out; what went wrong
arrives separately, through ``error_cb`` and the log. These tests feed ``ClientWatch``
librdkafka's own error texts (as the real broker gives them, see
tests/integration/test_failures.py) and make real clients against a closed port.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator

import pytest
from confluent_kafka import KafkaError

from connector.errors import KafkaFatalError, RetriableError
from connector.kafka.clients import (
    ClientWatch,
    await_metadata,
    failure,
    make_admin,
    make_consumer,
    tidy,
)

SERVERS = "kafka-0:9093,kafka-1:9093"
CONFIG = {"bootstrap.servers": SERVERS}
AUTH = (
    "sasl_ssl://kafka-0:9093/bootstrap: SASL authentication error: Authentication failed "
    "during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512 "
    "(after 307ms in state AUTH_REQ)"
)
REFUSED = (
    "kafka-0:9093/bootstrap: Connect to ipv4#10.0.0.7:9093 failed: Connection refused "
    "(after 0ms in state CONNECT)"
)
VERIFY = (
    "sasl_ssl://kafka-0:9093/bootstrap: SSL handshake failed: error:0A000086:SSL "
    "routines::certificate verify failed: broker certificate could not be verified, verify "
    "that ssl.ca.location is correctly configured or root CA certificates are installed "
    "(install ca-certificates package) (after 3ms in state SSL_HANDSHAKE)"
)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def watch_of(*errors: tuple[int, str]) -> ClientWatch:
    watch = ClientWatch()
    for code, text in errors:
        watch.error(KafkaError(code, text))
    return watch


def test_tidy_drops_what_changes_from_one_attempt_to_the_next() -> None:
    assert tidy(REFUSED) == "Connect to ipv4#10.0.0.7:9093 failed: Connection refused"
    assert tidy(AUTH).startswith("SASL authentication error: Authentication failed")
    assert not tidy(AUTH).endswith(")")
    logged = "[thrd:sasl_plaintext://h:1/bootstrap]: sasl_plaintext://h:1/bootstrap: Disconnected"
    assert tidy(logged) == "Disconnected"
    assert tidy("Local: Broker transport failure") == "Local: Broker transport failure"


def test_authentication_beats_the_transport_failures_around_it() -> None:
    watch = watch_of(
        (KafkaError._TRANSPORT, REFUSED),
        (KafkaError._AUTHENTICATION, AUTH),
        (KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"),
    )
    error = failure(CONFIG, watch, waited=15)
    assert isinstance(error, KafkaFatalError)
    assert str(error) == (
        f"Kafka at {SERVERS}: authentication failed: SASL authentication error: "
        "Authentication failed during authentication due to invalid credentials with SASL "
        "mechanism SCRAM-SHA-512 (check KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD and "
        "KAFKA_SASL_MECHANISM)"
    )


def test_nothing_answering_is_retriable_and_says_how_long_it_waited() -> None:
    watch = watch_of((KafkaError._TRANSPORT, REFUSED), (KafkaError._ALL_BROKERS_DOWN, "down"))
    error = failure(CONFIG, watch, "cannot list topics", waited=15)
    assert isinstance(error, RetriableError)
    assert str(error) == (
        f"cannot list topics: no answer from Kafka at {SERVERS} within 15 s: Connect to "
        "ipv4#10.0.0.7:9093 failed: Connection refused (check KAFKA_BOOTSTRAP_SERVERS)"
    )


@pytest.mark.parametrize(
    ("code", "text", "expected"),
    [
        (
            KafkaError._RESOLVE,
            "nowhere:9092/bootstrap: Failed to resolve 'nowhere:9092': Name or service not "
            "known (after 1ms in state CONNECT)",
            "Failed to resolve 'nowhere:9092': Name or service not known (check "
            "KAFKA_BOOTSTRAP_SERVERS)",
        ),
        (
            KafkaError._TRANSPORT,
            "ssl://h:9092/bootstrap: SSL handshake failed: Disconnected: SSL connection "
            "closed by peer: connecting to a PLAINTEXT broker listener? (after 0ms in state "
            "SSL_HANDSHAKE)",
            "SSL handshake failed: Disconnected: SSL connection closed by peer: connecting to "
            "a PLAINTEXT broker listener? (check KAFKA_SECURITY_PROTOCOL)",
        ),
        (
            KafkaError.TOPIC_AUTHORIZATION_FAILED,
            "Broker: Topic authorization failed",
            "not authorized: Broker: Topic authorization failed",
        ),
        (
            KafkaError._SSL,
            "ssl://h:9092/bootstrap: SSL handshake failed: error:0A000418:SSL "
            "routines::tlsv1 alert unknown ca (after 2ms in state SSL_HANDSHAKE)",
            "TLS handshake failed: SSL handshake failed: error:0A000418:SSL routines::tlsv1 "
            "alert unknown ca (check KAFKA_SECURITY_PROTOCOL)",
        ),
    ],
    ids=["resolve", "plaintext-listener", "not-authorized", "tls-alert"],
)
def test_each_cause_in_plain_words(code: int, text: str, expected: str) -> None:
    cause = watch_of((code, text)).cause(CONFIG)
    assert cause is not None and cause.text == expected


def test_a_closed_connection_at_the_first_request_points_at_the_protocol() -> None:
    """A PLAINTEXT client at a SASL_SSL listener: the broker just hangs up; librdkafka
    says so only in its log (facility FAIL), not through error_cb."""
    watch = ClientWatch()
    watch.log_line(
        "FAIL",
        "[thrd:127.0.0.1:36011/bootstrap]: 127.0.0.1:36011/bootstrap: Disconnected: "
        "connection closed by peer: receive 0 after POLLIN (after 1ms in state "
        "APIVERSION_QUERY)",
    )
    watch.log_line("CONFWARN", "not a failure")
    cause = watch.cause()
    assert cause is not None and not cause.decisive
    assert cause.text == (
        "Disconnected: connection closed by peer: receive 0 after POLLIN: the listener may "
        "expect TLS or SASL (check KAFKA_SECURITY_PROTOCOL)"
    )


def test_a_certificate_that_cannot_be_verified_without_a_diagnosis() -> None:
    cause = watch_of((KafkaError._SSL, VERIFY)).cause()  # no config: no handshake of our own
    assert cause is not None and cause.decisive
    assert cause.text.startswith(
        "TLS certificate verify failed: the broker certificate could not be verified (check "
        "KAFKA_SSL_CA_LOCATION"
    )


def test_a_real_client_against_a_closed_port_fails_within_its_bound() -> None:
    config = {"bootstrap.servers": f"127.0.0.1:{closed_port()}"}
    watch = ClientWatch()
    admin = make_admin(config, watch)
    started = time.monotonic()
    with pytest.raises(RetriableError) as caught:
        await_metadata(admin, watch, config, "cannot list topics", timeout=2)
    assert time.monotonic() - started < 6
    message = str(caught.value)
    assert message.startswith(
        f"cannot list topics: no answer from Kafka at {config['bootstrap.servers']} within 2 s: "
    )
    assert "Connection refused" in message and "\n" not in message


@pytest.fixture
def librdkafka_records() -> Iterator[list[logging.LogRecord]]:
    found: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            found.append(record)

    logger = logging.getLogger("librdkafka")
    handler, level = Keep(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield found
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_librdkafka_debug_reaches_the_log(librdkafka_records: list[logging.LogRecord]) -> None:
    """``LIBRDKAFKA_DEBUG=broker`` becomes librdkafka's ``debug`` property; its lines come
    through the client's log relay as DEBUG records of the ``librdkafka`` logger."""
    consumer = make_consumer(
        {
            "bootstrap.servers": f"127.0.0.1:{closed_port()}",
            "group.id": "debug-test",
            "debug": "broker",
        }
    )
    try:
        deadline = time.monotonic() + 10
        while not any(r.levelno == logging.DEBUG for r in librdkafka_records):
            assert time.monotonic() < deadline, "no librdkafka debug line in 10 s"
            consumer.poll(0.2)
    finally:
        consumer.close()
    debug = [r for r in librdkafka_records if r.levelno == logging.DEBUG]
    assert any("BROKER" in r.getMessage() or "broker" in r.getMessage() for r in debug)
    # connection failures are demoted to DEBUG (error_cb reports them in plain words)
    assert all(
        r.levelno < logging.WARNING for r in librdkafka_records if "FAIL" in r.getMessage()[:5]
    )
