"""Health semantics and the HTTP endpoints, on a fake clock and a real local socket."""

import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from connector.observability.health import Health, HealthServer
from connector.observability.metrics import Metrics


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
    srv = HealthServer(0, metrics, Health(), host="127.0.0.1").start()
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
