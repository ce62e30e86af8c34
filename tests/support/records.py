"""The record the Data API documents for /sessions/scores, shared by the unit tests."""

from __future__ import annotations

import copy
from typing import Any

DOCUMENTED_RECORD: dict[str, Any] = {
    "user_id": "17c456c0-0000-4000-8000-000000000001",
    "activity_id": "chemistry_classtest1",
    "session_id": "4d3115f0-0000-4000-8000-000000000001",
    "score": 39,
    "max_score": 40,
    "status": "Completed",
    "subscores": [
        {
            "id": "subscore-1",
            "title": "biochem",
            "num_questions": 20,
            "num_attempted": 20,
            "score": 19,
            "max_score": 20,
            "attempted_max_score": 20,
            "items": ["293486384", "293481468"],
        }
    ],
}


def documented_record(**changes: Any) -> dict[str, Any]:
    """A fresh deep copy of DOCUMENTED_RECORD with ``changes`` applied (top level)."""
    record = copy.deepcopy(DOCUMENTED_RECORD)
    record.update(changes)
    return record
