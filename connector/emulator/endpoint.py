"""``POST /{version}/sessions/scores``: from the form fields to the answer's bytes.

Order of checks: path and version, method, form fields, security (consumer, signature,
timestamp, domain), action, rate limit, request parameters; then the page. Faults are
drawn around that (see ``faults``). The page is built under the store's lock, from each
session version's cached JSON, so a page costs a scan and a join.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Final
from urllib.parse import parse_qsl

from connector.emulator.apierror import (
    INTERNAL,
    RATE_LIMITED,
    UNSUPPORTED_VERSION,
    ApiError,
    bad_request,
)
from connector.emulator.cursor import encode_token
from connector.emulator.faults import After, Before, FaultConfig, FaultInjector
from connector.emulator.query import ScoresQuery, parse_query
from connector.emulator.ratelimit import RateLimiter
from connector.emulator.records import SessionState, iso_seconds
from connector.emulator.requestlog import RequestLog
from connector.emulator.security import Consumers, verify
from connector.emulator.store import SessionStore
from connector.emulator.truth import TruthLog

JSON: Final = "application/json; charset=utf-8"
_VERSION = re.compile(r"v(\d{4})\.(\d+)\.(LTS|lts|preview\d+)|latest|latest-lts|developer|v1")
#: pages remembered for the stalled-cursor fault (token → body it was issued with)
STALL_MEMORY: Final = 4096
_BAD_GATEWAY_HTML: Final = (
    b"<html><head><title>{code}</title></head><body><center><h1>{code}</h1></center>"
    b"</body></html>\n"
)


class Delivery(Enum):
    """How the server writes an answer."""

    WHOLE = "whole"
    TRUNCATED = "truncated"  # the headers promise the whole body; half comes, then close
    RESET = "reset"  # no answer: the connection is reset


@dataclass(slots=True)
class Reply:
    status: int
    body: bytes
    content_type: str = JSON
    headers: tuple[tuple[str, str], ...] = ()
    delivery: Delivery = Delivery.WHOLE
    delay_seconds: float = 0.0


@dataclass
class EndpointStats:
    requests: int = 0
    pages: int = 0
    records: int = 0
    errors: dict[int, int] = field(default_factory=dict)


def error_reply(error: ApiError, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    body = json.dumps(
        {"meta": {"status": False, "code": error.code, "message": error.message}, "data": None}
    ).encode()
    return Reply(error.http_status, body, headers=headers)


def version_ok(version: str, minimum: tuple[int, int]) -> bool:
    match = _VERSION.fullmatch(version)
    if match is None:
        return False
    if match.group(1) is None:  # latest, developer, v1: always served
        return True
    return (int(match.group(1)), int(match.group(2))) >= minimum


class ScoresEndpoint:
    def __init__(
        self,
        store: SessionStore,
        consumers: Consumers,
        *,
        lock: threading.RLock,
        limiter: RateLimiter | None = None,
        faults: FaultInjector | None = None,
        truth: TruthLog | None = None,
        clock: Callable[[], float] = time.time,
        min_version: tuple[int, int] = (2022, 1),
        cache_records: bool = True,
        request_log: RequestLog | None = None,
    ) -> None:
        self.store = store
        self.consumers = consumers
        self.lock = lock
        self.limiter = limiter or RateLimiter()
        self.faults = faults or FaultInjector(FaultConfig())
        self.truth = truth
        self.clock = clock
        self.min_version = min_version
        #: False re-encodes every record on every page (the benchmark's baseline)
        self.cache_records = cache_records
        self.request_log = request_log
        self.stats = EndpointStats()
        self._issued: OrderedDict[str, bytes] = OrderedDict()

    def handle(self, method: str, target: str, body: bytes) -> Reply:
        """The whole answer to one HTTP request (never raises)."""
        self.stats.requests += 1
        faults = self.faults
        delay = faults.delay_seconds() if faults.enabled else 0.0
        try:
            reply = self._handle(method, target, body)
        except ApiError as error:
            reply = error_reply(error)
        if reply.status >= 400:
            self.stats.errors[reply.status] = self.stats.errors.get(reply.status, 0) + 1
        reply.delay_seconds = delay
        if self.request_log is not None:
            self.request_log.record(self.clock(), reply.status)
        return reply

    def _handle(self, method: str, target: str, body: bytes) -> Reply:
        path = target.split("?", 1)[0]
        parts = path.split("/")
        if len(parts) != 4 or parts[0] or parts[2:] != ["sessions", "scores"]:
            raise ApiError(404, f"Unknown endpoint {path}", 404)
        if not version_ok(parts[1], self.min_version):
            raise ApiError(
                UNSUPPORTED_VERSION, f"Version {parts[1]} is not supported for this consumer", 400
            )
        if method != "POST":
            return error_reply(
                ApiError(405, "Method not allowed: use POST", 405), (("Allow", "POST"),)
            )

        fields = _form(body)
        for name in ("security", "request", "action"):
            if name not in fields:
                raise bad_request(f"Missing parameter: {name}")
        now = self.clock()
        consumer = verify(
            self.consumers, fields["security"], fields["request"], fields["action"], now
        )
        if fields["action"] != "get":
            raise bad_request(f"Action {fields['action']!r} is not supported by this endpoint")
        if not self.limiter.allow(consumer, now):
            raise ApiError(RATE_LIMITED, "Too many requests: rate limit exceeded", 429)

        faults = self.faults
        if faults.enabled:
            before = faults.before()
            if before is not Before.NONE:
                return _fault_reply(before)

        try:
            params: Any = json.loads(fields["request"])
        except ValueError:
            raise bad_request("request: not valid JSON") from None
        if not isinstance(params, dict):
            raise bad_request("request: must be a JSON object")
        query = parse_query(params)
        return self._page(query, params.get("next"), int(now))

    def _page(self, query: ScoresQuery, token: Any, now: int) -> Reply:
        store = self.store
        faults = self.faults
        with self.lock:
            states = store.page(
                query.window,
                query.limit,
                query.predicate(),
                query.candidates(store.user_sessions),
            )
            if not self.cache_records:
                for state in states:
                    state.drop_cache()
            fragments = [s.json(query.include_responses) for s in states]
            after = After.NONE
            frozen = False
            if faults.enabled:
                frozen = bool(states) and faults.frozen(token)
                if frozen:
                    fragments = self._frozen_fragments(states, query.include_responses)
                after = faults.after(len(states), isinstance(token, str) and token in self._issued)
                if after is After.MALFORMED:
                    index = faults.pick(len(states))
                    record = states[index].to_record(query.include_responses)
                    how, fragments[index] = faults.malform(record)
                    if self.truth is not None:
                        self.truth.fault("malformed", session_id=states[index].session_id, how=how)
                        self.truth.flush()
                self._oversize(fragments, states)
        self.stats.pages += 1
        self.stats.records += len(states)

        if after is After.STALL:
            return Reply(200, self._issued[token])
        if after is After.STATUS_FALSE:
            return error_reply(ApiError(INTERNAL, "An internal error occurred", 200))
        if states:
            next_token = token if frozen else encode_token(states[-1].updated_us)
            head = b'{"meta":{"status":true,"timestamp":%d,"records":%d,"next":"%s"},"data":[' % (
                now,
                len(states),
                next_token.encode(),
            )
        else:
            next_token = None
            head = b'{"meta":{"status":true,"timestamp":%d,"records":0},"data":[' % now
        body = b"".join((head, b",".join(fragments), b"]}"))
        if next_token is not None and faults.enabled and faults.config.stall_rate:
            self._remember(next_token, body)
        if after is After.TRUNCATE:
            return Reply(200, body, delivery=Delivery.TRUNCATED)
        return Reply(200, body)

    def _frozen_fragments(self, states: list[SessionState], include_responses: bool) -> list[bytes]:
        """The records of a frozen answer: as they are, but for a ``dt_saved`` that moves
        on with every frozen answer (the records change, the cursor does not)."""
        moved = self.faults.counts["frozen_cursor"]
        fragments = []
        for state in states:
            record = state.to_record(include_responses)
            record["dt_saved"] = iso_seconds(state.saved_us + moved * 1_000_000)
            fragments.append(json.dumps(record, ensure_ascii=False).encode())
        return fragments

    def _oversize(self, fragments: list[bytes], states: list[SessionState]) -> None:
        """Pads the records the injector picks with a field ``padding``."""
        chosen = self.faults.oversized(len(fragments))
        if not chosen:
            return
        size = self.faults.config.oversized_bytes
        padding = b',"padding":"' + b"x" * size + b'"}'
        for index in chosen:
            fragments[index] = fragments[index][:-1] + padding
        if self.truth is not None:
            self.truth.fault(
                "oversized",
                session_ids=[states[i].session_id for i in chosen],
                bytes=size,
            )

    def _remember(self, token: str, body: bytes) -> None:
        self._issued[token] = body
        self._issued.move_to_end(token)
        while len(self._issued) > STALL_MEMORY:
            self._issued.popitem(last=False)


def _form(body: bytes) -> dict[str, str]:
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        text = body.decode("utf-8", "replace")
    return dict(parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="replace"))


def _fault_reply(fault: Before) -> Reply:
    if fault is Before.RESET:
        return Reply(0, b"", delivery=Delivery.RESET)
    if fault is Before.BURST_429:
        return error_reply(ApiError(RATE_LIMITED, "Too many requests: rate limit exceeded", 429))
    if fault is Before.ERROR_500:
        return error_reply(ApiError(500, "Internal server error", 500))
    code = b"502 Bad Gateway" if fault is Before.ERROR_502 else b"503 Service Unavailable"
    return Reply(
        int(code[:3]),
        _BAD_GATEWAY_HTML.replace(b"{code}", code),
        content_type="text/html",
    )
