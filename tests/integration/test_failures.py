"""Every failure is one clear line, against the real broker, registry and emulator.

Each command runs as an operator runs it (``python -m connector COMMAND`` in its own
process). A failure must end with one line naming what failed and where (the broker
address, the registry URL, the Data API URL), exit non-zero, print no traceback unless
``LOG_LEVEL=DEBUG``, create nothing when a dependency is wrong, and never print a secret.
The last test is the scripted walk through the five most likely mistakes whose output
docs/operations.md shows ("The five most likely mistakes").
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import certifi
import pytest
from confluent_kafka.admin import AdminClient

from connector.emulator.service import Emulator
from connector.observability.logs import spellings
from dev.kafka_broker import KafkaBroker
from dev.registry import SchemaRegistry

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
OPERATIONS = ROOT / "docs" / "operations.md"
#: settings from the machine's environment never leak into a command under test
OURS = ("LEARNOSITY_", "KAFKA_", "SCHEMA_REGISTRY_", "LIBRDKAFKA_", "CONNECTOR_", "LOG_", "HTTP_")
#: a bound on each command: the longest wait in them is the 15 s metadata wait
COMMAND_TIMEOUT = 90
#: what operators may pick as a password: quotes, a backslash, a tab, non-ASCII
ADVERSARIAL_PASSWORD = "w\"r'o\\n\tg-ü-€"


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Done:
    code: int
    out: str
    err: str
    seconds: float

    @property
    def logs(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.err.splitlines() if line.startswith("{")]

    @property
    def plain(self) -> list[str]:
        """stderr's lines that are not JSON log lines."""
        return [line for line in self.err.splitlines() if line.strip() and not line.startswith("{")]

    def one_line(self, *, warnings_allowed: bool = False) -> str:
        """The one line the failure ends with; asserts nothing else but logs came."""
        assert self.code != 0, self.err
        assert "Traceback" not in self.err, self.err
        assert len(self.plain) == 1, self.err
        assert self.err.rstrip().splitlines()[-1] == self.plain[0], self.err
        if not warnings_allowed:
            loud = [line for line in self.logs if line["level"] not in ("debug", "info")]
            assert loud == [], self.err
        return self.plain[0]


def environment(env: Mapping[str, str]) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.upper().startswith(OURS)}
    return {**base, "LOG_FORMAT": "json", "HTTP_PORT": "0", **env}


def start(env: Mapping[str, str], *args: str) -> Callable[[], Done]:
    """Start ``python -m connector ARGS``; the returned call waits for it (bounded)."""
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "connector", *args],
        env=environment(env),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def wait() -> Done:
        try:
            out, err = process.communicate(timeout=COMMAND_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
            raise AssertionError(
                f"{args} did not end in {COMMAND_TIMEOUT} s: {err[-2000:]}"
            ) from None
        return Done(process.returncode, out, err, time.monotonic() - started)

    return wait


def run_all(cases: Mapping[str, tuple[Mapping[str, str], tuple[str, ...]]]) -> dict[str, Done]:
    """Every case at once (most of the time is waiting), each bounded."""
    waits = {name: start(env, *args) for name, (env, args) in cases.items()}
    return {name: wait() for name, wait in waits.items()}


def topics(broker: KafkaBroker) -> set[str]:
    admin = AdminClient(broker.client_config())
    return set(admin.list_topics(timeout=30).topics)


def subjects(registry: SchemaRegistry) -> list[str]:
    with urllib.request.urlopen(f"{registry.url}/subjects", timeout=30) as answer:
        found: list[str] = json.loads(answer.read())
    return found


@pytest.fixture
def source(emulator_factory: Callable[..., Emulator]) -> Emulator:
    return emulator_factory(sessions=20)


def url_of(emulator: Emulator) -> str:
    assert emulator.url is not None, "the emulator is not serving"
    return emulator.url


def identity() -> dict[str, str]:
    name = f"fail-{uuid.uuid4().hex[:8]}"
    return {"CONNECTOR_NAME": name, "KAFKA_TOPIC": f"{name}.scores"}


def created_by(env: Mapping[str, str]) -> set[str]:
    name = env["CONNECTOR_NAME"]
    return {f"{name}.scores", f"{name}.scores.dlq", f"{name}.state"}


def secure(broker: KafkaBroker, **overrides: str) -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP_SERVERS": broker.sasl_ssl_bootstrap_servers,
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": broker.scram_mechanism,
        "KAFKA_SASL_USERNAME": broker.scram_user,
        "KAFKA_SASL_PASSWORD": broker.scram_password,
        "KAFKA_SSL_CA_LOCATION": str(broker.ca_file),
        **overrides,
    }


def assert_no_secret(done: Done, *secrets: str) -> None:
    for secret in secrets:
        for form in spellings(secret):
            assert form not in done.out + done.err, f"a spelling of a secret was printed: {form!r}"


# --- the real cause of Kafka failures -----------------------------------------------------------
def test_a_wrong_sasl_password_is_named_at_once_by_check_status_and_run(
    source: Emulator, kafka_broker: KafkaBroker
) -> None:
    """It used to be ``cannot reach Kafka: ... Broker transport failure`` after 15-60 s."""
    env = {**source.env(), **identity(), **secure(kafka_broker)}
    wrong = {**env, "KAFKA_SASL_PASSWORD": ADVERSARIAL_PASSWORD}
    where = f"Kafka at {kafka_broker.sasl_ssl_bootstrap_servers}"
    mechanism = kafka_broker.scram_mechanism
    cause = (
        "authentication failed: SASL authentication error: Authentication failed during "
        f"authentication due to invalid credentials with SASL mechanism {mechanism}"
    )
    debug = {**wrong, "LOG_LEVEL": "DEBUG", "LIBRDKAFKA_DEBUG": "security,broker"}
    done = run_all(
        {
            "check": (wrong, ("check",)),
            "status": (debug, ("status",)),
            "run": (wrong, ("run",)),
            "right": (env, ("check",)),
        }
    )
    assert done["right"].code == 0, done["right"].out + done["right"].err

    check = done["check"]
    assert check.code == 1, check.out + check.err
    lines = check.out.splitlines()
    assert lines[2].startswith(f"FAIL  kafka: {where}: {cause} (check KAFKA_SASL_USERNAME"), lines
    assert lines[1].startswith("OK    learnosity:") and len(lines) == 4, lines

    line = done["run"].one_line()
    assert line.startswith(f"error: {where}: {cause}"), line

    status = done["status"]  # at DEBUG: the traceback, librdkafka's own debug lines
    assert status.code == 1 and "Traceback (most recent call last)" in status.err
    assert (
        status.err.rstrip()
        .splitlines()[-1]
        .startswith(
            f"error: cannot read the state topic '{env['CONNECTOR_NAME']}.state': {where}: {cause}"
        )
    )
    assert any(
        entry["logger"] == "librdkafka" and entry["level"] == "debug" for entry in status.logs
    )

    for name in ("check", "status", "run"):
        assert done[name].seconds < 12, f"{name} waited {done[name].seconds:.1f} s"
        assert_no_secret(done[name], ADVERSARIAL_PASSWORD, kafka_broker.scram_password)
    assert not created_by(env) & topics(kafka_broker)


def test_a_wrong_ca_and_a_host_name_the_certificate_lacks_are_told_apart(
    source: Emulator, kafka_broker: KafkaBroker
) -> None:
    """Both printed ``Broker transport failure``; librdkafka itself says only "certificate
    verify failed"; our own handshake gives OpenSSL's reason."""
    env = {**source.env(), **identity(), **secure(kafka_broker)}
    port = kafka_broker.sasl_ssl_bootstrap_servers.rsplit(":", 1)[1]
    wrong_ca = {**env, "KAFKA_SSL_CA_LOCATION": certifi.where()}
    # 127.1 reaches 127.0.0.1, but is not a name in the certificate (localhost, 127.0.0.1)
    wrong_name = {**env, "KAFKA_BOOTSTRAP_SERVERS": f"127.1:{port}"}
    done = run_all(
        {
            "ca status": (wrong_ca, ("status",)),
            "ca run": (wrong_ca, ("run",)),
            "name check": (wrong_name, ("check",)),
            "name run": (wrong_name, ("run",)),
        }
    )
    for name in ("ca status", "ca run"):
        line = done[name].one_line()
        assert f"Kafka at {env['KAFKA_BOOTSTRAP_SERVERS']}: TLS certificate verify failed: " in line
        assert "certificate chain" in line or "issuer certificate" in line, line
        assert "(check KAFKA_SSL_CA_LOCATION" in line, line
    check = done["name check"]
    assert check.code == 1
    kafka_line = check.out.splitlines()[2]
    assert kafka_line.startswith(
        f"FAIL  kafka: Kafka at 127.1:{port}: TLS certificate verify failed: Hostname mismatch, "
        "certificate is not valid for '127.1'."
    ), kafka_line
    assert "Hostname mismatch" in done["name run"].one_line()
    assert all(case.seconds < 12 for case in done.values()), {k: v.seconds for k, v in done.items()}
    assert not created_by(env) & topics(kafka_broker)


def test_unreachable_addresses_are_waited_for_a_bounded_time_and_named(
    source: Emulator, kafka_broker: KafkaBroker
) -> None:
    """An unreachable broker: two tracebacks after 30 s (run), a minute of silence then a
    traceback (status). An unreachable Data API: a traceback (fetch)."""
    nowhere = f"127.0.0.1:{free_port()}"
    env = {**source.env(), **identity(), "KAFKA_BOOTSTRAP_SERVERS": nowhere}
    no_api = {
        **source.env(),
        **identity(),
        "KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap_servers,
        "LEARNOSITY_BASE_URL": f"http://{nowhere}",
    }
    done = run_all(
        {
            "run": (env, ("run",)),
            "status": (env, ("status",)),
            "reset": (env, ("reset", "--to", "earliest")),
            "tail": (env, ("tail", "--timeout", "1")),
            "check": (env, ("check",)),
            "fetch": (no_api, ("fetch", "--max-pages", "1")),
            "run without the Data API": (no_api, ("run",)),
        }
    )
    refused = (
        f"no answer from Kafka at {nowhere} within 15 s: Connect to ipv4#{nowhere} failed: "
        "Connection refused (check KAFKA_BOOTSTRAP_SERVERS)"
    )
    assert done["run"].one_line() == f"error: {refused}"
    state = f"'{env['CONNECTOR_NAME']}.state'"
    assert done["status"].one_line() == f"error: cannot read the state topic {state}: {refused}"
    assert done["reset"].one_line() == f"error: cannot read the state topic {state}: {refused}"
    assert done["tail"].one_line() == f"error: cannot read topic '{env['KAFKA_TOPIC']}': {refused}"
    assert done["check"].code == 1 and f"FAIL  kafka: {refused}" in done["check"].out
    for name in ("run", "status", "reset", "tail", "check"):
        assert 14 <= done[name].seconds < 40, f"{name}: {done[name].seconds:.1f} s"

    endpoint = f"http://{nowhere}/v2025.2.LTS/sessions/scores"
    for name in ("fetch", "run without the Data API"):
        line = done[name].one_line(warnings_allowed=True)  # each retry is a warning
        assert line.startswith(
            f"error: no usable answer from the Data API at {endpoint} after 5 attempts: "
            "connection problem: ConnectError"
        ), line
        assert "Connection refused" in line, line
    assert not created_by(no_api) & topics(kafka_broker)


class NotARegistry(BaseHTTPRequestHandler):
    """A web server that answers 404 to everything, as a wrong URL's server does."""

    def answer(self) -> None:
        body = b"<html>Not Found</html>"
        self.send_response(404)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = answer

    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture
def not_a_registry() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), NotARegistry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(10)


def test_a_wrong_secret_or_registry_stops_run_before_anything_is_created(
    source: Emulator,
    kafka_broker: KafkaBroker,
    schema_registry: SchemaRegistry,
    not_a_registry: str,
) -> None:
    """``run`` created its topics first and left them behind (and with an unreachable
    registry, printed 93 lines with three chained tracebacks)."""
    base = {**source.env(), "KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap_servers}
    wrong_secret = {**base, **identity(), "SCHEMA_REGISTRY_URL": schema_registry.url}
    wrong_secret["LEARNOSITY_CONSUMER_SECRET"] = "§"  # one character, not ASCII
    unreachable = f"http://127.0.0.1:{free_port()}"
    cases = {
        "wrong secret": wrong_secret,
        "registry unreachable": {**base, **identity(), "SCHEMA_REGISTRY_URL": unreachable},
        "registry 404": {**base, **identity(), "SCHEMA_REGISTRY_URL": not_a_registry},
    }
    done = run_all({name: (env, ("run",)) for name, env in cases.items()})

    line = done["wrong secret"].one_line()
    endpoint = source.endpoint_url("v2025.2.LTS")
    assert line.startswith(f"error: the Data API at {endpoint} refused the request: "), line
    assert "LEARNOSITY_CONSUMER_SECRET" in line, line
    assert_no_secret(done["wrong secret"], "§")
    assert f"{wrong_secret['KAFKA_TOPIC']}-value" not in subjects(schema_registry)

    for name, url in (("registry unreachable", unreachable), ("registry 404", not_a_registry)):
        line = done[name].one_line()
        assert url in line and "schema registry" in line, line
    existing = topics(kafka_broker)
    for name, env in cases.items():
        assert not created_by(env) & existing, name


def test_check_fails_a_server_that_is_not_a_registry(
    source: Emulator, kafka_broker: KafkaBroker, not_a_registry: str
) -> None:
    """``check`` said "OK schema registry: subject ... is new" for any server answering 404."""
    env = {
        **source.env(),
        **identity(),
        "KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap_servers,
        "SCHEMA_REGISTRY_URL": not_a_registry,
    }
    done = run_all({"check": (env, ("check",))})["check"]
    assert done.code == 1, done.out + done.err
    registry = [line for line in done.out.splitlines() if "schema registry" in line]
    assert len(registry) == 1 and registry[0].startswith("FAIL"), done.out
    assert not_a_registry in registry[0] and "does not answer as a schema registry" in registry[0]


def test_missing_settings_are_all_listed_at_once(source: Emulator) -> None:
    env = {
        "LEARNOSITY_BASE_URL": url_of(source),
        "KAFKA_TOPIC": "learnosity-scores.state",
        "LEARNOSITY_POLL_INTERVAL_SECONDS": "inf",
    }
    done = run_all({"run": (env, ("run",))})["run"]
    assert done.code == 2 and done.out == "" and "Traceback" not in done.err
    assert done.plain == [
        "config error: LEARNOSITY_CONSUMER_KEY: required but not set",
        "config error: LEARNOSITY_CONSUMER_SECRET: required but not set",
        "config error: LEARNOSITY_POLL_INTERVAL_SECONDS: Input should be a finite number",
        "config error: KAFKA_TOPIC: 'learnosity-scores.state' is the connector's state topic "
        "(<CONNECTOR_NAME>.state, CONNECTOR_NAME=learnosity-scores); events written there "
        "would break every later start: choose another KAFKA_TOPIC or CONNECTOR_NAME",
        "config error: KAFKA_BOOTSTRAP_SERVERS: required (host:port of your brokers)",
    ], done.err


# --- the five most likely mistakes, as docs/operations.md shows them ---------------------------
WALK_BEGIN = "<!-- five-mistakes:begin -->"
WALK_END = "<!-- five-mistakes:end -->"


def test_the_five_most_likely_mistakes_read_as_documented(
    source: Emulator, kafka_broker: KafkaBroker
) -> None:
    """Each mistake ends in one line (before it, ``run`` logs only that it serves its
    endpoints); the lines are the ones docs/operations.md shows, with this machine's
    ports replaced by the usual ones."""
    good = {
        "LEARNOSITY_BASE_URL": url_of(source),
        "LEARNOSITY_CONSUMER_KEY": source.consumer_key,
        "LEARNOSITY_CONSUMER_SECRET": source.consumer_secret,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap_servers,
    }
    wrong_port = f"127.0.0.1:{free_port()}"
    no_registry = f"127.0.0.1:{free_port()}"
    steps = [
        (
            "1. missing credentials: the consumer secret is not set",
            "learnosity-connector run",
            {k: v for k, v in good.items() if k != "LEARNOSITY_CONSUMER_SECRET"},
            ("run",),
        ),
        (
            "2. wrong secret",
            "learnosity-connector run",
            {**good, "LEARNOSITY_CONSUMER_SECRET": "not-the-secret"},
            ("run",),
        ),
        (
            "3. wrong broker address (a port nothing listens on)",
            "learnosity-connector run",
            {**good, "KAFKA_BOOTSTRAP_SERVERS": wrong_port},
            ("run",),
        ),
        (
            "4. missing topic (KAFKA_TOPIC misspelt)",
            "learnosity-connector tail",
            {**good, "KAFKA_TOPIC": "learnosity.session.scores"},
            ("tail", "--timeout", "1"),
        ),
        (
            "5. unreachable schema registry",
            "learnosity-connector run",
            {**good, "SCHEMA_REGISTRY_URL": f"http://{no_registry}/apis/ccompat/v7"},
            ("run",),
        ),
    ]
    done = run_all({title: (env, args) for title, _shown, env, args in steps})
    ports = {
        url_of(source).rsplit(":", 1)[1]: "8000",
        kafka_broker.bootstrap_servers.rsplit(":", 1)[1]: "9092",
        wrong_port.rsplit(":", 1)[1]: "9093",
        no_registry.rsplit(":", 1)[1]: "8081",
    }

    def usual(line: str) -> str:
        return re.sub(r"127\.0\.0\.1:(\d+)", lambda m: f"127.0.0.1:{ports.get(m[1], m[1])}", line)

    block = []
    for title, shown, _env, _args in steps:
        case = done[title]
        if title.startswith("1."):
            assert case.code == 2 and case.plain == [case.err.strip()], case.err
            line = case.plain[0]
        else:
            line = case.one_line()
        block += [f"# {title}", f"$ {shown}", usual(line)]
    captured = "\n".join(block)
    text = OPERATIONS.read_text(encoding="utf-8")
    assert WALK_BEGIN in text and WALK_END in text, "docs/operations.md lost the walk's markers"
    documented = text.split(WALK_BEGIN, 1)[1].split(WALK_END, 1)[0]
    documented = documented.strip().removeprefix("```text").removesuffix("```").strip()
    assert documented == captured, (
        "docs/operations.md's walk is not what the commands print now; the captured block:\n"
        + captured
    )
