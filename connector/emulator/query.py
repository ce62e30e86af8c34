"""The request packet of ``/sessions/scores``: validated into a ``ScoresQuery``.

Rules (docs/data-api.md, "Parameters of /sessions/scores" and assumptions 2 and 3): unknown
parameters are rejected; ``limit`` is 1..50 and above 50 is an error, not a cap; id
arrays hold at most 1000 strings; times are Unix seconds or ISO 8601 and bounds are
inclusive at the API's resolution of whole seconds. ``meta`` (the SDK's telemetry) is
accepted and ignored.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from connector.emulator.apierror import TOO_MANY_IDS, ApiError, bad_request
from connector.emulator.cursor import decode_token
from connector.emulator.records import STATUSES, SessionState, parse_iso_us
from connector.emulator.store import Predicate, Window

MAX_LIMIT: Final = 50
DEFAULT_LIMIT: Final = 50
MAX_IDS: Final = 1000
TIME_PARAMS: Final = (
    "mintime",
    "maxtime",
    "mintime_started",
    "maxtime_started",
    "mintime_completed",
    "maxtime_completed",
)
ID_PARAMS: Final = ("activity_id", "session_id", "user_id")
KNOWN_PARAMS: Final = frozenset(
    (*ID_PARAMS, *TIME_PARAMS, "status", "include_response_scores", "limit", "sort", "next", "meta")
)
_UNIX_SECONDS = re.compile(r"-?\d{1,12}(\.\d+)?")
_NO_UPPER_BOUND: Final = 2**62


@dataclass(frozen=True, slots=True)
class ScoresQuery:
    window: Window
    limit: int = DEFAULT_LIMIT
    include_responses: bool = False
    activity_ids: frozenset[str] | None = None
    session_ids: tuple[str, ...] | None = None
    user_ids: tuple[str, ...] | None = None
    statuses: frozenset[str] | None = None
    #: [low, high) microsecond windows on the start and submission times
    started: tuple[int, int] | None = None
    completed: tuple[int, int] | None = None

    def candidates(self, user_sessions: Any) -> list[str] | None:
        """Session ids to look at instead of scanning the index, when a filter names them.

        ``user_sessions`` maps a user id to that user's session ids (the store's method).
        """
        if self.session_ids is not None:
            return list(self.session_ids)
        if self.user_ids is not None:
            return [sid for user in self.user_ids for sid in user_sessions(user)]
        return None

    def predicate(self) -> Predicate | None:
        """One function for the filters the candidates and the window do not already apply."""
        checks: list[Predicate] = []
        if self.statuses is not None:
            statuses = self.statuses
            checks.append(lambda s: s.status in statuses)
        if self.activity_ids is not None:
            activities = self.activity_ids
            checks.append(lambda s: s.activity.activity_id in activities)
        if self.user_ids is not None and self.session_ids is not None:
            users = frozenset(self.user_ids)  # both filters given: sessions came first
            checks.append(lambda s: s.user_id in users)
        if self.started is not None:
            low, high = self.started
            checks.append(lambda s: low <= s.started_us < high)
        if self.completed is not None:
            low, high = self.completed
            checks.append(lambda s: s.completed_us is not None and low <= s.completed_us < high)
        if not checks:
            return None
        if len(checks) == 1:
            return checks[0]
        return lambda s: all(check(s) for check in checks)

    def matches(self, state: SessionState) -> bool:
        """Whether the filters (not the position) select ``state``: for tests and tools."""
        window = self.window
        if not window.low_us <= state.updated_us < window.high_us:
            return False
        if self.session_ids is not None and state.session_id not in self.session_ids:
            return False
        if self.user_ids is not None and state.user_id not in self.user_ids:
            return False
        predicate = self.predicate()
        return predicate is None or predicate(state)


def parse_query(params: Mapping[str, Any]) -> ScoresQuery:
    """Validate the request packet; raise ApiError (20000 / 20002) on the first problem."""
    unknown = sorted(set(params) - KNOWN_PARAMS)
    if unknown:
        raise bad_request(f"Unknown request parameter(s): {', '.join(unknown)}")

    limit = _limit(params.get("limit", DEFAULT_LIMIT))
    sort = params.get("sort", "desc")
    if sort not in ("asc", "desc"):
        raise bad_request("sort must be 'asc' or 'desc'")
    include = params.get("include_response_scores", False)
    if not isinstance(include, bool):
        raise bad_request("include_response_scores must be a boolean")

    ids = {name: _ids(name, params[name]) for name in ID_PARAMS if name in params}
    statuses = None
    if "status" in params:
        statuses = _ids("status", params["status"])
        unknown_statuses = [s for s in statuses if s not in STATUSES]
        if unknown_statuses:
            raise bad_request(
                f"status: unknown value(s) {', '.join(map(repr, unknown_statuses))}; "
                f"expected {', '.join(STATUSES)}"
            )

    times = {name: _time(name, params[name]) for name in TIME_PARAMS if name in params}
    position = None
    if "next" in params:
        token = params["next"]
        position = decode_token(token) if isinstance(token, str) else None
        if position is None:
            raise bad_request("next: not a token this endpoint issued")

    low, high = _bounds(times, "mintime", "maxtime")
    return ScoresQuery(
        window=Window(
            low_us=low,
            high_us=high,
            position_us=position,
            descending=sort == "desc",
        ),
        limit=limit,
        include_responses=include,
        activity_ids=frozenset(ids["activity_id"]) if "activity_id" in ids else None,
        session_ids=ids.get("session_id"),
        user_ids=ids.get("user_id"),
        statuses=frozenset(statuses) if statuses is not None else None,
        started=_optional_bounds(times, "mintime_started", "maxtime_started"),
        completed=_optional_bounds(times, "mintime_completed", "maxtime_completed"),
    )


def _limit(value: Any) -> int:
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request("limit must be an integer")
    if not 1 <= value <= MAX_LIMIT:
        raise bad_request(f"limit must be between 1 and {MAX_LIMIT}")
    return value


def _ids(name: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad_request(f"{name} must be an array of strings")
    if len(value) > MAX_IDS:
        raise ApiError(TOO_MANY_IDS, f"{name}: at most {MAX_IDS} values are allowed", 400)
    return tuple(value)


def _time(name: str, value: Any) -> int:
    """Whole Unix seconds, from an integer, a float, a numeric string or ISO 8601."""
    seconds: float
    if isinstance(value, bool):
        raise bad_request(f"{name} must be Unix seconds or an ISO 8601 time")
    if isinstance(value, int | float) or (
        isinstance(value, str) and _UNIX_SECONDS.fullmatch(value.strip())
    ):
        seconds = float(value)
    elif isinstance(value, str):
        try:
            seconds = parse_iso_us(value.strip()) / 1_000_000
        except ValueError:
            raise bad_request(f"{name} must be Unix seconds or an ISO 8601 time") from None
    else:
        raise bad_request(f"{name} must be Unix seconds or an ISO 8601 time")
    if not math.isfinite(seconds) or abs(seconds) > 10**12:
        raise bad_request(f"{name} is out of range")
    return math.floor(seconds)


def _bounds(times: Mapping[str, int], low_name: str, high_name: str) -> tuple[int, int]:
    """Inclusive whole-second bounds as a [low, high) microsecond range."""
    low = times[low_name] * 1_000_000 if low_name in times else 0
    high = (times[high_name] + 1) * 1_000_000 if high_name in times else _NO_UPPER_BOUND
    return max(low, 0), high


def _optional_bounds(
    times: Mapping[str, int], low_name: str, high_name: str
) -> tuple[int, int] | None:
    if low_name not in times and high_name not in times:
        return None
    return _bounds(times, low_name, high_name)
