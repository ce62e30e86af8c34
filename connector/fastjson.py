"""Fast JSON in and out (orjson): the only module that imports it.

Used where JSON is on the per-record path: decoding Data API pages and the canonical
form of fingerprints. Everything else uses the standard ``json`` module.
"""

from __future__ import annotations

from typing import Any

import orjson

#: what ``loads`` raises for bytes that are not JSON (a ValueError subclass)
JSONDecodeError = orjson.JSONDecodeError


def loads(data: bytes | str) -> Any:
    return orjson.loads(data)


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON, keys in insertion order. Raises TypeError for what JSON or
    orjson cannot hold (e.g. an int beyond 64 bits)."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError as exc:  # a TypeError subclass; keep the plain type
        raise TypeError(str(exc)) from exc
