"""CloudEvents headers (Kafka protocol binding, binary mode): every required attribute,
and each one consistent with the event value it travels with."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.changes import ChangeDetector, SessionEntry, SessionState
from connector.changes.event import change_to_event
from connector.kafka.cloudevents import CloudEventHeaders, rfc3339_millis
from connector.kafka.serde import EventDecoder, SingleObjectEncoder
from connector.models import ChangeKind, EventSource

#: what the CloudEvents Kafka binding requires in binary mode (content-type: the value's)
REQUIRED = ("ce_specversion", "ce_id", "ce_source", "ce_type", "content-type")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
RFC3339_MILLIS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
OBSERVED = datetime(2025, 3, 4, 5, 6, 7, 890000, tzinfo=UTC)


def as_dict(headers: list[tuple[str, Any]]) -> dict[str, bytes]:
    found = dict(headers)
    assert len(found) == len(headers), "an attribute twice"
    assert all(isinstance(value, bytes) for value in found.values())
    return found


@pytest.mark.parametrize("kind", list(ChangeKind))
def test_every_required_attribute_is_there(kind: ChangeKind) -> None:
    event_id = str(uuid.uuid4())
    headers = as_dict(CloudEventHeaders("scores-eu")(event_id, kind, "sess-1", 1_741_064_767_890))
    assert set(REQUIRED) <= set(headers)
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_id"] == event_id.encode()
    assert headers["ce_source"] == b"/learnosity-kafka-connector/scores-eu"
    assert headers["ce_type"] == f"learnosity.scores.session.{kind.value}".encode()
    assert headers["ce_subject"] == b"sess-1"
    assert headers["ce_time"] == b"2025-03-04T05:06:07.890Z"
    assert headers["content-type"] == b"application/avro"


def test_each_change_kind_has_its_own_type() -> None:
    make = CloudEventHeaders("c")
    types = {as_dict(make("id", kind, "s", 0))["ce_type"] for kind in ChangeKind}
    assert len(types) == len(ChangeKind)


def test_no_updated_time_no_ce_time() -> None:
    headers = as_dict(CloudEventHeaders("c")("id", ChangeKind.CREATED, "s", -1))
    assert "ce_time" not in headers  # optional in CloudEvents; never a made-up time
    assert set(REQUIRED) <= set(headers)


def test_a_session_id_beyond_ascii_is_utf8() -> None:
    headers = as_dict(CloudEventHeaders("c")("id", ChangeKind.CREATED, "sessión-ü", 0))
    assert headers["ce_subject"].decode("utf-8") == "sessión-ü"


@given(st.integers(0, 253_402_300_799_999))  # 1970 .. 9999-12-31T23:59:59.999Z
def test_ce_time_is_rfc3339_utc_to_the_millisecond(ms: int) -> None:
    text = rfc3339_millis(ms)
    assert RFC3339_MILLIS.match(text), text
    expected = EPOCH + timedelta(milliseconds=ms)
    assert datetime.fromisoformat(text) == expected
    assert text == expected.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


# --- consistent with the value ---------------------------------------------------------------
TIMES = st.datetimes(
    min_value=datetime(1971, 1, 1),
    max_value=datetime(2200, 1, 1),
    timezones=st.sampled_from(
        [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
    ),
)
RECORDS = st.fixed_dictionaries(
    {
        "session_id": st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=12),
        "user_id": st.text(min_size=1, max_size=6).filter(str.isprintable),
        "activity_id": st.just("act"),
        "status": st.sampled_from(["Incomplete", "Completed", "Pending Scoring"]),
        "score": st.none() | st.integers(0, 40),
        "max_score": st.just(40),
    },
    optional={"dt_updated": TIMES.map(lambda d: d.isoformat(timespec="milliseconds"))},
)


@settings(max_examples=150)
@given(RECORDS, st.sampled_from([None, "Incomplete", "Completed"]))
def test_the_headers_say_what_the_value_says(
    record: dict[str, Any], previous_status: str | None
) -> None:
    """ce_id is the value's event_id, ce_subject its session_id, ce_time its dt_updated,
    ce_type its change; for created, status_changed and score_changed alike."""
    state = SessionState()
    if previous_status is not None:  # the session was published before, in another state
        state.apply({record["session_id"]: SessionEntry(1, previous_status, 0, 1.0, 40.0)})
    (change,) = ChangeDetector().detect([record], state).changes
    value = SingleObjectEncoder().encode(
        change_to_event(change, OBSERVED, EventSource("c", "v2025.2.LTS", "0"))
    )
    decoded = EventDecoder().decode(value)
    headers = as_dict(
        CloudEventHeaders("c")(
            change.event_id, change.kind, change.record.session_id, change.record.updated_ms
        )
    )
    assert headers["ce_id"].decode() == str(decoded["event_id"])
    assert uuid.UUID(headers["ce_id"].decode()) == decoded["event_id"]
    assert headers["ce_subject"].decode("utf-8") == decoded["session_id"]
    assert headers["ce_type"] == f"learnosity.scores.session.{decoded['change']}".encode()
    if decoded["dt_updated"] is None:
        assert "ce_time" not in headers
    else:
        assert datetime.fromisoformat(headers["ce_time"].decode()) == decoded["dt_updated"]
