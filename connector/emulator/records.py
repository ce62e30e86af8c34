"""One session's state, and the record ``/sessions/scores`` serves for it.

A ``SessionState`` is one version of a session; a change makes a new version and marks
the old one ``superseded`` (the index keeps the old entry until compaction). A version
never changes otherwise, so its JSON is encoded once, on first use, and cached: a page is
then a join of cached fragments.

Activities own the static part of a record (subscore ids, titles, items, maxima), so a
session holds only its own numbers: that keeps a million sessions in memory.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

INCOMPLETE: Final = "Incomplete"
COMPLETED: Final = "Completed"
DISCARDED: Final = "Discarded"
PENDING_SCORING: Final = "Pending Scoring"
#: the statuses the API documents, in its spelling
STATUSES: Final = (INCOMPLETE, COMPLETED, DISCARDED, PENDING_SCORING)

#: per subscore: (num_attempted, score or None while unscored, attempted_max_score)
Mark = tuple[int, float | None, float | None]

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


@dataclass(frozen=True, slots=True)
class SubscoreShape:
    """The static part of a subscore: what the activity defines."""

    id: str
    title: str
    num_questions: int
    max_score: float
    items: tuple[str, ...]

    @property
    def question_max(self) -> float:
        return self.max_score / self.num_questions if self.num_questions else 0.0


@dataclass(frozen=True, slots=True)
class ActivityShape:
    activity_id: str
    subscores: tuple[SubscoreShape, ...]
    max_score: float = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "max_score", sum(s.max_score for s in self.subscores))


class SessionState:
    """One version of one session. Treated as immutable except for the two caches and
    ``superseded``, which the store sets when a newer version replaces this one."""

    __slots__ = (
        "_json",
        "_json_responses",
        "activity",
        "completed_us",
        "extra",
        "marks",
        "max_score",
        "saved_us",
        "score",
        "session_id",
        "started_us",
        "status",
        "superseded",
        "updated_us",
        "user_id",
    )

    def __init__(  # noqa: PLR0917 - positional on purpose: start-up builds a million
        self,
        session_id: str,
        user_id: str,
        activity: ActivityShape,
        status: str,
        marks: tuple[Mark, ...],
        score: float | None,
        max_score: float | None,
        started_us: int,
        saved_us: int,
        completed_us: int | None,
        updated_us: int,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.session_id = session_id
        self.user_id = user_id
        self.activity = activity
        self.status = status
        self.marks = marks
        self.score = score
        self.max_score = max_score
        self.started_us = started_us
        self.saved_us = saved_us
        self.completed_us = completed_us
        self.updated_us = updated_us
        self.extra = extra
        self.superseded = False
        self._json: bytes | None = None
        self._json_responses: bytes | None = None

    def evolve(self, updated_us: int, **changes: Any) -> SessionState:
        """A new version with ``changes`` applied and the given updated time."""
        values = {name: getattr(self, name) for name in _CONSTRUCTOR_FIELDS}
        values.update(changes)
        values["updated_us"] = updated_us
        return SessionState(**values)

    @property
    def activity_id(self) -> str:
        return self.activity.activity_id

    def subscores(self) -> list[dict[str, Any]]:
        return subscore_dicts(self.activity, self.marks)

    def responses(self) -> list[dict[str, Any]]:
        """Per-response scores, derived from the subscore marks: the first
        ``num_attempted`` questions were attempted and share the subscore's score."""
        out: list[dict[str, Any]] = []
        for shape, (attempted, score, _) in zip(self.activity.subscores, self.marks, strict=True):
            remaining = score
            for index, item in enumerate(shape.items):
                question_max = shape.question_max
                got: float | None = None
                if remaining is not None and index < attempted:
                    got = min(question_max, remaining)
                    remaining -= got
                out.append(
                    {
                        "response_id": f"{self.session_id[:8]}-{item}",
                        "item_reference": item,
                        "score": _number(got) if index < attempted else None,
                        "max_score": _number(question_max),
                        "attempted": index < attempted,
                    }
                )
        return out

    def to_record(self, include_responses: bool = False) -> dict[str, Any]:
        """The record as the API serves it: documented fields first, then the extras."""
        record: dict[str, Any] = {
            "user_id": self.user_id,
            "activity_id": self.activity.activity_id,
            "session_id": self.session_id,
            "score": _number(self.score),
            "max_score": _number(self.max_score),
            "status": self.status,
            "subscores": self.subscores(),
            "dt_started": iso_seconds(self.started_us),
            "dt_saved": iso_seconds(self.saved_us),
            "dt_completed": iso_seconds(self.completed_us) if self.completed_us else None,
            "dt_updated": iso_millis(self.updated_us),
        }
        if self.extra:
            for key, value in self.extra.items():
                record.setdefault(key, value)
        if include_responses:
            record["responses"] = self.responses()
        return record

    def json(self, include_responses: bool = False) -> bytes:
        """The record's JSON (UTF-8), encoded once per version and kept."""
        if include_responses:
            if self._json_responses is None:
                self._json_responses = _encode(self.to_record(True)).encode()
            return self._json_responses
        if self._json is None:
            self._json = (
                _fast_json(self) if not self.extra else _encode(self.to_record(False))
            ).encode()
        return self._json

    def drop_cache(self) -> None:
        self._json = self._json_responses = None

    def __repr__(self) -> str:
        return (
            f"SessionState({self.session_id!r}, status={self.status!r}, "
            f"score={self.score!r}, updated_us={self.updated_us})"
        )


_CONSTRUCTOR_FIELDS: Final = (
    "session_id",
    "user_id",
    "activity",
    "status",
    "marks",
    "score",
    "max_score",
    "started_us",
    "saved_us",
    "completed_us",
    "updated_us",
    "extra",
)


def _fast_json(state: SessionState) -> str:
    """``_encode(state.to_record())`` without building the record: the same text (a test
    holds them equal), four times faster, since a cold page encodes fifty of these."""
    completed = state.completed_us
    return (
        f'{{"user_id":{_string(state.user_id)},'
        f'"activity_id":{_string(state.activity.activity_id)},'
        f'"session_id":{_string(state.session_id)},'
        f'"score":{_number_text(state.score)},"max_score":{_number_text(state.max_score)},'
        f'"status":{_string(state.status)},'
        f'"subscores":{_subscores_json(state.activity, state.marks)},'
        f'"dt_started":"{iso_seconds(state.started_us)}",'
        f'"dt_saved":"{iso_seconds(state.saved_us)}",'
        f'"dt_completed":{f"{_QUOTE}{iso_seconds(completed)}{_QUOTE}" if completed else "null"},'
        f'"dt_updated":"{iso_millis(state.updated_us)}"}}'
    )


_QUOTE: Final = '"'
_string = json.encoder.encode_basestring
#: subscores JSON by (activity, marks): sessions share marks, so this stays small. The
#: entry keeps its activity: an id() is reused once its object is freed (another emulator
#: in the same process), and only the identity check tells the two apart.
_subscores_cache: dict[tuple[int, tuple[Mark, ...]], tuple[ActivityShape, str]] = {}
_SUBSCORES_CACHE_MAX: Final = 200_000


def subscore_dicts(activity: ActivityShape, marks: tuple[Mark, ...]) -> list[dict[str, Any]]:
    """The ``subscores`` of a session of ``activity`` with these marks, as served."""
    return [
        {
            "id": shape.id,
            "title": shape.title,
            "num_questions": shape.num_questions,
            "num_attempted": attempted,
            "score": _number(score),
            "max_score": _number(shape.max_score),
            "attempted_max_score": _number(attempted_max),
            "items": list(shape.items),
        }
        for shape, (attempted, score, attempted_max) in zip(activity.subscores, marks, strict=True)
    ]


def _subscores_json(activity: ActivityShape, marks: tuple[Mark, ...]) -> str:
    key = (id(activity), marks)
    cached = _subscores_cache.get(key)
    if cached is not None and cached[0] is activity:
        return cached[1]
    if len(_subscores_cache) >= _SUBSCORES_CACHE_MAX:
        _subscores_cache.clear()
    text = _encode(subscore_dicts(activity, marks))
    _subscores_cache[key] = (activity, text)
    return text


def _number_text(value: float | None) -> str:
    number = _number(value)
    return "null" if number is None else repr(number)


def _number(value: float | None) -> float | int | None:
    """Whole numbers print as integers (``39``), as the API prints them."""
    if value is not None and value == int(value):
        return int(value)
    return value


_ISO_SECONDS: Final = "{:04d}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}Z".format
_ISO_MILLIS: Final = "{:04d}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}.{:03d}Z".format


def iso_seconds(us: int) -> str:
    # time.gmtime and a format: a third of what datetime.strftime costs, on the hot path
    return _ISO_SECONDS(*time.gmtime(us // 1_000_000)[:6])


def iso_millis(us: int) -> str:
    return _ISO_MILLIS(*time.gmtime(us // 1_000_000)[:6], us % 1_000_000 // 1000)


def parse_iso_us(text: str) -> int:
    """ISO 8601 (``Z`` or an offset; a bare time is UTC) → Unix microseconds."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
