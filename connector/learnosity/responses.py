"""Turns one HTTP response of the Data API into a Page or a classified error. Pure.

The service sometimes answers errors with HTTP 200, so ``meta.status`` decides, not the
HTTP code alone. Every input, however broken, ends as a Page or one of the project's own
errors (a property test feeds it arbitrary bytes).

A page orjson refuses is read again item by item (``tolerant_json.read_page``): one bad
record (bytes that are not UTF-8, ``NaN``, nesting past the parser's limit, ...) does not
hold back the good ones. It travels in ``Page.records`` as a ``Salvaged`` dict or an
``Unreadable`` item, and validation makes it a dead letter. Only a document whose
structure is broken (a body cut short) is still an error, retried as ever.
"""

from __future__ import annotations

from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any

from connector import fastjson, tolerant_json
from connector.errors import (
    RateLimitedError,
    ResponseTooLargeError,
    SourceFatalError,
    TransientError,
)
from connector.models import Page

CODE_RATE_LIMITED = 42000
CODE_TOO_LARGE = 20027

#: codes whose cause the user must fix, with what to check
FATAL_HINTS: dict[int, str] = {
    20000: "the request was missing a parameter or had a wrong one",
    20002: "a filter list has too many ids (at most 1000)",
    41002: "the consumer key was not recognised: check LEARNOSITY_CONSUMER_KEY",
    41003: (
        "the request signature did not match: check LEARNOSITY_CONSUMER_SECRET "
        "(and that it belongs to LEARNOSITY_CONSUMER_KEY)"
    ),
    41004: "the request timestamp was rejected: check this machine's clock",
    41005: "the domain was rejected for this consumer: check LEARNOSITY_DOMAIN",
    43000: (
        "the API version is below this consumer's minimum: "
        "raise LEARNOSITY_API_VERSION to a supported LTS version"
    ),
}

HTTP_HINTS: dict[int, str] = {
    401: "not authorised: check LEARNOSITY_CONSUMER_KEY and LEARNOSITY_CONSUMER_SECRET",
    403: "forbidden: check the consumer key, secret and LEARNOSITY_DOMAIN",
    404: "endpoint not found: check LEARNOSITY_BASE_URL and LEARNOSITY_API_VERSION",
    405: "method not allowed: check LEARNOSITY_BASE_URL points at the Data API",
    410: "this API version is gone: raise LEARNOSITY_API_VERSION",
}

#: 4xx codes that are about timing, not about the request: worth another try
RETRIABLE_4XX = frozenset({408, 409, 425})


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """``Retry-After`` as seconds (it may be a number or an HTTP date), or None."""
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        from datetime import UTC, datetime  # noqa: PLC0415 - only on this rare path

        return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _error_text(meta: Mapping[str, Any]) -> str:
    message = meta.get("message")
    return str(message)[:300] if message is not None else "no message"


def _raise_for_code(code: int, meta: Mapping[str, Any], http_status: int, headers: Any) -> None:
    if code == CODE_RATE_LIMITED:
        raise RateLimitedError(
            f"{code}: rate limited by the Data API", retry_after_seconds(headers)
        )
    if code == CODE_TOO_LARGE:
        raise ResponseTooLargeError(f"{code}: response too large for this page size")
    hint = FATAL_HINTS.get(code)
    if hint is None and 400 <= http_status < 500 and http_status not in RETRIABLE_4XX:
        hint = HTTP_HINTS.get(http_status, "the request was refused")
    if hint is not None:
        raise SourceFatalError(
            f"{code}: {hint} (server said: {_error_text(meta)})", code, http_status
        )
    # an unknown code with a 2xx/5xx answer: the service is having trouble
    raise TransientError(f"{code}: {_error_text(meta)} (HTTP {http_status})", "api_error")


def _raise_for_http_status(status: int, headers: Mapping[str, str]) -> None:
    """The HTTP codes that say all there is to say, whatever the body holds."""
    if status == 429:
        raise RateLimitedError(
            "HTTP 429: rate limited by the Data API", retry_after_seconds(headers)
        )
    if status >= 500:
        raise TransientError(f"HTTP {status} from the Data API", "http_5xx")
    if status in RETRIABLE_4XX:
        raise TransientError(f"HTTP {status} from the Data API", "http_4xx_retriable")


def _decode(status: int, body: bytes) -> dict[str, Any]:
    """The JSON document with its ``meta`` object, or the error that its absence means."""
    try:
        # orjson: json.loads took twice as long, on every page
        document = fastjson.loads(body)
        readable = True
    except ValueError:  # orjson's error; the page may still hold good records
        document = tolerant_json.read_page(body)
        readable = document is not None
    if not readable:
        if 400 <= status < 500:
            raise SourceFatalError(
                f"HTTP {status}: {HTTP_HINTS.get(status, 'the request was refused')}",
                None,
                status,
            ) from None
        raise TransientError(
            f"invalid or truncated JSON from the Data API ({len(body)} bytes, HTTP {status})",
            "invalid_json",
        ) from None

    if not isinstance(document, dict) or not isinstance(document.get("meta"), dict):
        raise TransientError("response without a 'meta' object", "invalid_json")
    return document


def parse_response(status: int, headers: Mapping[str, str], body: bytes) -> Page:
    """Classify one response: a Page, or RateLimited/Transient/TooLarge/SourceFatal error."""
    _raise_for_http_status(status, headers)
    document = _decode(status, body)
    meta: dict[str, Any] = document["meta"]

    if meta.get("status") is not True:
        code = meta.get("code")
        if isinstance(code, int) and not isinstance(code, bool):
            _raise_for_code(code, meta, status, headers)
        if 400 <= status < 500:
            hint = HTTP_HINTS.get(status, "the request was refused")
            raise SourceFatalError(f"HTTP {status}: {hint} ({_error_text(meta)})", None, status)
        raise TransientError(f"meta.status false without a code: {_error_text(meta)}", "api_error")

    if 400 <= status < 500:  # status true with a 4xx code is contradictory: do not trust it
        raise SourceFatalError(f"HTTP {status} with meta.status true", None, status)

    data = document.get("data")
    if data is None:
        data = []
    if not isinstance(data, list):
        raise TransientError("'data' is not a list", "invalid_json")
    next_token = meta.get("next")
    if next_token is not None and not isinstance(next_token, str | int | float):
        raise TransientError("'meta.next' is not a string", "invalid_json")
    server_time = meta.get("timestamp")
    if isinstance(server_time, bool) or not isinstance(server_time, int | float):
        server_time = None
    # Records that are not objects are kept and left to record validation (dead letters):
    # dropping them here would lose them silently.
    return Page(
        records=tuple(data),
        next_token=None if next_token in (None, "") else str(next_token),
        server_time=int(server_time) if server_time is not None else None,
        meta=meta,
    )
