"""The Data API's error answers: a code, a message and the HTTP status that goes with it."""

from __future__ import annotations

from typing import Final

MISSING_OR_INVALID: Final = 20000
TOO_MANY_IDS: Final = 20002
INVALID_CONSUMER: Final = 41002
SIGNATURE_MISMATCH: Final = 41003
TIMESTAMP_OUT_OF_RANGE: Final = 41004
INVALID_DOMAIN: Final = 41005
RATE_LIMITED: Final = 42000
UNSUPPORTED_VERSION: Final = 43000
#: not a documented code: what the emulator's ``meta.status: false`` fault answers
INTERNAL: Final = 10001


class ApiError(Exception):
    """An answer in the error envelope: ``{"meta": {"status": false, "code", "message"}}``."""

    def __init__(self, code: int, message: str, http_status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.http_status = http_status


def bad_request(message: str) -> ApiError:
    return ApiError(MISSING_OR_INVALID, message, 400)


def forbidden(code: int, message: str) -> ApiError:
    return ApiError(code, message, 403)
