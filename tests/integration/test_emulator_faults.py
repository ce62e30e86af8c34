"""Each injected fault, seen by a plain httpx2 client over a real socket."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx2
import pytest
from learnosity_sdk.request import Init

from connector.emulator import Emulator

pytestmark = pytest.mark.integration


def post(client: httpx2.Client, emulator: Emulator, request: dict[str, Any]) -> httpx2.Response:
    form = Init(
        "data",
        {"consumer_key": emulator.consumer_key, "domain": "localhost"},
        emulator.consumer_secret,
        request,
        "get",
    )
    fields = form.generate()
    assert isinstance(fields, dict)
    return client.post(emulator.endpoint_url(), data=fields)


@pytest.fixture
def client() -> Any:
    with httpx2.Client(timeout=10) as client:
        yield client


def test_no_fault_by_default(emulator: Emulator, client: httpx2.Client) -> None:
    for _ in range(20):
        assert post(client, emulator, {"limit": 5}).status_code == 200
    assert emulator.stats()["faults"] == {}


def test_latency_fixed_and_jittered(
    emulator_factory: Callable[..., Emulator], client: httpx2.Client
) -> None:
    emulator = emulator_factory(faults={"latency_ms": 150, "latency_jitter_ms": 100})
    started = time.perf_counter()
    assert post(client, emulator, {"limit": 5}).status_code == 200
    assert time.perf_counter() - started >= 0.15


def test_error_rate_answers_500_502_503(
    emulator_factory: Callable[..., Emulator], client: httpx2.Client
) -> None:
    emulator = emulator_factory(faults={"error_rate": 1.0})
    statuses = {post(client, emulator, {}).status_code for _ in range(30)}
    assert statuses == {500, 502, 503}
    gateway = next(
        r for r in (post(client, emulator, {}) for _ in range(30)) if r.status_code == 502
    )
    assert gateway.headers["content-type"].startswith("text/html")


def test_429_bursts(emulator_factory: Callable[..., Emulator], client: httpx2.Client) -> None:
    emulator = emulator_factory(faults={"burst_429_every": 5, "burst_429_length": 2})
    statuses = [post(client, emulator, {}).status_code for _ in range(10)]
    assert statuses == [200, 200, 200, 429, 429] * 2
    body = post(client, emulator, {}).json()  # 11th: the next cycle starts fine
    assert body["meta"]["status"] is True
    burst = [post(client, emulator, {}) for _ in range(4)][-1]
    assert burst.json()["meta"]["code"] == 42000


def test_truncated_body(emulator_factory: Callable[..., Emulator], client: httpx2.Client) -> None:
    emulator = emulator_factory(faults={"truncate_rate": 1.0})
    with pytest.raises(httpx2.RemoteProtocolError):
        post(client, emulator, {"limit": 50})


def test_status_false_with_http_200(
    emulator_factory: Callable[..., Emulator], client: httpx2.Client
) -> None:
    emulator = emulator_factory(faults={"status_false_rate": 1.0})
    response = post(client, emulator, {})
    assert response.status_code == 200
    meta = response.json()["meta"]
    assert meta["status"] is False and isinstance(meta["code"], int)


def test_stalled_cursor_returns_the_same_token_and_page(
    emulator_factory: Callable[..., Emulator], client: httpx2.Client
) -> None:
    emulator = emulator_factory(sessions=300, faults={"stall_rate": 1.0})
    first = post(client, emulator, {"sort": "asc", "limit": 10}).json()
    token = first["meta"]["next"]
    again = post(client, emulator, {"sort": "asc", "limit": 10, "next": token}).json()
    assert again["meta"]["next"] == token
    assert again["data"] == first["data"]
    assert emulator.stats()["faults"] == {"stall": 1}


def test_malformed_record_is_logged_in_the_truth(
    emulator_factory: Callable[..., Emulator], client: httpx2.Client
) -> None:
    emulator = emulator_factory(sessions=100, faults={"malformed_rate": 1.0})
    seen = 0
    broken = 0
    for _ in range(6):
        data = post(client, emulator, {"sort": "asc", "limit": 10}).json()["data"]
        seen += len(data)
        broken += sum(
            1
            for r in data
            if not isinstance(r.get("session_id"), str) or not isinstance(r.get("user_id"), str)
        )
    faults = [t for t in emulator.truth_records() if t["kind"] == "fault"]
    assert broken == len(faults) == 6
    assert {f["how"] for f in faults} <= {"missing_ids", "wrong_types"}
    assert all(f["fault"] == "malformed" and f["session_id"] for f in faults)
    assert seen == 60


def test_connection_reset(emulator_factory: Callable[..., Emulator], client: httpx2.Client) -> None:
    emulator = emulator_factory(faults={"reset_rate": 1.0})
    with pytest.raises((httpx2.ReadError, httpx2.RemoteProtocolError)):
        post(client, emulator, {})


def test_faults_are_drawn_from_the_seed(emulator_factory: Callable[..., Emulator]) -> None:
    outcomes = []
    for _ in range(2):
        emulator = emulator_factory(seed=5, faults={"error_rate": 0.3, "status_false_rate": 0.2})
        with httpx2.Client(timeout=10) as client:
            outcomes.append(
                [
                    (
                        r.status_code,
                        r.json()["meta"]["status"]
                        if r.status_code != 502 and r.status_code != 503
                        else None,
                    )
                    for r in (post(client, emulator, {}) for _ in range(40))
                ]
            )
    assert outcomes[0] == outcomes[1]
    assert {s for s, _ in outcomes[0]} >= {200, 500}
