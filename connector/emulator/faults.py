"""Fault injection: each fault is off by default and drawn from its own seeded RNG.

Faults fall in two groups. Before the request is handled: a reset connection, a 5xx,
a 429 burst. After a successful page was built: a truncated body, HTTP 200 with
``meta.status: false``, a stalled cursor (the page this token was issued with, again),
one malformed record, oversized records. A frozen cursor changes the page itself: the
token that was sent comes back as ``next``, with the records after it whose
``dt_saved`` moves on every answer, so the records differ but the cursor never moves
(for ``frozen_cursor_length`` requests with that token). Latency applies to every answer.

Malformed kinds (``malformed_kinds``; the default keeps the first two):
    missing_ids        no ``session_id``, ``user_id`` null
    wrong_types        ``session_id`` a number, ``score`` text, ``subscores`` text
    non_utf8           ``user_id`` ends in bytes that are not UTF-8
    lone_surrogate     ``status`` ends in an escaped lone surrogate (``\ud83d``)
    nan                ``score`` is ``NaN``
    overflow           ``max_score`` is ``1e400`` (beyond a double)
    nested             a field ``notes`` nested 1,000 deep (within orjson's 1,024)
    nested_past_limit  the same, 1,100 deep (past orjson's limit)
"""

from __future__ import annotations

import json
import random
from collections import Counter, OrderedDict
from dataclasses import dataclass, fields
from enum import Enum
from typing import Any, Final, TypeVar

#: every malformed kind (see the module docstring), and the ones served by default
MALFORMED_KINDS: Final = (
    "missing_ids",
    "wrong_types",
    "non_utf8",
    "lone_surrogate",
    "nan",
    "overflow",
    "nested",
    "nested_past_limit",
)
DEFAULT_MALFORMED_KINDS: Final = MALFORMED_KINDS[:2]
#: frozen tokens remembered at once (the oldest is forgotten first)
FROZEN_MEMORY: Final = 4096
_SPLICE: Final = "\x00splice\x00"


@dataclass(frozen=True)
class FaultConfig:
    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    #: fraction of requests answered 500, 502 or 503
    error_rate: float = 0.0
    #: every N requests, M in a row are answered 429 / 42000 (0: never)
    burst_429_every: int = 0
    burst_429_length: int = 0
    truncate_rate: float = 0.0
    status_false_rate: float = 0.0
    stall_rate: float = 0.0
    malformed_rate: float = 0.0
    reset_rate: float = 0.0
    #: what a malformed record may be (each drawn alike)
    malformed_kinds: tuple[str, ...] = DEFAULT_MALFORMED_KINDS
    #: fraction of records served with ``oversized_bytes`` more bytes (a field ``padding``)
    oversized_rate: float = 0.0
    oversized_bytes: int = 0
    #: fraction of tokens that freeze on their first request with records after them
    frozen_cursor_rate: float = 0.0
    #: how many requests with a frozen token are answered frozen
    frozen_cursor_length: int = 20

    @property
    def any(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self) if f.name not in _SETTINGS_OF_FAULTS)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "malformed_kinds":
                unknown = set(value) - set(MALFORMED_KINDS)
                if unknown or not value:
                    raise ValueError(f"malformed kinds {sorted(unknown)} are unknown")
            elif value < 0 or (f.name.endswith("_rate") and value > 1):
                raise ValueError(f"fault {f.name}={value} is out of range")
        if self.oversized_rate and not self.oversized_bytes:
            raise ValueError("fault oversized_rate needs oversized_bytes")


#: fields that shape a fault rather than turn one on
_SETTINGS_OF_FAULTS: Final = frozenset(
    ("malformed_kinds", "oversized_bytes", "frozen_cursor_length")
)


class Before(Enum):
    """What happens to a request before it is handled."""

    NONE = "none"
    RESET = "reset"
    ERROR_500 = "error_500"
    ERROR_502 = "error_502"
    ERROR_503 = "error_503"
    BURST_429 = "burst_429"


class After(Enum):
    """What happens to a good page after it was built."""

    NONE = "none"
    TRUNCATE = "truncate"
    STATUS_FALSE = "status_false"
    STALL = "stall"
    MALFORMED = "malformed"


_Fault = TypeVar("_Fault", Before, After)


class FaultInjector:
    def __init__(self, config: FaultConfig, seed: int = 0) -> None:
        self.config = config
        self.enabled = config.any
        self._rng = random.Random(f"faults-{seed}")
        self._requests = 0
        #: how many of each fault were served
        self.counts: Counter[str] = Counter()
        #: frozen token -> frozen answers left
        self._frozen: OrderedDict[str, int] = OrderedDict()

    def delay_seconds(self) -> float:
        config = self.config
        if not config.latency_ms and not config.latency_jitter_ms:
            return 0.0
        jitter = self._rng.uniform(0, config.latency_jitter_ms) if config.latency_jitter_ms else 0
        return (config.latency_ms + jitter) / 1000.0

    def before(self) -> Before:
        config = self.config
        self._requests += 1
        if config.burst_429_every and config.burst_429_length:
            phase = (self._requests - 1) % config.burst_429_every
            if phase >= config.burst_429_every - config.burst_429_length:
                return self._count(Before.BURST_429)
        if config.reset_rate and self._rng.random() < config.reset_rate:
            return self._count(Before.RESET)
        if config.error_rate and self._rng.random() < config.error_rate:
            return self._count(
                self._rng.choice((Before.ERROR_500, Before.ERROR_502, Before.ERROR_503))
            )
        return Before.NONE

    def after(self, page_size: int, has_token: bool) -> After:
        config = self.config
        rng = self._rng
        if config.stall_rate and has_token and rng.random() < config.stall_rate:
            return self._count(After.STALL)
        if config.malformed_rate and page_size and rng.random() < config.malformed_rate:
            return self._count(After.MALFORMED)
        if config.status_false_rate and rng.random() < config.status_false_rate:
            return self._count(After.STATUS_FALSE)
        if config.truncate_rate and rng.random() < config.truncate_rate:
            return self._count(After.TRUNCATE)
        return After.NONE

    def pick(self, size: int) -> int:
        return self._rng.randrange(size)

    def malform(self, record: dict[str, Any]) -> tuple[str, bytes]:
        """Break one record the ways a broken service might: how, and its bytes."""
        how = self._rng.choice(self.config.malformed_kinds)
        raw: bytes | None = None  # what the marked field holds, as bytes
        if how == "missing_ids":
            record.pop("session_id", None)
            record["user_id"] = None
        elif how == "wrong_types":
            record["session_id"] = 12345
            record["score"] = "forty"
            record["subscores"] = "n/a"
        elif how == "non_utf8":
            raw = json.dumps(record["user_id"]).encode()[:-1] + b'\xc3\x28"'
            record["user_id"] = _SPLICE
        elif how == "lone_surrogate":
            record["status"] += "\ud83d"  # json.dumps escapes it: \ud83d
        elif how == "nan":
            record["score"] = float("nan")
        elif how == "overflow":
            raw, record["max_score"] = b"1e400", _SPLICE
        else:
            levels = 1000 if how == "nested" else 1100
            raw, record["notes"] = b"[" * levels + b"]" * levels, _SPLICE
        text = json.dumps(record).encode()
        if raw is not None:
            text = text.replace(json.dumps(_SPLICE).encode(), raw)
        return how, text

    def oversized(self, count: int) -> list[int]:
        """Which of ``count`` records are served oversized."""
        rate = self.config.oversized_rate
        if not rate:
            return []
        chosen = [i for i in range(count) if self._rng.random() < rate]
        if chosen:
            self.counts["oversized"] += len(chosen)
        return chosen

    def frozen(self, token: Any) -> bool:
        """Whether the page asked with ``token`` is answered frozen (a page with records
        after it is assumed; the caller checks)."""
        config = self.config
        if not config.frozen_cursor_rate or not isinstance(token, str):
            return False
        left = self._frozen.get(token)
        if left is None:
            if self._rng.random() >= config.frozen_cursor_rate:
                return False
            left = config.frozen_cursor_length
            self._frozen[token] = left
            while len(self._frozen) > FROZEN_MEMORY:
                self._frozen.popitem(last=False)
        if left <= 0:
            return False
        self._frozen[token] = left - 1
        self.counts["frozen_cursor"] += 1
        return True

    def _count(self, fault: _Fault) -> _Fault:
        self.counts[fault.value] += 1
        return fault
