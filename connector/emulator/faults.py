"""Fault injection: each fault is off by default and drawn from its own seeded RNG.

Faults fall in two groups. Before the request is handled: a reset connection, a 5xx,
a 429 burst. After a successful page was built: a truncated body, HTTP 200 with
``meta.status: false``, a stalled cursor (the page this token was issued with, again),
one malformed record. Latency applies to every answer.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, fields
from enum import Enum
from typing import Any, TypeVar


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

    @property
    def any(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self))

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value < 0 or (f.name.endswith("_rate") and value > 1):
                raise ValueError(f"fault {f.name}={value} is out of range")


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

    def malform(self, record: dict[str, Any]) -> str:
        """Break one record the ways a broken service might; returns how."""
        how = self._rng.choice(("missing_ids", "wrong_types"))
        if how == "missing_ids":
            record.pop("session_id", None)
            record["user_id"] = None
        else:
            record["session_id"] = 12345
            record["score"] = "forty"
            record["subscores"] = "n/a"
        return how

    def _count(self, fault: _Fault) -> _Fault:
        self.counts[fault.value] += 1
        return fault
