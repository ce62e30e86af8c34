"""Turns fetched records plus the committed session state into change events. No I/O.

For each record, in order:
    invalid                 → ``invalid`` (record, error); state untouched
    session never seen      → ``created``
    same fingerprint        → a repeat: counted, dropped
    status differs          → ``status_changed`` (wins when scores changed too; the
                              event carries the new scores anyway)
    anything else differs   → ``score_changed``
Each record is compared against the latest earlier decision about its session: this
call's own ``updates`` first, then the caller's ``pending`` (earlier pages of the same
uncommitted transaction), then the committed ``state``. So a session seen twice in one
batch yields only the changes between its distinct consecutive states, in order.
``state`` is never modified: the caller applies ``updates`` only after the Kafka
transaction holding the events commits.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from connector.changes.fingerprint import event_id, fingerprint
from connector.changes.state import SessionEntry
from connector.changes.validate import validate
from connector.errors import InvalidRecordError
from connector.models import Change, ChangeKind


class SessionLookup(Protocol):
    """The read side of the committed state (``SessionState``, or a dict in tests)."""

    def get(self, session_id: str, /) -> SessionEntry | None: ...


@dataclass(slots=True)
class DetectionResult:
    changes: list[Change] = field(default_factory=list)
    #: records dropped because nothing that matters changed
    repeats: int = 0
    #: records that failed validation, as fetched, with the reason (for the DLQ)
    invalid: list[tuple[Any, InvalidRecordError]] = field(default_factory=list)
    #: each changed session's new entry, in first-seen order; apply after the commit
    updates: dict[str, SessionEntry] = field(default_factory=dict)


class ChangeDetector:
    def __init__(self, include_responses: bool = False) -> None:
        #: fingerprint response scores too (LEARNOSITY_INCLUDE_RESPONSE_SCORES)
        self.include_responses = include_responses

    def detect(
        self,
        records: Iterable[Any],
        state: SessionLookup,
        pending: Mapping[str, SessionEntry] | None = None,
    ) -> DetectionResult:
        """Decide ``records`` against ``pending`` (earlier, uncommitted decisions of the
        same transaction, e.g. the previous pages' ``updates``), then ``state``."""
        result = DetectionResult()
        overlay = result.updates
        pending = pending or {}
        for item in records:
            try:
                record = validate(item)
            except InvalidRecordError as exc:
                result.invalid.append((item, exc))
                continue
            session_id = record.session_id
            new_fp = fingerprint(record.raw, self.include_responses)
            previous = overlay.get(session_id) or pending.get(session_id) or state.get(session_id)
            if previous is None:
                kind = ChangeKind.CREATED
                previous_fp, previous_status = None, None
            elif previous.fingerprint == new_fp:
                result.repeats += 1
                continue
            else:
                previous_fp, previous_status = previous
                same_status = previous_status == record.status
                kind = ChangeKind.SCORE_CHANGED if same_status else ChangeKind.STATUS_CHANGED
            result.changes.append(
                Change(
                    kind=kind,
                    record=record,
                    fingerprint=new_fp,
                    previous_fingerprint=previous_fp,
                    previous_status=previous_status,
                    event_id=event_id(session_id, new_fp, previous_fp),
                )
            )
            overlay[session_id] = SessionEntry(new_fp, record.status)
        return result
