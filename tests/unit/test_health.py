"""Health semantics and the HTTP endpoints, on a fake clock and a real local socket.

The server's timeouts are set to fractions of a second here; each wait is for a condition
(a response, the end of a stream), bounded by the sockets' own timeouts.
"""

import http.client
import json
import select
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from connector.errors import ConfigError
from connector.observability import health as health_module
from connector.observability.health import Health, HealthServer
from connector.observability.metrics import Metrics

TIMEOUT = 5.0  # seconds any socket operation may take: never reached when all is well


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_liveness_follows_the_heartbeat() -> None:
    clock = Clock()
    health = Health(liveness_timeout=10, clock=clock)
    health.restored = True  # the loop runs from here
    assert health.live()[0]
    clock.now += 11
    assert not health.live()[0]
    health.beat()
    assert health.live()[0]


def test_a_long_start_up_is_live_until_the_start_up_timeout() -> None:
    clock = Clock()
    health = Health(liveness_timeout=10, startup_timeout=100, clock=clock)
    clock.now += 90  # restoring a large state topic: no loop beats yet
    assert health.live() == (True, "starting")
    health.restored = True  # restoring counts as the first beat
    clock.now += 9
    assert health.live() == (True, "ok")
    clock.now += 2
    assert not health.live()[0]

    stuck = Health(liveness_timeout=10, startup_timeout=100, clock=clock)
    clock.now += 101
    live, reason = stuck.live()
    assert not live and "start-up not finished" in reason


def test_readiness_needs_restore_first_poll_and_kafka() -> None:
    clock = Clock()
    kafka_up = [True]
    health = Health(kafka_grace=5, kafka_probe=lambda: kafka_up[0], probe_interval=0, clock=clock)
    assert health.ready() == (False, "restoring state")
    health.restored = True
    assert not health.ready()[0]
    health.first_poll = True
    assert health.ready() == (True, "ok")
    kafka_up[0] = False
    clock.now += 3
    assert health.ready()[0]  # a short outage is ridden through
    clock.now += 3
    ready, reason = health.ready()
    assert not ready and "Kafka unreachable" in reason
    kafka_up[0] = True
    assert health.ready()[0]


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture
def server() -> Iterator[HealthServer]:
    metrics = Metrics("v2025.2.LTS")
    srv = HealthServer(0, metrics, Health(), "127.0.0.1").start()
    yield srv
    srv.stop()


def test_endpoints(server: HealthServer) -> None:
    base = f"http://127.0.0.1:{server.port}"
    status, body = get(f"{base}/readyz")
    assert status == 503 and json.loads(body)["reason"] == "restoring state"
    server.health.restored = server.health.first_poll = True
    assert get(f"{base}/readyz")[0] == 200
    assert get(f"{base}/healthz")[0] == 200
    status, body = get(f"{base}/metrics")
    text = body.decode()
    assert status == 200
    assert 'learnosity_connector_build_info{api_version="v2025.2.LTS"' in text
    assert "learnosity_connector_ready 1.0" in text
    assert get(f"{base}/nope")[0] == 404


def test_lag_is_now_minus_the_position() -> None:
    metrics = Metrics()
    assert "learnosity_connector_lag_seconds 0.0" in metrics.render().decode()
    metrics.set_position(1.0)
    lag_line = next(
        line
        for line in metrics.render().decode().splitlines()
        if line.startswith("learnosity_connector_lag_seconds ")
    )
    assert float(lag_line.split()[1]) > 1e9


def test_librdkafka_statistics() -> None:
    metrics = Metrics()
    stats = {
        "msg_cnt": 42,
        "brokers": {"b1": {"rtt": {"avg": 2500, "cnt": 3}}, "b2": {"rtt": {"avg": 0, "cnt": 0}}},
    }
    metrics.librdkafka_stats(json.dumps(stats))
    text = metrics.render().decode()
    assert "learnosity_connector_producer_queue_messages 42.0" in text
    assert "learnosity_connector_broker_rtt_seconds 0.0025" in text


# --- the server: HEAD, keep-alive, timeouts, the connection cap --------------------------


def serve(health: Health | None = None, **options: Any) -> HealthServer:
    if health is None:
        health = Health()
        health.restored = health.first_poll = True
    return HealthServer(0, Metrics("v2025.2.LTS"), health, "127.0.0.1", **options).start()


@pytest.fixture
def servers() -> Iterator[Callable[..., HealthServer]]:
    started: list[HealthServer] = []

    def make(health: Health | None = None, **options: Any) -> HealthServer:
        started.append(serve(health, **options))
        return started[-1]

    yield make
    for server in started:
        server.stop()


def connect(server: HealthServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)


def read_to_end(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (a reset fails the test)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.001)


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/nope"])
def test_head_answers_like_get_without_the_body(
    servers: Callable[..., HealthServer], path: str
) -> None:
    server = servers()
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
    connection.request("GET", path)
    got = connection.getresponse()
    body = got.read()
    connection.request("HEAD", path)  # the same connection: HEAD leaves no stray bytes
    head = connection.getresponse()
    assert head.read() == b""
    assert head.status == got.status != 501
    assert head.getheader("Content-Type") == got.getheader("Content-Type")
    if path != "/metrics":  # a scrape's histograms move between two renders
        assert head.getheader("Content-Length") == str(len(body))
    connection.request("GET", "/healthz")
    assert connection.getresponse().status == 200
    connection.close()


def test_other_methods_are_refused_with_allow(servers: Callable[..., HealthServer]) -> None:
    server = servers()
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
    connection.request("POST", "/healthz", body=b"{}")
    response = connection.getresponse()
    response.read()
    assert response.status == 405 and response.getheader("Allow") == "GET, HEAD"
    connection.request("GET", "/healthz?verbose=1")  # the body was read: still usable
    assert connection.getresponse().status == 200
    connection.close()


def test_http_1_0_and_connection_close_end_the_connection(
    servers: Callable[..., HealthServer],
) -> None:
    server = servers()
    for request in (
        b"GET /healthz HTTP/1.0\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET http://x/healthz HTTP/1.1\r\nConnection: close\r\n\r\n",
    ):
        with connect(server) as sock:
            sock.sendall(request)
            answer = read_to_end(sock)
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and b"Connection: close" in answer
        assert answer.endswith(b'{"status": "ok", "reason": "ok"}')


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nno colon here\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\n folded: header\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400),
        (b"GET /healthz HTTP/1.1\r\nContent-Length: 100000\r\n\r\n", 413),
        (b"GET /healthz HTTP/2.0\r\n\r\n", 505),
        (b"GET /healthz HTTP/1.1\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431),
    ],
)
def test_malformed_requests_are_answered_and_closed(
    servers: Callable[..., HealthServer], request_bytes: bytes, status: int
) -> None:
    server = servers()
    with connect(server) as sock:
        sock.sendall(request_bytes)
        answer = read_to_end(sock)  # a clean close: the server read what was sent
    assert answer.startswith(f"HTTP/1.1 {status} ".encode())
    assert b"Connection: close" in answer


def test_a_silent_connection_is_closed_after_the_read_timeout(
    servers: Callable[..., HealthServer],
) -> None:
    server = servers(read_timeout=0.3)
    with connect(server) as sock:
        started = time.monotonic()
        assert read_to_end(sock) == b""  # nothing was asked, nothing is answered
        waited = time.monotonic() - started
    assert 0.25 <= waited < 0.3 + 2
    wait_until(lambda: server.connections == 0, "the server to forget the connection")


def test_a_kept_alive_connection_is_closed_after_the_idle_timeout(
    servers: Callable[..., HealthServer],
) -> None:
    server = servers(read_timeout=0.2, idle_timeout=1.0)
    with connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        response = http.client.HTTPResponse(sock)
        response.begin()
        assert response.status == 200 and response.read()
        answered = time.monotonic()
        assert read_to_end(sock) == b""  # then idle: closed after idle_timeout, not the read one
        waited = time.monotonic() - answered
    assert 0.5 < waited < 1.0 + 2  # the idle timeout's doing, not the read timeout's


def test_a_slowloris_request_is_cut_off_at_the_read_timeout(
    servers: Callable[..., HealthServer],
) -> None:
    """Bytes trickling in do not extend the deadline: the whole head has read_timeout."""
    server = servers(read_timeout=0.5, idle_timeout=30)
    trickle = b"GET /healthz HTTP/1.1\r\n" + b"X-Padding: " + b"a" * 200
    with connect(server) as sock:
        started = time.monotonic()
        sent = 0
        while not select.select([sock], [], [], 0.02)[0]:  # a byte every 20 ms until answered
            assert sent < len(trickle), "the server waited for the whole trickle"
            sock.sendall(trickle[sent : sent + 1])
            sent += 1
        answer = read_to_end(sock)
        waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert 0.45 <= waited < 0.5 + 2


def test_the_cap_closes_the_connections_that_waited_longest(
    servers: Callable[..., HealthServer],
) -> None:
    server = servers(max_connections=4)
    held = []
    for _ in range(4):  # one at a time, so the server saw them in this order
        held.append(connect(server))
        wait_until(lambda: server.connections == len(held), f"{len(held)} connections")
    newer = [connect(server), connect(server)]
    for oldest in held[:2]:  # closed cleanly (FIN, no reset), oldest first
        assert read_to_end(oldest) == b""
        oldest.close()
    assert server.connections == 4
    for sock in [*held[2:], *newer]:  # the four kept are served
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert read_to_end(sock).startswith(b"HTTP/1.1 200 OK\r\n")
        sock.close()


def test_a_client_that_does_not_read_its_responses_makes_room_too(
    servers: Callable[..., HealthServer],
) -> None:
    """Pipelined scrapes never read: the server waits to write, and that wait is evictable."""
    server = servers(max_connections=1)
    with socket.socket() as greedy:
        greedy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        greedy.settimeout(TIMEOUT)
        greedy.connect(("127.0.0.1", server.port))
        greedy.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 2000)  # ~16 MB to answer

        def stalled() -> bool:  # the server waits for the client to take its responses
            transports = [c.writer.transport for c in tuple(server._connections)]
            return any(
                t.get_write_buffer_size() > t.get_write_buffer_limits()[1] for t in transports
            )

        wait_until(stalled, "the server to wait on a client that does not read")
        with connect(server) as probe:
            probe.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert read_to_end(probe).startswith(b"HTTP/1.1 200 OK\r\n")


class BlockingHealth(Health):
    """``ready()`` waits for ``gate``: a Kafka probe that hangs."""

    def __init__(self) -> None:
        super().__init__()
        self.restored = self.first_poll = True
        self.gate = threading.Event()
        self.entered = threading.Semaphore(0)

    def ready(self) -> tuple[bool, str]:
        self.entered.release()
        assert self.gate.wait(TIMEOUT)
        return super().ready()


def test_healthz_answers_while_every_handler_thread_waits_on_kafka(
    servers: Callable[..., HealthServer],
) -> None:
    health = BlockingHealth()
    server = servers(health, handler_threads=2)
    stuck = [connect(server) for _ in range(3)]  # one more than there are threads
    for sock in stuck:
        sock.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    for _ in range(2):
        assert health.entered.acquire(timeout=TIMEOUT)
    started = time.monotonic()
    status, body = get(f"http://127.0.0.1:{server.port}/healthz")
    assert status == 200 and json.loads(body)["reason"] == "ok"
    assert time.monotonic() - started < 1
    health.gate.set()
    for sock in stuck:
        assert read_to_end(sock).startswith(b"HTTP/1.1 200 OK\r\n")
        sock.close()


def test_a_new_connection_is_turned_away_when_every_one_is_being_answered(
    servers: Callable[..., HealthServer],
) -> None:
    health = BlockingHealth()
    server = servers(health, max_connections=2, handler_threads=2)
    busy = [connect(server) for _ in range(2)]
    for sock in busy:
        sock.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    for _ in range(2):
        assert health.entered.acquire(timeout=TIMEOUT)
    with connect(server) as extra:
        extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = read_to_end(extra)  # the 503, then a clean end: the request was read
    assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"Retry-After: 1" in answer and b"Connection: close" in answer
    health.gate.set()
    for sock in busy:
        assert read_to_end(sock).startswith(b"HTTP/1.1 200 OK\r\n")
        sock.close()


def test_the_bind_address_is_the_one_listened_on(servers: Callable[..., HealthServer]) -> None:
    health = Health()
    everywhere = HealthServer(0, Metrics(), health)
    assert everywhere.address == "0.0.0.0"  # the default: the pod's IP, for the kubelet
    everywhere.stop()
    local = servers()
    assert local.address == "127.0.0.1"
    assert get(f"http://127.0.0.1:{local.port}/healthz")[0] == 200


def test_an_address_it_cannot_listen_on_is_a_config_error(
    servers: Callable[..., HealthServer],
) -> None:
    taken = servers()
    with pytest.raises(ConfigError) as port_in_use:
        HealthServer(taken.port, Metrics(), Health(), "127.0.0.1")
    assert "cannot listen" in port_in_use.value.problems[0]
    with pytest.raises(ConfigError) as not_an_address:
        HealthServer(0, Metrics(), Health(), "not an address")
    assert "HTTP_BIND_ADDRESS 'not an address'" in not_an_address.value.problems[0]


def test_stop_closes_open_connections_and_can_be_called_twice() -> None:
    server = serve()
    sock = connect(server)
    wait_until(lambda: server.connections == 1, "the connection")
    server.stop()
    assert read_to_end(sock) == b""
    sock.close()
    server.stop()
    with pytest.raises(ConnectionRefusedError):
        connect(server)


def test_the_operations_guide_states_the_limits_in_force() -> None:
    guide = (Path(__file__).parents[2] / "docs" / "operations.md").read_text()
    endpoints = guide.split("## Endpoints", 1)[1].split("### Probe semantics", 1)[0]
    for seconds in (
        health_module.READ_TIMEOUT,
        health_module.IDLE_TIMEOUT,
        health_module.WRITE_TIMEOUT,
    ):
        assert f"**{seconds:g} s**" in endpoints
    assert f"**{health_module.MAX_CONNECTIONS}** connections" in endpoints
    assert f"on all {health_module.MAX_CONNECTIONS} is" in endpoints
    assert f"on {health_module.HANDLER_THREADS} threads" in endpoints
