"""Everything about a fetched page that needs no state: done on the fetch side, ahead.

For each item of a page, in order: validate it, fingerprint it, and encode its event
body except the fields only the decision can fill (``kafka.serde.BodyEncoder``). What
fails goes to ``dead_letters`` with its original JSON; no item, however broken (see
``tolerant_json``), makes it raise. The runner then only decides
(``changes.detector.decide``) and publishes, so this work runs in parallel with it, in
the fetch process.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from connector import tolerant_json
from connector.changes.event import record_fields
from connector.changes.fingerprint import fingerprint
from connector.changes.validate import record_position, validate
from connector.errors import InvalidRecordError
from connector.models import DeadLetter, Page, PreparedPage, PreparedRecord
from connector.tolerant_json import MAX_DEPTH, Salvaged, Unreadable, deeper_than

#: writes an event body without its decided fields (``kafka.serde.BodyEncoder.encode``)
EncodeBody = Callable[[Mapping[str, Any]], tuple[bytes, ...]]


class PagePreparer:
    """``Page`` → ``PreparedPage``; pure but for the clock (``observed_at``)."""

    def __init__(
        self,
        *,
        include_responses: bool,
        encode_body: EncodeBody,
        source: Mapping[str, Any],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._include_responses = include_responses
        self._encode_body = encode_body
        self._source = source  # one read-only dict shared by every event
        self._clock = clock

    def __call__(self, page: Page, source: Mapping[str, Any] | None = None) -> PreparedPage:
        """``page`` prepared; ``source`` overrides the events' source block (the lane)."""
        observed_at_ms = int(self._clock() * 1000)
        include_responses = self._include_responses
        encode_body = self._encode_body
        source = self._source if source is None else source
        records: list[PreparedRecord] = []
        dead_letters: list[DeadLetter] = []
        for item in page.records:
            try:  # says why a record is refused
                record = validate(item)
                body = encode_body(record_fields(record, observed_at_ms, source))
            except InvalidRecordError as exc:
                dead_letters.append(dead_letter(item, exc))
                continue
            records.append(
                PreparedRecord(
                    record.session_id,
                    record.user_id,
                    record.status,
                    fingerprint(record.raw, include_responses),
                    body,
                    record.updated_ms,
                    record.score,
                    record.max_score,
                )
            )
        return PreparedPage(
            tuple(records), tuple(dead_letters), len(page.records), page_position(page)
        )


def dead_letter(item: Any, error: InvalidRecordError) -> DeadLetter:
    """``item`` as it goes to the dead-letter topic: its JSON, keyed by its session id.

    An item the fast parser refused keeps the bytes it was served as (they may not be
    UTF-8, which is why it is here); any other is written again, at any depth."""
    key = item.get("session_id") if isinstance(item, dict) else None
    if not isinstance(key, str | int | float):  # no key: a container's repr may recurse
        key = None
    if isinstance(item, Salvaged | Unreadable):
        value = item.source
    elif deeper_than(item, MAX_DEPTH):  # json.dumps recurses: 1,000 levels overflow it
        value = tolerant_json.dumps(item).encode("utf-8", "surrogatepass")
    else:
        value = json.dumps(item, ensure_ascii=False, default=str).encode("utf-8", "surrogatepass")
    return DeadLetter(
        key=str(key).encode("utf-8", "backslashreplace") if key else None,
        value=value,
        error_class=type(error).__name__,
        reason=error.reason,
        message=str(error)[:1000],
    )


def page_position(page: Page) -> float | None:
    """The updated time of the page's newest record that has one (Unix seconds)."""
    for record in reversed(page.records):
        if (position := record_position(record)) is not None:
            return position
    return None
