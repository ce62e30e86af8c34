"""The emulator's endpoint without HTTP: validation, signature, paging rules, rate limit."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from connector.emulator import Emulator
from connector.emulator.ratelimit import RateLimiter
from connector.emulator.security import sign, stamp
from tests.fixtures.emulator import form_body, make_config, sdk_form

PATH = "/v2025.2.LTS/sessions/scores"


def make(**options: Any) -> Emulator:
    return Emulator(make_config(**options))


def call(
    emulator: Emulator,
    request: dict[str, Any],
    *,
    secret: str | None = None,
    consumer: str | None = None,
    path: str = PATH,
    method: str = "POST",
    **sign: Any,
) -> tuple[int, dict[str, Any]]:
    form = sdk_form(
        consumer or emulator.consumer_key, secret or emulator.consumer_secret, request, **sign
    )
    reply = emulator.endpoint.handle(method, path, form_body(form))
    return reply.status, json.loads(reply.body)


def error(status_and_body: tuple[int, dict[str, Any]]) -> tuple[int, int]:
    status, body = status_and_body
    assert body["meta"]["status"] is False
    assert body["data"] is None
    return status, body["meta"]["code"]


@pytest.fixture(scope="module")
def em() -> Emulator:
    return make(sessions=300, seed=3)


# --- request validation -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("request_packet", "expected"),
    [
        ({"bogus": 1}, (400, 20000)),
        ({"limit": 51}, (400, 20000)),
        ({"limit": 0}, (400, 20000)),
        ({"limit": "many"}, (400, 20000)),
        ({"limit": True}, (400, 20000)),
        ({"sort": "up"}, (400, 20000)),
        ({"status": ["Finished"]}, (400, 20000)),
        ({"status": "Completed"}, (400, 20000)),
        ({"user_id": [1, 2]}, (400, 20000)),
        ({"activity_id": "a"}, (400, 20000)),
        ({"session_id": [f"s{i}" for i in range(1001)]}, (400, 20002)),
        ({"user_id": [f"u{i}" for i in range(1001)]}, (400, 20002)),
        ({"activity_id": [f"a{i}" for i in range(1001)]}, (400, 20002)),
        ({"include_response_scores": "yes"}, (400, 20000)),
        ({"mintime": "yesterday"}, (400, 20000)),
        ({"maxtime_started": [1]}, (400, 20000)),
        ({"mintime_completed": True}, (400, 20000)),
        ({"next": "not-a-token"}, (400, 20000)),
        ({"next": 12}, (400, 20000)),
    ],
)
def test_each_invalid_parameter_is_refused(
    em: Emulator, request_packet: dict[str, Any], expected: tuple[int, int]
) -> None:
    assert error(call(em, request_packet)) == expected


def test_valid_parameters_are_accepted(em: Emulator) -> None:
    status, body = call(
        em,
        {
            "limit": 50,
            "sort": "asc",
            "status": ["Completed", "Pending Scoring"],
            "user_id": ["u"],
            "activity_id": ["a"],
            "session_id": ["s"] * 1000,
            "include_response_scores": True,
            "mintime": 0,
            "maxtime": "2100-01-01T00:00:00Z",
            "mintime_started": "1970-01-01",
            "maxtime_started": "4102444800",
            "mintime_completed": 1.5,
            "maxtime_completed": "2100-01-01T00:00:00+02:00",
            "meta": {"anything": ["the SDK's telemetry is ignored"]},
        },
    )
    assert status == 200
    assert body["meta"]["status"] is True
    assert body["data"] == []


def test_missing_form_fields_and_bad_json() -> None:
    em = make(sessions=1)
    reply = em.endpoint.handle("POST", PATH, b"security=%7B%7D&action=get")
    assert (reply.status, json.loads(reply.body)["meta"]["code"]) == (400, 20000)
    # well signed, but the request is not JSON
    signed = sign(em.consumer_key, em.consumer_secret, "[1,2")
    reply = em.endpoint.handle("POST", PATH, form_body(signed))
    assert (reply.status, json.loads(reply.body)["meta"]["code"]) == (400, 20000)


# --- security -------------------------------------------------------------------------------
def test_wrong_secret_is_41003(em: Emulator) -> None:
    assert error(call(em, {"limit": 1}, secret="not-the-secret")) == (403, 41003)


def test_unknown_consumer_is_41002(em: Emulator) -> None:
    assert error(call(em, {"limit": 1}, consumer="someone-else")) == (403, 41002)


@pytest.mark.parametrize("minutes", [-7, 8])
def test_stale_or_future_timestamp_is_41004(em: Emulator, minutes: int) -> None:
    timestamp = stamp(time.time() + minutes * 60)
    assert error(call(em, {"limit": 1}, timestamp=timestamp)) == (403, 41004)


def test_timestamp_within_the_window_is_accepted(em: Emulator) -> None:
    status, _ = call(em, {"limit": 1}, timestamp=stamp(time.time() - 4 * 60))
    assert status == 200


def test_tampered_request_fails_the_signature(em: Emulator) -> None:
    form = sdk_form(em.consumer_key, em.consumer_secret, {"limit": 1})
    form["request"] = form["request"].replace('"limit":1', '"limit":2')
    reply = em.endpoint.handle("POST", PATH, form_body(form))
    assert (reply.status, json.loads(reply.body)["meta"]["code"]) == (403, 41003)


def test_domain_not_allowed_is_41005() -> None:
    em = make(sessions=1, allowed_domains=("school.example",))
    assert error(call(em, {}, domain="elsewhere.example")) == (403, 41005)
    assert call(em, {}, domain="school.example")[0] == 200


def test_action_other_than_get_is_refused(em: Emulator) -> None:
    assert error(call(em, {}, action="set")) == (400, 20000)


def test_path_method_and_version(em: Emulator) -> None:
    assert error(call(em, {}, path="/v2025.2.LTS/sessions/responses")) == (404, 404)
    assert error(call(em, {}, method="GET")) == (405, 405)
    assert error(call(em, {}, path="/v2019.1.LTS/sessions/scores")) == (400, 43000)
    assert error(call(em, {}, path="/vNEXT/sessions/scores")) == (400, 43000)
    for version in ("v2025.2.LTS", "v2023.3.LTS", "latest", "developer"):
        assert call(em, {}, path=f"/{version}/sessions/scores")[0] == 200


# --- pages and the next token ---------------------------------------------------------------
def page(em: Emulator, **request: Any) -> dict[str, Any]:
    status, body = call(em, {"sort": "asc", **request})
    assert status == 200, body
    return body


def drain(em: Emulator, **request: Any) -> tuple[list[dict[str, Any]], str | None]:
    """Every record from the start (or the given token) to the first empty page."""
    records: list[dict[str, Any]] = []
    token = request.pop("next", None)
    while True:
        body = page(em, **request, **({"next": token} if token else {}))
        if not body["data"]:
            assert "next" not in body["meta"]
            return records, token
        assert body["meta"]["records"] == len(body["data"]) <= request.get("limit", 50)
        assert body["meta"]["next"]
        token = body["meta"]["next"]
        records.extend(body["data"])


def test_meta_of_a_page(em: Emulator) -> None:
    body = page(em, limit=7)
    meta = body["meta"]
    assert meta["status"] is True
    assert meta["records"] == 7 == len(body["data"])
    assert isinstance(meta["next"], str)
    assert abs(meta["timestamp"] - time.time()) < 5


def test_ascending_order_is_by_updated_time_and_covers_every_session(em: Emulator) -> None:
    records, _ = drain(em, limit=50)
    assert len(records) == len({r["session_id"] for r in records}) == len(em.store)
    updated = [r["dt_updated"] for r in records]
    assert updated == sorted(updated)


def test_descending_is_the_reverse(em: Emulator) -> None:
    ascending, _ = drain(em, limit=50)
    records: list[dict[str, Any]] = []
    token = None
    while True:
        body = page(em, sort="desc", limit=13, **({"next": token} if token else {}))
        if not body["data"]:
            break
        token = body["meta"]["next"]
        records.extend(body["data"])
    assert [r["session_id"] for r in records] == [r["session_id"] for r in reversed(ascending)]


def test_the_order_is_stable_across_reads(em: Emulator) -> None:
    first, _ = drain(em, limit=17)
    second, _ = drain(em, limit=50)
    assert [r["session_id"] for r in first] == [r["session_id"] for r in second]


def test_updated_sessions_come_back_after_the_last_token() -> None:
    em = make(sessions=120)
    _, token = drain(em)
    assert token is not None
    some = [s.session_id for s in list(em.store.sessions())[:3]]
    em.workload.save(some[0])
    em.workload.discard(some[1])
    created = em.workload.create()
    records, new_token = drain(em, next=token)
    assert [r["session_id"] for r in records] == [some[0], some[1], created.session_id]
    assert new_token != token
    again, _ = drain(em, next=new_token)
    assert again == []


def test_filters(em: Emulator) -> None:
    states = list(em.store.sessions())
    user = states[0].user_id
    activity = states[1].activity_id
    by_user, _ = drain(em, user_id=[user])
    assert {r["session_id"] for r in by_user} == {s.session_id for s in states if s.user_id == user}
    by_activity, _ = drain(em, activity_id=[activity], limit=9)
    assert {r["session_id"] for r in by_activity} == {
        s.session_id for s in states if s.activity_id == activity
    }
    chosen = [states[5].session_id, states[50].session_id, "no-such-session"]
    by_session, _ = drain(em, session_id=chosen)
    assert [r["session_id"] for r in by_session] == chosen[:2]
    pending, _ = drain(em, status=["Pending Scoring", "Discarded"])
    assert {r["status"] for r in pending} <= {"Pending Scoring", "Discarded"}
    assert len(pending) == sum(s.status in ("Pending Scoring", "Discarded") for s in states)


def test_time_bounds_are_inclusive_whole_seconds(em: Emulator) -> None:
    states = list(em.store.sessions())
    middle = states[len(states) // 2]
    second = middle.updated_us // 1_000_000
    after, _ = drain(em, mintime=second)
    assert after[0]["session_id"] == next(
        s.session_id for s in states if s.updated_us // 1_000_000 >= second
    )
    before, _ = drain(em, maxtime=second)
    assert {r["session_id"] for r in before} == {
        s.session_id for s in states if s.updated_us // 1_000_000 <= second
    }
    iso = middle.to_record()["dt_updated"][:19] + "Z"
    assert drain(em, mintime=iso)[0] == after
    started, _ = drain(em, mintime_started=second)
    assert {r["session_id"] for r in started} == {
        s.session_id for s in states if s.started_us // 1_000_000 >= second
    }
    completed, _ = drain(em, maxtime_completed=second)
    assert {r["session_id"] for r in completed} == {
        s.session_id
        for s in states
        if s.completed_us is not None and s.completed_us // 1_000_000 <= second
    }


def test_include_response_scores_adds_responses(em: Emulator) -> None:
    without = page(em, limit=5)["data"]
    with_responses = page(em, limit=5, include_response_scores=True)["data"]
    assert all("responses" not in r for r in without)
    for record in with_responses:
        responses = record["responses"]
        assert len(responses) == sum(s["num_questions"] for s in record["subscores"])
        assert {"response_id", "score", "max_score", "attempted"} <= set(responses[0])
        if record["score"] is not None:
            assert sum(r["score"] or 0 for r in responses) == pytest.approx(record["score"])


def test_records_look_like_the_documented_ones(em: Emulator) -> None:
    records, _ = drain(em)
    for record in records:
        assert {"user_id", "activity_id", "session_id", "score", "max_score", "status"} <= set(
            record
        )
        assert {"dt_started", "dt_saved", "dt_completed", "dt_updated"} <= set(record)
        for sub in record["subscores"]:
            assert set(sub) == {
                "id",
                "title",
                "num_questions",
                "num_attempted",
                "score",
                "max_score",
                "attempted_max_score",
                "items",
            }
    assert any(isinstance(r["score"], float) for r in records), "some scores are fractional"
    assert any(r["score"] is None for r in records), "unscored sessions have null scores"
    titles = {s["title"] for r in records for s in r["subscores"]}
    assert any(not t.isascii() for t in titles)


# --- rate limit ------------------------------------------------------------------------------
def test_rate_limit_per_consumer() -> None:
    em = make(sessions=10, rate_limit=3, extra_consumers={"other": "other-secret"})
    assert [call(em, {})[0] for _ in range(3)] == [200, 200, 200]
    assert error(call(em, {})) == (429, 42000)
    # another consumer has its own quota
    assert call(em, {}, consumer="other", secret="other-secret")[0] == 200


def test_rate_limit_window_passes() -> None:
    limiter = RateLimiter(limit=2, window_seconds=5)
    assert [limiter.allow("k", 100.0) for _ in range(3)] == [True, True, False]
    assert limiter.allow("k", 104.9) is False
    assert limiter.allow("k", 105.0) is True
    assert limiter.retry_after(106.0) == pytest.approx(4.0)
    assert RateLimiter(limit=0).allow("k", 1.0)
