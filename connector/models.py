"""Small frozen value types shared by the client, the detector and the pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: One API record exactly as the Data API returned it (decoded JSON object). Kept raw so
#: that fields the schema does not model yet are never lost and dead letters keep the
#: original JSON.
RawRecord = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Page:
    """One successful response of ``/sessions/scores``."""

    #: the ``data`` items in order; normally objects, but anything the service sent is
    #: kept so that record validation can send it to the dead-letter topic
    records: tuple[Any, ...]
    #: the ``meta.next`` token; None when the service sent none (it omits it on empty pages)
    next_token: str | None
    #: ``meta.timestamp``: the server's clock when it answered (Unix seconds), if sent
    server_time: int | None = None
    #: the ``limit`` that was finally used (smaller than asked after a 20027 retry)
    limit: int = 50
    meta: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def is_empty(self) -> bool:
        return not self.records
