"""JSON responses and error bodies."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.responses import Response

from linesync.protocol.errors import LinesyncError

_encoder = msgspec.json.Encoder()


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        _encoder.encode(obj), status_code=status, media_type="application/json", headers=headers
    )


def error_response(exc: LinesyncError, headers: dict[str, str] | None = None) -> Response:
    return json_response(exc.body(), exc.code.status, headers)
