"""Ground truth: every state change, as it happened, for tests to check a connector by.

Each change is one JSON line (and, in-process, one entry in memory):

    {"seq": 7, "kind": "change", "change": "submitted", "session_id": "...",
     "user_id": "...", "activity_id": "...", "status": "Completed",
     "previous_status": "Incomplete", "content_changed": true, "score": 7.5,
     "max_score": 10, "subscores": [...], "dt_updated": "...Z", "updated_us": 1700000000123456}

``change`` is one of ``CHANGES``; ``saved`` has ``content_changed: false``: the repeats a
connector must drop. Faults that alter data a client sees (a malformed record) are
logged too, as ``{"seq", "kind": "fault", "fault": "malformed", "session_id", "how"}``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Any, Final

from connector.emulator.records import SessionState, iso_millis

CREATED: Final = "created"  # a new session (also every initial one, with "initial": true)
SAVED: Final = "saved"  # saved: only dt_saved and the updated time move
SUBMITTED: Final = "submitted"  # Incomplete -> Completed (scored) or Pending Scoring
SCORED: Final = "scored"  # Pending Scoring -> Completed with the final scores
RESCORED: Final = "rescored"  # Completed stays Completed, scores change
DISCARDED: Final = "discarded"  # -> Discarded
REOPENED: Final = "reopened"  # an administrator set Completed back to Incomplete
CHANGES: Final = (CREATED, SAVED, SUBMITTED, SCORED, RESCORED, DISCARDED, REOPENED)

#: (seq, change, state, previous status, initial) or (seq, fault details)
_Entry = tuple[int, str, SessionState, str | None, bool] | tuple[int, dict[str, Any]]


class TruthLog:
    """Appends changes to an optional JSON-lines file and, optionally, to memory."""

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        keep_in_memory: bool = True,
        log_initial: bool = True,
    ) -> None:
        self.path = Path(path) if path else None
        self._file: IO[str] | None = (
            self.path.open("a", encoding="utf-8") if self.path is not None else None
        )
        self._keep = keep_in_memory
        #: False: the initial sessions are not logged (a million lines take ~20 s to write)
        self._log_initial = log_initial
        self._entries: list[_Entry] = []
        self.seq = 0

    def change(
        self,
        change: str,
        state: SessionState,
        previous_status: str | None = None,
        *,
        initial: bool = False,
    ) -> None:
        self.seq += 1
        if initial and not self._log_initial:
            return
        if self._keep:
            self._entries.append((self.seq, change, state, previous_status, initial))
        if self._file is not None:
            line = _change_record(self.seq, change, state, previous_status, initial)
            self._file.write(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n")

    def fault(self, fault: str, **details: Any) -> None:
        self.seq += 1
        record = {"seq": self.seq, "kind": "fault", "fault": fault, **details}
        if self._keep:
            self._entries.append((self.seq, record))
        if self._file is not None:
            self._file.write(json.dumps(record, ensure_ascii=False) + "\n")

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def records(self, since_seq: int = 0) -> list[dict[str, Any]]:
        """The in-memory entries after ``since_seq``, as the file has them."""
        out = []
        for entry in self._entries:
            if entry[0] <= since_seq:
                continue
            if len(entry) == 2:
                out.append(dict(entry[1]))
            else:
                out.append(_change_record(*entry))
        return out


def _change_record(
    seq: int, change: str, state: SessionState, previous_status: str | None, initial: bool
) -> dict[str, Any]:
    record = state.to_record(False)
    line: dict[str, Any] = {
        "seq": seq,
        "kind": "change",
        "change": change,
        "session_id": state.session_id,
        "user_id": state.user_id,
        "activity_id": state.activity_id,
        "status": state.status,
        "previous_status": previous_status,
        "content_changed": change != SAVED,
        "score": record["score"],
        "max_score": record["max_score"],
        "subscores": record["subscores"],
        "dt_updated": iso_millis(state.updated_us),
        "updated_us": state.updated_us,
    }
    if initial:
        line["initial"] = True
    return line


def read_truth(path: str | Path) -> list[dict[str, Any]]:
    """The records of a truth file (what ``--truth FILE`` wrote)."""
    with Path(path).open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]
