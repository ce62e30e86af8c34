"""A workload as a JSON-lines file: one session per line, as the API serves it, plus
``updated_us`` (the exact position time).

Loading accepts any record with the documented fields: activities are rebuilt from the
subscores' static fields (id, title, num_questions, max_score, items), fields the
emulator does not model are kept and served as they were. Per-response scores are not
kept: they are derived from the subscores again. Lines are put in (updated time,
session id) order and equal times are moved apart by a microsecond, since the index
needs unique times.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

from connector.emulator.records import (
    ActivityShape,
    Mark,
    SessionState,
    SubscoreShape,
    parse_iso_us,
)

#: fields rebuilt from the model; everything else in a line is kept as an extra
MODELED: Final = frozenset(
    (
        "user_id",
        "activity_id",
        "session_id",
        "score",
        "max_score",
        "status",
        "subscores",
        "dt_started",
        "dt_saved",
        "dt_completed",
        "dt_updated",
        "updated_us",
        "responses",
    )
)


class WorkloadFileError(ValueError):
    """A workload file line cannot be read; the message names the line."""


def save_workload(path: str | Path, states: Iterable[SessionState]) -> int:
    count = 0
    with Path(path).open("w", encoding="utf-8") as out:
        for state in states:
            record = state.to_record(False)
            record["updated_us"] = state.updated_us
            out.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
            count += 1
    return count


def load_workload(path: str | Path) -> list[SessionState]:
    """Sessions in ascending, unique updated-time order, ready for the store."""
    activities: dict[tuple[Any, ...], ActivityShape] = {}
    states: list[SessionState] = []
    with Path(path).open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                states.append(_state(json.loads(line), activities))
            except (ValueError, KeyError, TypeError) as exc:
                raise WorkloadFileError(f"{path}:{number}: {exc}") from None
    states.sort(key=lambda s: (s.updated_us, s.session_id))
    last = 0
    for state in states:
        if state.updated_us <= last:
            state.updated_us = last + 1
        last = state.updated_us
    return states


def _state(
    record: dict[str, Any], activities: dict[tuple[Any, ...], ActivityShape]
) -> SessionState:
    shapes = []
    marks: list[Mark] = []
    for sub in record.get("subscores") or []:
        items = tuple(str(i) for i in sub.get("items") or ())
        num_questions = int(sub.get("num_questions") or len(items))
        shapes.append(
            SubscoreShape(
                id=str(sub["id"]),
                title=str(sub.get("title") or ""),
                num_questions=num_questions,
                max_score=float(sub.get("max_score") or 0),
                items=items,
            )
        )
        marks.append(
            (
                int(sub.get("num_attempted") or 0),
                _float(sub.get("score")),
                _float(sub.get("attempted_max_score")),
            )
        )
    activity_id = str(record["activity_id"])
    key = (activity_id, tuple(shapes))
    activity = activities.get(key)
    if activity is None:
        activity = activities[key] = ActivityShape(activity_id, tuple(shapes))
    updated = record.get("updated_us")
    updated_us = int(updated) if updated is not None else _time(record.get("dt_updated"))
    if updated_us is None:
        raise ValueError("a line needs updated_us or dt_updated")
    saved = _time(record.get("dt_saved")) or updated_us
    extra = {k: v for k, v in record.items() if k not in MODELED}
    return SessionState(
        session_id=str(record["session_id"]),
        user_id=str(record["user_id"]),
        activity=activity,
        status=str(record["status"]),
        marks=tuple(marks),
        score=_float(record.get("score")),
        max_score=_float(record.get("max_score")),
        started_us=_time(record.get("dt_started")) or saved,
        saved_us=saved,
        completed_us=_time(record.get("dt_completed")),
        updated_us=updated_us,
        extra=extra or None,
    )


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _time(value: Any) -> int | None:
    if value is None or value == "":
        return None
    return parse_iso_us(str(value))
