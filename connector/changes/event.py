"""A Change as the value the Avro schema describes (``avro/session_score_changed.v*.avsc``).

Pure mapping, no encoding: modeled fields are copied (scores as floats, counts as ints,
the API's ISO 8601 times as milliseconds since the epoch for ``timestamp-millis``), and
every field the schema does not model goes, as a JSON object string, into the
``extra_fields_json`` of its level (record, subscore, response), so nothing is lost. A
time that does not parse makes the record a dead letter (``InvalidRecordError``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from connector.changes.fingerprint import SUBSCORE_FIELDS as FINGERPRINTED_SUBSCORE_FIELDS
from connector.changes.validate import invalid
from connector.errors import InvalidRecordError
from connector.models import Change, EventSource, ScoreRecord
from connector.tolerant_json import MAX_DEPTH, deeper_than

RECORD_FIELDS: Final = frozenset(
    (
        "session_id",
        "user_id",
        "activity_id",
        "status",
        "score",
        "max_score",
        "subscores",
        "responses",
        "dt_started",
        "dt_completed",
        "dt_saved",
        "dt_updated",
    )
)
SUBSCORE_FIELDS: Final = frozenset(FINGERPRINTED_SUBSCORE_FIELDS)
RESPONSE_FIELDS: Final = frozenset(
    ("response_id", "score", "max_score", "attempted", "dt_score_updated")
)


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND: Final = timedelta(milliseconds=1)


def epoch_millis(moment: datetime) -> int:
    """Milliseconds since the Unix epoch, exactly (float seconds can be 1 ms off).

    A naive datetime is read as UTC, as fastavro reads it for ``timestamp-millis``.
    """
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _MILLISECOND  # floor, in C: exact for any time


#: the lane of events read by the live tail (a slice's is ``slice:<id>``)
TAIL_LANE: Final = "tail"


def source_fields(
    source: EventSource, lane: str = TAIL_LANE, backfill: bool = False
) -> dict[str, Any]:
    """The event's ``source`` block: who produced it, and which lane read the record."""
    return {
        "connector_name": source.connector_name,
        "api_version": source.api_version,
        "connector_version": source.connector_version,
        "lane": lane,
        "backfill": backfill,
    }


def timestamp_millis(value: Any, name: str) -> int | None:
    """An API time (ISO 8601 text) as ms since the epoch; a naive time is read as UTC."""
    if value is None or value == "":
        return None
    try:
        return epoch_millis(datetime.fromisoformat(value))
    except (TypeError, ValueError) as exc:
        raise InvalidRecordError(
            f"{name}: {str(value)[:60]!r} is not an ISO 8601 time", reason="invalid_value"
        ) from exc


def change_to_event(
    change: Change[ScoreRecord], observed_at: datetime, source: EventSource | Mapping[str, str]
) -> dict[str, Any]:
    """The event value for ``change``; ``observed_at`` must be timezone-aware.

    ``source`` may be given pre-mapped (``source_fields(source)``) to save the work per
    record; the same dict is then shared by every event, which the encoders only read.
    """
    return {
        "event_id": change.event_id,
        "change": change.kind.value,
        "previous_status": change.previous_status,
        "previous_score": change.previous_score,
        "previous_max_score": change.previous_max_score,
        **record_fields(change.record, epoch_millis(observed_at), source),
    }


def record_fields(
    record: ScoreRecord, observed_at_ms: int, source: EventSource | Mapping[str, str]
) -> dict[str, Any]:
    """Every field of the event but the decided ones (``event_id``, ``change`` and the
    ``previous_*``): what a record alone determines, so it can be encoded before the
    change is decided (``kafka.serde.BodyEncoder``)."""
    raw = record.raw
    get = raw.get
    subscores = get("subscores")
    responses = get("responses")
    return {
        "session_id": record.session_id,
        "user_id": record.user_id,
        "activity_id": record.activity_id,
        "status": record.status,
        "score": _double(get("score")),
        "max_score": _double(get("max_score")),
        "subscores": [_subscore(s) for s in subscores] if subscores else None,
        "responses": [_response(r) for r in responses] if responses else None,
        "dt_started": timestamp_millis(get("dt_started"), "dt_started"),
        "dt_completed": timestamp_millis(get("dt_completed"), "dt_completed"),
        "dt_saved": timestamp_millis(get("dt_saved"), "dt_saved"),
        "dt_updated": timestamp_millis(get("dt_updated"), "dt_updated"),
        "observed_at": observed_at_ms,
        "source": source_fields(source) if isinstance(source, EventSource) else source,
        "extra_fields_json": extra_fields_json(raw, RECORD_FIELDS),
    }


def _subscore(subscore: Mapping[str, Any]) -> dict[str, Any]:
    get = subscore.get
    return {
        "id": get("id"),
        "title": get("title"),
        "num_questions": _long(get("num_questions")),
        "num_attempted": _long(get("num_attempted")),
        "score": _double(get("score")),
        "max_score": _double(get("max_score")),
        "attempted_max_score": _double(get("attempted_max_score")),
        "items": get("items"),
        "extra_fields_json": extra_fields_json(subscore, SUBSCORE_FIELDS),
    }


def _response(response: Mapping[str, Any]) -> dict[str, Any]:
    get = response.get
    return {
        "response_id": get("response_id"),
        "score": _double(get("score")),
        "max_score": _double(get("max_score")),
        "attempted": get("attempted"),
        "dt_score_updated": timestamp_millis(get("dt_score_updated"), "dt_score_updated"),
        "extra_fields_json": extra_fields_json(response, RESPONSE_FIELDS),
    }


def _double(value: Any) -> Any:
    # ints become floats so the union branch is "double" (fastavro would pick it anyway)
    return float(value) if type(value) is int else value


def _long(value: Any) -> Any:
    return int(value) if type(value) is float else value


def extra_fields_json(obj: Mapping[str, Any], modeled: frozenset[str]) -> str | None:
    if modeled.issuperset(obj):
        return None  # the common case: nothing unmodeled, no JSON work
    extra = {key: value for key, value in obj.items() if key not in modeled}
    if deeper_than(extra, MAX_DEPTH):  # json.dumps recurses: a field 1,000 deep would overflow
        raise invalid(
            f"a field the schema does not model nests deeper than {MAX_DEPTH}", "too_deep"
        )
    return json.dumps(extra, sort_keys=True, separators=(",", ":"))
