"""Outcome classification of Data API responses."""

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.errors import (
    ConnectorError,
    RateLimitedError,
    ResponseTooLargeError,
    SourceFatalError,
    TransientError,
)
from connector.learnosity.responses import parse_response, retry_after_seconds
from connector.models import Page


def body(meta: dict[str, Any], data: object = None) -> bytes:
    return json.dumps({"meta": meta, "data": data}).encode()


def test_a_page() -> None:
    records = [{"session_id": "s1", "user_id": "u1"}]
    page = parse_response(200, {}, body({"status": True, "next": "1.2", "timestamp": 7}, records))
    assert page.records == tuple(records)
    assert page.next_token == "1.2"
    assert page.server_time == 7


def test_an_empty_page_without_next() -> None:
    page = parse_response(200, {}, body({"status": True, "records": 0}, []))
    assert page.is_empty and page.next_token is None


@pytest.mark.parametrize(
    ("status", "meta"),
    [(429, {"status": False, "code": 42000}), (200, {"status": False, "code": 42000})],
)
def test_rate_limited_by_http_code_or_api_code(status: int, meta: dict[str, Any]) -> None:
    with pytest.raises(RateLimitedError) as caught:
        parse_response(status, {"Retry-After": "3"}, body(meta))
    assert caught.value.retry_after == 3.0


def test_retry_after_as_an_http_date_in_the_past_is_zero() -> None:
    assert retry_after_seconds({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds({}) is None


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_is_transient(status: int) -> None:
    with pytest.raises(TransientError):
        parse_response(status, {}, b"<html>oops</html>")


@pytest.mark.parametrize("payload", [b"", b'{"meta": {"status": tr', b"not json", b"[1,2]", b"{}"])
def test_truncated_or_invalid_json_is_transient(payload: bytes) -> None:
    with pytest.raises(TransientError):
        parse_response(200, {}, payload)


def test_status_false_with_http_200_is_not_a_page() -> None:
    with pytest.raises(TransientError):
        parse_response(200, {}, body({"status": False, "message": "internal"}))


def test_response_too_large() -> None:
    with pytest.raises(ResponseTooLargeError):
        parse_response(200, {}, body({"status": False, "code": 20027, "message": "too large"}))


@pytest.mark.parametrize(
    ("code", "http", "hint"),
    [
        (41002, 403, "LEARNOSITY_CONSUMER_KEY"),
        (41003, 403, "LEARNOSITY_CONSUMER_SECRET"),
        (41004, 403, "check this machine's clock"),
        (41005, 403, "LEARNOSITY_DOMAIN"),
        (43000, 400, "LEARNOSITY_API_VERSION"),
        (20000, 400, "parameter"),
        (20002, 400, "at most 1000"),
        (99999, 400, "refused"),
    ],
)
def test_fatal_codes_name_the_likely_cause(code: int, http: int, hint: str) -> None:
    with pytest.raises(SourceFatalError) as caught:
        parse_response(http, {}, body({"status": False, "code": code, "message": "m"}))
    assert str(caught.value).startswith(f"{code}: ")
    assert hint in str(caught.value)
    assert caught.value.code == code


def test_404_without_json_points_at_the_url() -> None:
    with pytest.raises(SourceFatalError, match="LEARNOSITY_BASE_URL"):
        parse_response(404, {}, b"Not Found")


@given(status=st.integers(100, 599), payload=st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_our_errors(status: int, payload: bytes) -> None:
    try:
        page = parse_response(status, {}, payload)
    except ConnectorError:
        return
    assert isinstance(page, Page)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(["meta", "data", "status", "code", "next"]), children)
    ),
    max_leaves=10,
)


@given(status=st.sampled_from([200, 400, 403, 429, 500]), document=json_values)
def test_arbitrary_json_raises_only_our_errors(status: int, document: object) -> None:
    try:
        page = parse_response(status, {}, json.dumps(document).encode())
    except ConnectorError:
        return
    assert isinstance(page, Page)


GOOD_RECORD = b'{"session_id":"s1","user_id":"u1","activity_id":"a","status":"Completed"}'
BAD_RECORDS = [
    b'{"session_id":"s2","user_id":"\xff"}',  # not UTF-8
    b'{"session_id":"s3","title":"\\udc00"}',  # an escaped lone surrogate
    b'{"session_id":"s4","score":NaN}',
    b'{"session_id":"s5","score":1e400}',
    b'{"x":' + b"[" * 1100 + b"]" * 1100 + b"}",  # past orjson's 1,024 levels
]


@pytest.mark.parametrize("bad", BAD_RECORDS)
def test_a_bad_record_does_not_take_its_page_down(bad: bytes) -> None:
    """Before: the whole page was invalid JSON, retried forever, its good records lost."""
    payload = b'{"meta":{"status":true,"next":"9.1","timestamp":5},"data":[%s,%s,%s]}' % (
        GOOD_RECORD,
        bad,
        GOOD_RECORD,
    )
    page = parse_response(200, {}, payload)
    assert page.next_token == "9.1" and page.server_time == 5
    assert page.records[0] == page.records[2] == json.loads(GOOD_RECORD)
    assert page.records[1].source == bad


@pytest.mark.parametrize("cut", [10, 60, -40, -2, -1])
def test_a_page_cut_short_is_still_transient(cut: int) -> None:
    """Nothing is known of the records that were cut: the request is made again."""
    payload = b'{"meta":{"status":true,"next":"9.1"},"data":[%s,%s]}' % (
        GOOD_RECORD,
        BAD_RECORDS[2],
    )
    with pytest.raises(TransientError):
        parse_response(200, {}, payload[:cut])


@given(
    status=st.integers(100, 599),
    items=st.lists(st.sampled_from([GOOD_RECORD, *BAD_RECORDS]), max_size=5),
    cut=st.integers(0, 2000),
)
def test_pages_with_bad_records_cut_anywhere_raise_only_our_errors(
    status: int, items: list[bytes], cut: int
) -> None:
    payload = b'{"meta":{"status":true,"next":"1"},"data":[' + b",".join(items) + b"]}"
    try:
        page = parse_response(status, {}, payload[: len(payload) - cut])
    except ConnectorError:
        return
    assert isinstance(page, Page)
