"""Small frozen value types shared by the client, the detector and the pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

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


class ChangeKind(StrEnum):
    """Why an event was emitted; the values are the Avro enum's symbols."""

    #: the connector had never seen this session (or forgot it)
    CREATED = "created"
    #: the status string differs from the last one emitted; wins when scores changed too
    STATUS_CHANGED = "status_changed"
    #: same status, but a score, a subscore or (when asked for) a response score differs
    SCORE_CHANGED = "score_changed"


@dataclass(frozen=True, slots=True)
class ScoreRecord:
    """A validated API record: the identifying fields checked, everything else kept raw."""

    session_id: str
    user_id: str
    activity_id: str
    #: the API's status string, verbatim (unknown statuses are kept as they are)
    status: str
    #: the record exactly as the Data API returned it (for the event and for dead letters)
    raw: RawRecord = field(compare=False, repr=False)
    #: its updated time in ms since the epoch; -1 when it has none
    updated_ms: int = -1

    @property
    def score(self) -> float | None:
        return _number(self.raw.get("score"))

    @property
    def max_score(self) -> float | None:
        return _number(self.raw.get("max_score"))


class PreparedRecord(NamedTuple):
    """A validated record, fingerprinted and encoded ahead of the decision about it.

    Made where the page is fetched (possibly another process: a tuple pickles cheaply);
    holds no raw JSON, only what deciding and publishing need.
    """

    session_id: str
    user_id: str
    status: str
    #: 64-bit fingerprint of what matters (connector.changes.fingerprint)
    fingerprint: int
    #: the event's Avro body without its decided fields (``kafka.serde.BodyEncoder``)
    body: tuple[bytes, ...]
    #: its updated time in ms since the epoch; -1 when it has none
    updated_ms: int = -1
    #: its scores (they become the next change's ``previous_score``/``previous_max_score``)
    score: float | None = None
    max_score: float | None = None


class DecidableRecord(Protocol):
    """What deciding a change needs of a record (``ScoreRecord``, ``PreparedRecord``)."""

    @property
    def session_id(self) -> str: ...

    @property
    def user_id(self) -> str: ...

    @property
    def status(self) -> str: ...

    @property
    def updated_ms(self) -> int: ...

    @property
    def score(self) -> float | None: ...

    @property
    def max_score(self) -> float | None: ...


R = TypeVar("R", bound=DecidableRecord)


class Change(NamedTuple, Generic[R]):
    """One event to publish: a session reached a state the connector had not emitted yet.

    A NamedTuple, not a frozen dataclass: one is made per change, and a frozen
    dataclass's ``__init__`` sets each field through ``object.__setattr__``.
    """

    kind: ChangeKind
    record: R
    #: 64-bit fingerprint of what matters in ``record`` (connector.changes.fingerprint)
    fingerprint: int
    #: the fingerprint this change moves away from; None for ``created``
    previous_fingerprint: int | None
    #: the status this change moves away from; None for ``created``
    previous_status: str | None
    #: the scores of the last event published for the session; None for ``created``
    previous_score: float | None
    previous_max_score: float | None
    #: deterministic id of this transition (connector.changes.fingerprint.event_id)
    event_id: str

    @property
    def session_id(self) -> str:
        return self.record.session_id

    @property
    def user_id(self) -> str:
        """The Kafka key (as UTF-8 bytes)."""
        return self.record.user_id


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record that cannot become an event, as it goes to the dead-letter topic."""

    #: the record's ``session_id`` as UTF-8, when it has a usable one
    key: bytes | None
    #: the record's original JSON
    value: bytes
    error_class: str
    #: one of ``connector.changes.validate.INVALID_REASONS``
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class PreparedPage:
    """One fetched page, made ready for deciding: what the fetch side hands the runner."""

    #: the valid records, in page order
    records: tuple[PreparedRecord, ...]
    dead_letters: tuple[DeadLetter, ...]
    #: how many items the page had (valid or not)
    fetched: int
    #: the updated time (Unix seconds) of the page's newest record, if it has one
    position: float | None

    def __reduce__(self) -> tuple[Any, ...]:
        # pages cross from the fetch process; a NamedTuple pickles as one class call
        # each, plain tuples at a fifth of the cost
        records = tuple(map(tuple, self.records))
        return (_page_from_wire, (records, self.dead_letters, self.fetched, self.position))


def _number(value: Any) -> float | None:
    """A score as the event carries it: a float, or None (validation refused the rest)."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _page_from_wire(
    records: tuple[tuple[Any, ...], ...],
    dead_letters: tuple[DeadLetter, ...],
    fetched: int,
    position: float | None,
) -> PreparedPage:
    new = tuple.__new__
    return PreparedPage(
        tuple(new(PreparedRecord, record) for record in records), dead_letters, fetched, position
    )


@dataclass(frozen=True, slots=True)
class EventSource:
    """Who produced an event; carried in every event's ``source`` field."""

    connector_name: str
    api_version: str
    connector_version: str
