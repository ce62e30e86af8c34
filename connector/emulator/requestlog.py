"""An opt-in log of every request: one line each, ``<Unix time in ms> <HTTP status>``.

For benchmarks that check a client against the quota (requests in any 5 s window, 429s
over time). Status 0 is a connection reset by a fault. The time is when the request
arrived (when the quota counted it), not when a delayed answer left. Writes go through
a large buffer and reach the file when it fills and when the emulator stops.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO


class RequestLog:
    def __init__(self, path: str | Path) -> None:
        # open for the emulator's life; closed by close() when it stops
        self._file: IO[str] | None = Path(path).open(  # noqa: SIM115
            "a", encoding="ascii", buffering=1 << 20
        )

    def record(self, now: float, status: int) -> None:
        if self._file is not None:
            self._file.write(f"{int(now * 1000)} {status}\n")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_request_log(path: str | Path) -> list[tuple[int, int]]:
    """(Unix ms, status) per request, as ``RequestLog`` wrote them."""
    with Path(path).open(encoding="ascii") as lines:
        return [(int(ms), int(status)) for ms, status in (line.split() for line in lines)]
