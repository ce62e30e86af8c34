"""Change detection, pure and without I/O: validation, fingerprints, the detector, state.

validate(item) -> ScoreRecord                      raises InvalidRecordError
fingerprint(record, include_responses) -> int      64-bit, stable across processes
ChangeDetector(include_responses).detect(records, state) -> DetectionResult
SessionState: get / apply(updates) / len; encode_entry / decode_entry for the topic
"""

from connector.changes.detector import ChangeDetector, DetectionResult, SessionLookup
from connector.changes.fingerprint import event_id, fingerprint
from connector.changes.state import (
    SessionEntry,
    SessionState,
    StateEntryError,
    decode_entry,
    encode_entry,
    is_session_key,
)
from connector.changes.validate import INVALID_REASONS, validate

__all__ = [
    "INVALID_REASONS",
    "ChangeDetector",
    "DetectionResult",
    "SessionEntry",
    "SessionLookup",
    "SessionState",
    "StateEntryError",
    "decode_entry",
    "encode_entry",
    "event_id",
    "fingerprint",
    "is_session_key",
    "validate",
]
