"""Error codes of the linesync protocol and the exception that carries them.

Every error response is ``{"error": {"code": CODE, "message": TEXT}}`` with a
stable ``code`` from :class:`Code` and the HTTP status given here::

    LinesyncError(code, message)        raised anywhere in the server
      └── rendered as JSON with Code.status

The client raises the same exception type when it receives such a body, so
both sides share one vocabulary.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class Code(StrEnum):
    BAD_REQUEST = "bad_request"
    BAD_PATH = "bad_path"
    BAD_CURSOR = "bad_cursor"
    BAD_DELTA = "bad_delta"
    BAD_FRAMING = "bad_framing"
    CHUNK_MISMATCH = "chunk_mismatch"
    CHUNK_UNAVAILABLE = "chunk_unavailable"
    SIZE_MISMATCH = "size_mismatch"
    UNAUTHENTICATED = "unauthenticated"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    CURSOR_INVALID = "cursor_invalid"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    BATCH_TOO_LARGE = "batch_too_large"
    FILE_TOO_LARGE = "file_too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    RATE_LIMITED = "rate_limited"
    REQUEST_TIMEOUT = "request_timeout"
    INTERNAL = "internal"
    UNAVAILABLE = "unavailable"
    CLIENT_TOO_OLD = "client_too_old"  # protocol/version.py
    CLIENT_TOO_NEW = "client_too_new"

    @property
    def status(self) -> int:
        return _STATUS[self]


_STATUS: dict[Code, int] = {
    Code.BAD_REQUEST: 400,
    Code.BAD_PATH: 400,
    Code.BAD_CURSOR: 400,
    Code.BAD_DELTA: 422,
    Code.BAD_FRAMING: 400,
    Code.CHUNK_MISMATCH: 422,
    Code.CHUNK_UNAVAILABLE: 422,
    Code.SIZE_MISMATCH: 422,
    Code.UNAUTHENTICATED: 401,
    Code.FORBIDDEN: 403,
    Code.NOT_FOUND: 404,
    Code.METHOD_NOT_ALLOWED: 405,
    Code.CURSOR_INVALID: 410,
    Code.PAYLOAD_TOO_LARGE: 413,
    Code.BATCH_TOO_LARGE: 413,
    Code.FILE_TOO_LARGE: 413,
    Code.UNSUPPORTED_MEDIA_TYPE: 415,
    Code.RATE_LIMITED: 429,
    Code.REQUEST_TIMEOUT: 408,
    Code.INTERNAL: 500,
    Code.UNAVAILABLE: 503,
    Code.CLIENT_TOO_OLD: 426,
    Code.CLIENT_TOO_NEW: 400,
}


class LinesyncError(Exception):
    """An error with a protocol code; safe to show to the user."""

    def __init__(self, code: Code, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.detail = detail

    def body(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code.value, "message": self.message}
        if self.detail:
            err["detail"] = self.detail
        return {"error": err}

    def __repr__(self) -> str:
        return f"LinesyncError({self.code.value!r}, {self.message!r})"
