"""Independent clients against the emulator over HTTP: the official SDK's own iterator,
and plain httpx2 signing with the SDK. Neither is the project's client."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx2
import pytest
from learnosity_sdk.exceptions import DataApiException
from learnosity_sdk.request import DataApi, Init

from connector.emulator import Emulator
from tests.fixtures.emulator import make_config

pytestmark = pytest.mark.integration

SESSIONS = 3000


@pytest.fixture(scope="module")
def big(request: pytest.FixtureRequest) -> Any:
    emulator = Emulator(make_config(sessions=SESSIONS, seed=21)).start()
    request.addfinalizer(emulator.stop)
    return emulator


def security(emulator: Emulator) -> dict[str, str]:
    return {"consumer_key": emulator.consumer_key, "domain": "localhost"}


def sdk_pages(emulator: Emulator, request: dict[str, Any]) -> list[dict[str, Any]]:
    return list(
        DataApi().request_iter(
            emulator.endpoint_url(), security(emulator), emulator.consumer_secret, request
        )
    )


def httpx_pages(emulator: Emulator, request: dict[str, Any]) -> list[dict[str, Any]]:
    """Page until the empty page, as docs/data-api.md says a client must."""
    pages = []
    url = emulator.endpoint_url()
    with httpx2.Client(timeout=10) as client:
        token = None
        while True:
            packet = dict(request, **({"next": token} if token else {}))
            form = Init("data", security(emulator), emulator.consumer_secret, packet, "get")
            fields = form.generate()
            assert isinstance(fields, dict)
            response = client.post(url, data=fields)
            assert response.status_code == 200, response.text
            page = response.json()
            assert page["meta"]["status"] is True
            pages.append(page)
            if not page["data"]:
                return pages
            token = page["meta"]["next"]


def test_the_official_sdk_iterates_through_every_session(big: Emulator) -> None:
    pages = sdk_pages(big, {"sort": "asc", "limit": 50})
    records = [r for p in pages for r in p["data"]]
    assert all(len(p["data"]) <= 50 for p in pages)
    assert len(records) == SESSIONS
    assert {r["session_id"] for r in records} == {s["session_id"] for s in big.sessions()}
    # request_iter stops at the empty page, which carries no next token
    assert pages[-1]["data"] == [] and "next" not in pages[-1]["meta"]
    assert all("next" in p["meta"] for p in pages[:-1])


def test_httpx_signing_with_the_sdk_sees_the_same_records(big: Emulator) -> None:
    by_sdk = [r for p in sdk_pages(big, {"sort": "asc", "limit": 50}) for r in p["data"]]
    pages = httpx_pages(big, {"sort": "asc", "limit": 50})
    by_httpx = [r for p in pages for r in p["data"]]
    assert by_httpx == by_sdk
    assert max(len(p["data"]) for p in pages) == 50


def test_both_clients_agree_with_filters_and_descending_order(big: Emulator) -> None:
    request = {
        "sort": "desc",
        "limit": 33,
        "status": ["Completed"],
        "include_response_scores": True,
    }
    by_sdk = [r for p in sdk_pages(big, request) for r in p["data"]]
    by_httpx = [r for p in httpx_pages(big, request) for r in p["data"]]
    assert by_sdk == by_httpx
    assert by_sdk and all(r["status"] == "Completed" and "responses" in r for r in by_sdk)
    updated = [r["dt_updated"] for r in by_sdk]
    assert updated == sorted(updated, reverse=True)


def test_long_polling_with_the_last_token_sees_later_changes(
    emulator_factory: Callable[..., Emulator],
) -> None:
    emulator = emulator_factory(sessions=120)
    pages = httpx_pages(emulator, {"sort": "asc"})
    token = pages[-2]["meta"]["next"]
    assert httpx_pages(emulator, {"sort": "asc", "next": token})[0]["data"] == []

    session_id = pages[0]["data"][0]["session_id"]
    emulator.workload.save(session_id)
    created = emulator.workload.create()
    later = httpx_pages(emulator, {"sort": "asc", "next": token})
    assert [r["session_id"] for p in later for r in p["data"]] == [
        session_id,
        created.session_id,
    ]


def test_the_sdk_raises_on_errors(emulator_factory: Callable[..., Emulator]) -> None:
    emulator = emulator_factory(sessions=5)
    with pytest.raises(DataApiException, match="403"):
        list(
            DataApi().request_iter(
                emulator.endpoint_url(), security(emulator), "wrong-secret", {"sort": "asc"}
            )
        )
    response = DataApi().request(
        emulator.endpoint_url(), security(emulator), emulator.consumer_secret, {"limit": 99}
    )
    assert response.status_code == 400
    assert json.loads(response.text)["meta"]["code"] == 20000


def test_http_level_answers(emulator: Emulator) -> None:
    assert emulator.url is not None
    with httpx2.Client(base_url=emulator.url, timeout=10) as client:
        missing = client.post("/v2025.2.LTS/nothing/here", data={})
        assert missing.status_code == 404
        assert missing.json()["meta"]["status"] is False
        get = client.get(emulator.endpoint_url())
        assert get.status_code == 405
        assert get.headers["allow"] == "POST"
        # keep-alive: several requests on one connection
        for _ in range(3):
            assert client.post("/v2025.2.LTS/sessions/scores", data={}).status_code == 400
    with httpx2.Client(timeout=10) as client:
        chunked = client.post(emulator.endpoint_url(), content=iter([b"a=b"]))
        assert chunked.status_code == 411
