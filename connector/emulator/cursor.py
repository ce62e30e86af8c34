"""The ``next`` token: a position in the (updated time, session id) order.

Updated times are unique per version (see ``store``), so the position is the updated
time of the last record of the page, in microseconds, written like the documented
example (``"1387312240.1410"``): ``<seconds>.<microseconds>``. Clients must treat it as
opaque; the emulator only promises that it sorts as a position.
"""

from __future__ import annotations

import re

_TOKEN = re.compile(r"(\d{1,12})\.(\d{6})")


def encode_token(position_us: int) -> str:
    seconds, micros = divmod(position_us, 1_000_000)
    return f"{seconds}.{micros:06d}"


def decode_token(token: str) -> int | None:
    """The position, or None when the token is not one the emulator issued."""
    match = _TOKEN.fullmatch(token)
    if match is None:
        return None
    return int(match.group(1)) * 1_000_000 + int(match.group(2))
