"""Turns fetched records plus the committed session state into change events. No I/O.

For each record, in order:
    invalid                 → ``invalid`` (record, error); state untouched
    session never seen      → ``created``
    older than the last one → stale (its updated time is before the one published: a
                              slice read it before the tail read the newer one): dropped
    same fingerprint        → a repeat: counted, dropped (a newer updated time is kept)
    status differs          → ``status_changed`` (wins when scores changed too; the
                              event carries the new scores anyway)
    anything else differs   → ``score_changed``
Each record is compared against the latest earlier decision about its session: this
call's own ``updates`` first, then the caller's ``pending`` (earlier pages of the same
uncommitted transaction), then the committed ``state``. So a session seen twice in one
batch yields only the changes between its distinct consecutive states, in order.
``state`` is never modified: the caller applies ``updates`` only after the Kafka
transaction holding the events commits.

``decide`` is the stateful half alone, for records validated and fingerprinted ahead
(``connector.changes.prepare``, on the fetch side); ``ChangeDetector.detect`` does all
of it for raw API items.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol

from connector.changes.fingerprint import event_id, fingerprint
from connector.changes.state import SessionEntry
from connector.changes.validate import UNKNOWN_TIME, validate
from connector.errors import InvalidRecordError
from connector.models import Change, ChangeKind, R, ScoreRecord


class SessionLookup(Protocol):
    """The read side of the committed state (``SessionState``, or a dict in tests)."""

    def get(self, session_id: str, /) -> SessionEntry | None: ...


@dataclass(slots=True)
class DetectionResult(Generic[R]):
    changes: list[Change[R]] = field(default_factory=list)
    #: records dropped because nothing that matters changed
    repeats: int = 0
    #: records dropped because the session was already published in a newer state
    stale: int = 0
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
    ) -> DetectionResult[ScoreRecord]:
        """Validate and fingerprint raw API items, then ``decide`` them."""
        valid: list[tuple[ScoreRecord, int]] = []
        invalid: list[tuple[Any, InvalidRecordError]] = []
        for item in records:
            try:
                record = validate(item)
            except InvalidRecordError as exc:
                invalid.append((item, exc))
                continue
            valid.append((record, fingerprint(record.raw, self.include_responses)))
        result = decide(valid, state, pending)
        result.invalid = invalid
        return result


def decide(
    records: Iterable[tuple[R, int]],
    state: SessionLookup,
    pending: Mapping[str, SessionEntry] | None = None,
) -> DetectionResult[R]:
    """Decide valid ``(record, fingerprint)`` pairs against ``pending`` (earlier,
    uncommitted decisions of the same transaction, e.g. the previous pages' ``updates``),
    then ``state``."""
    result: DetectionResult[R] = DetectionResult()
    overlay = result.updates
    pending = pending or {}
    changes = result.changes
    for record, new_fp in records:
        session_id = record.session_id
        previous = overlay.get(session_id) or pending.get(session_id) or state.get(session_id)
        updated = record.updated_ms
        if previous is None:
            kind = ChangeKind.CREATED
            previous_fp = previous_status = previous_score = previous_max = None
        elif updated < previous.updated_ms and updated != UNKNOWN_TIME:
            result.stale += 1
            continue
        elif previous.fingerprint == new_fp:
            result.repeats += 1
            if updated > previous.updated_ms:  # remember how far this session has come
                overlay[session_id] = previous._replace(updated_ms=updated)
            continue
        else:
            previous_fp, previous_status, previous_ms, previous_score, previous_max = previous
            updated = max(updated, previous_ms)  # a record without a time keeps the last one
            same_status = previous_status == record.status
            kind = ChangeKind.SCORE_CHANGED if same_status else ChangeKind.STATUS_CHANGED
        changes.append(
            Change(
                kind,
                record,
                new_fp,
                previous_fp,
                previous_status,
                previous_score,
                previous_max,
                event_id(session_id, new_fp, previous_fp),
            )
        )
        overlay[session_id] = SessionEntry(
            new_fp, record.status, updated, record.score, record.max_score
        )
    return result
