"""The ``security`` packet: consumer, ``$02$`` signature, timestamp window, domain.

The signature is ``"$02$" + hex(HMAC-SHA256(secret, P))`` where ``P`` joins with ``_``
consumer_key, domain, timestamp, expires (if present), user_id (if present), the request
string exactly as received, and the action: what the official SDK computes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from connector.emulator.apierror import (
    INVALID_CONSUMER,
    INVALID_DOMAIN,
    SIGNATURE_MISMATCH,
    TIMESTAMP_OUT_OF_RANGE,
    bad_request,
    forbidden,
)

#: the security fields that are signed, in signing order
SIGNED_FIELDS: Final = ("consumer_key", "domain", "timestamp", "expires", "user_id")
#: assumption 4: a timestamp more than this far from the server's clock is refused
TIMESTAMP_WINDOW_SECONDS: Final = 300


@dataclass(frozen=True)
class Consumers:
    """Consumer keys the emulator knows, with their secrets (never printed)."""

    secrets: Mapping[str, str] = field(repr=False)
    #: domains a consumer may sign for; empty: any domain
    allowed_domains: frozenset[str] = frozenset()

    def __repr__(self) -> str:
        return f"Consumers(keys={sorted(self.secrets)!r})"


def signature(secret: str, parts: list[str]) -> str:
    digest = hmac.new(secret.encode(), "_".join(parts).encode(), hashlib.sha256).hexdigest()
    return "$02$" + digest


def sign(
    consumer_key: str,
    secret: str,
    request_string: str,
    *,
    domain: str = "localhost",
    timestamp: str | None = None,
    action: str = "get",
) -> dict[str, str]:
    """The three form fields for a request (what the SDK's ``Init.generate`` returns)."""
    timestamp = timestamp or stamp(time.time())
    security = {"consumer_key": consumer_key, "domain": domain, "timestamp": timestamp}
    security["signature"] = signature(
        secret, [consumer_key, domain, timestamp, request_string, action]
    )
    return {"security": json.dumps(security), "request": request_string, "action": action}


def verify(
    consumers: Consumers,
    security_text: str,
    request_text: str,
    action: str,
    now: float,
) -> str:
    """The consumer key of a well-signed, fresh request, or ApiError 41002..41005."""
    try:
        packet: Any = json.loads(security_text)
    except ValueError:
        raise bad_request("security: not a JSON object") from None
    if not isinstance(packet, dict):
        raise bad_request("security: not a JSON object")
    consumer_key = packet.get("consumer_key")
    if not isinstance(consumer_key, str) or not consumer_key:
        raise bad_request("security: consumer_key is required")
    secret = consumers.secrets.get(consumer_key)
    if secret is None:
        raise forbidden(INVALID_CONSUMER, "Invalid consumer key")
    for name in ("domain", "timestamp", "signature"):
        if not isinstance(packet.get(name), str):
            raise bad_request(f"security: {name} is required")

    parts = [str(packet[name]) for name in SIGNED_FIELDS if name in packet]
    expected = signature(secret, [*parts, request_text, action])
    if not hmac.compare_digest(expected, packet["signature"]):
        raise forbidden(SIGNATURE_MISMATCH, "Signatures do not match")

    _check_time(packet["timestamp"], packet.get("expires"), now)
    if consumers.allowed_domains and packet["domain"] not in consumers.allowed_domains:
        raise forbidden(INVALID_DOMAIN, "Invalid domain for this consumer")
    return consumer_key


def _check_time(timestamp: str, expires: Any, now: float) -> None:
    stamped = parse_stamp(timestamp)
    if stamped is None:
        raise forbidden(TIMESTAMP_OUT_OF_RANGE, "Invalid timestamp")
    if expires is not None:
        until = parse_stamp(str(expires))
        if until is None or now > until + 60:
            raise forbidden(TIMESTAMP_OUT_OF_RANGE, "Request has expired")
        if stamped - TIMESTAMP_WINDOW_SECONDS <= now:
            return
    # The stamp names a minute: it is fresh anywhere in [minute - 5 min, minute + 6 min).
    if not stamped - TIMESTAMP_WINDOW_SECONDS <= now < stamped + 60 + TIMESTAMP_WINDOW_SECONDS:
        raise forbidden(TIMESTAMP_OUT_OF_RANGE, "Timestamp is out of the allowed range")


def parse_stamp(text: str) -> float | None:
    """``YYYYMMDD-HHMM`` (UTC) → Unix seconds of the start of that minute."""
    if len(text) != 13 or text[8] != "-" or not (text[:8] + text[9:]).isdigit():
        return None
    try:
        moment = datetime(
            int(text[:4]),
            int(text[4:6]),
            int(text[6:8]),
            int(text[9:11]),
            int(text[11:13]),
            tzinfo=UTC,
        )
    except ValueError:
        return None
    return moment.timestamp()


def stamp(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y%m%d-%H%M")
