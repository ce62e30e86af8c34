"""The emulator's faults for issue 14: malformed kinds, oversized records, frozen cursors.

Called on the endpoint without HTTP; the bytes are what the connector would receive.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from connector.emulator import Emulator
from connector.emulator.cursor import encode_token
from connector.emulator.faults import MALFORMED_KINDS, FaultConfig
from connector.learnosity.responses import parse_response
from connector.tolerant_json import Salvaged, Unreadable
from tests.fixtures.emulator import form_body, make_config, sdk_form

PATH = "/v2025.2.LTS/sessions/scores"


def make(**faults: Any) -> Emulator:
    return Emulator(make_config(sessions=200, seed=4, faults=faults))


def raw_page(emulator: Emulator, request: dict[str, Any]) -> bytes:
    form = sdk_form(emulator.consumer_key, emulator.consumer_secret, request)
    reply = emulator.endpoint.handle("POST", PATH, form_body(form))
    assert reply.status == 200
    return reply.body


@pytest.mark.parametrize("kind", MALFORMED_KINDS)
def test_each_malformed_kind_is_one_bad_record_among_good_ones(kind: str) -> None:
    emulator = make(malformed_rate=1.0, malformed_kinds=(kind,))
    body = raw_page(emulator, {"sort": "asc", "limit": 20})
    (fault,) = [t for t in emulator.truth_records() if t["kind"] == "fault"]
    assert fault["how"] == kind and fault["fault"] == "malformed"
    page = parse_response(200, {}, body)  # what the connector makes of it
    assert len(page.records) == 20
    emulator.faults.enabled = False  # the same page without the fault
    served = json.loads(raw_page(emulator, {"sort": "asc", "limit": 20}))["data"]
    differing = [i for i, (r, s) in enumerate(zip(page.records, served, strict=True)) if r != s]
    assert len(differing) == 1
    assert served[differing[0]]["session_id"] == fault["session_id"]
    if kind in {"missing_ids", "wrong_types", "nested"}:
        orjson.loads(body)  # a page orjson reads
    else:
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(body)
        (bad,) = [r for r in page.records if isinstance(r, Salvaged | Unreadable)]
        assert bad.source in body


def test_the_default_kinds_are_the_old_two() -> None:
    assert FaultConfig().malformed_kinds == ("missing_ids", "wrong_types")
    with pytest.raises(ValueError, match="unknown"):
        FaultConfig(malformed_kinds=("nope",))
    assert not FaultConfig(malformed_kinds=MALFORMED_KINDS, oversized_bytes=9).any


def test_oversized_records_carry_padding_and_are_logged() -> None:
    emulator = make(oversized_rate=1.0, oversized_bytes=10_000)
    body = raw_page(emulator, {"sort": "asc", "limit": 10})
    assert len(body) > 10 * 10_000
    records = json.loads(body)["data"]
    assert all(len(r["padding"]) == 10_000 for r in records)
    (fault,) = [t for t in emulator.truth_records() if t["kind"] == "fault"]
    assert fault["fault"] == "oversized" and len(fault["session_ids"]) == 10
    assert emulator.stats()["faults"] == {"oversized": 10}
    # the cached record is untouched: without the fault, the same page is small again
    emulator.faults.enabled = False
    assert "padding" not in json.loads(raw_page(emulator, {"sort": "asc", "limit": 10}))["data"][0]


def test_a_frozen_cursor_answers_its_own_token_with_records_that_change() -> None:
    emulator = make(frozen_cursor_rate=1.0, frozen_cursor_length=3)
    first = json.loads(raw_page(emulator, {"sort": "asc", "limit": 5}))  # no token: normal
    token = first["meta"]["next"]
    answers = [
        json.loads(raw_page(emulator, {"sort": "asc", "limit": 5, "next": token})) for _ in range(4)
    ]
    frozen, after = answers[:3], answers[3]
    assert all(a["meta"]["next"] == token for a in frozen)
    ids = [[r["session_id"] for r in a["data"]] for a in frozen]
    assert ids[0] == ids[1] == ids[2] and ids[0] != [r["session_id"] for r in first["data"]]
    saved = [[r["dt_saved"] for r in a["data"]] for a in frozen]
    assert saved[0] != saved[1] != saved[2]  # only dt_saved differs between the answers
    strip = [[{k: v for k, v in r.items() if k != "dt_saved"} for r in a["data"]] for a in frozen]
    assert strip[0] == strip[1] == strip[2]
    # after frozen_cursor_length answers the token moves on, with the same records
    assert after["meta"]["next"] != token
    assert [r["session_id"] for r in after["data"]] == ids[0]
    assert emulator.stats()["faults"]["frozen_cursor"] == 3


def test_a_frozen_cursor_needs_a_token_and_records() -> None:
    emulator = make(frozen_cursor_rate=1.0)
    assert json.loads(raw_page(emulator, {"sort": "asc", "limit": 50}))["data"]
    past_the_end = encode_token(4_000_000_000 * 1_000_000)
    empty = json.loads(raw_page(emulator, {"sort": "asc", "next": past_the_end}))
    assert empty["data"] == [] and "next" not in empty["meta"]
    assert "frozen_cursor" not in emulator.stats()["faults"]
