"""The OpenAPI 3.1 document of API v1, generated from the wire schemas."""

from __future__ import annotations

import functools
from typing import Any

import msgspec

from linesync import __version__
from linesync.protocol import schemas
from linesync.protocol.errors import Code
from linesync.protocol.framing import MEDIA_TYPE

# Every struct a request or an answer is made of (the rest follow by reference).
_TYPES: list[Any] = [
    schemas.CommitRequest,
    schemas.CommitResponse,
    schemas.CommitResult,
    schemas.Entry,
    schemas.ErrorResponse,
    schemas.HeadResponse,
    schemas.HistoryResponse,
    schemas.IdsRequest,
    schemas.ListResponse,
    schemas.MeResponse,
    schemas.MissingResponse,
    schemas.RestoreRequest,
    schemas.UploadResponse,
]


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(name: str) -> dict[str, Any]:
    return {"application/json": {"schema": _ref(name)}}


def _errors(*codes: Code) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for code in (Code.BAD_REQUEST, Code.UNAUTHENTICATED, Code.RATE_LIMITED, Code.UNAVAILABLE,
                 *codes):  # fmt: skip
        entry = out.setdefault(
            str(code.status), {"description": "", "content": _json("ErrorResponse")}
        )
        names = [n for n in entry["description"].split(", ") if n]
        if code.value not in names:
            entry["description"] = ", ".join([*names, code.value])
    return out


def _op(
    summary: str,
    response: str | None,
    *,
    body: str | None = None,
    body_media: str | None = None,
    params: list[dict[str, Any]] | None = None,
    errors: tuple[Code, ...] = (),
    ns: bool = True,
    binary_response: bool = False,
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "security": [{"bearer": []}]}
    parameters = list(params or [])
    if ns:
        parameters.insert(
            0,
            {"name": "ns", "in": "path", "required": True,
             "schema": {"type": "integer", "minimum": 0}},
        )  # fmt: skip
        errors = (Code.NOT_FOUND, *errors)
    if parameters:
        op["parameters"] = parameters
    if body is not None or body_media is not None:
        errors = (
            *errors,
            Code.REQUEST_TIMEOUT,
            Code.PAYLOAD_TOO_LARGE,
            Code.UNSUPPORTED_MEDIA_TYPE,
        )
    if body is not None:
        op["requestBody"] = {"required": True, "content": _json(body)}
    if body_media is not None:
        op["requestBody"] = {
            "required": True,
            "content": {body_media: {"schema": {"type": "string", "format": "binary"}}},
        }
    ok: dict[str, Any] = {"description": "OK"}
    if response is not None:
        ok["content"] = _json(response)
    if binary_response:
        ok["content"] = {MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}}
    op["responses"] = {"200": ok, **_errors(*errors)}
    return op


def _q(
    name: str, kind: str = "integer", required: bool = False, minimum: int = 0
) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": kind}
    if kind == "integer":
        schema["minimum"] = minimum
    return {"name": name, "in": "query", "required": required, "schema": schema}


@functools.cache
def schema() -> dict[str, Any]:
    _, components = msgspec.json.schema_components(
        _TYPES, ref_template="#/components/schemas/{name}"
    )
    w = (Code.FORBIDDEN,)
    paths: dict[str, Any] = {
        "/healthz": {"get": {"summary": "Liveness", "responses": {"200": {"description": "OK"}}}},
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "responses": {
                    "200": {
                        "description": "OK",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/v1/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": {
                    "200": {
                        "description": "OK",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
        "/v1/me": {"get": _op("Who am I, and my namespaces", "MeResponse", ns=False)},
        "/v1/ns/{ns}/head": {"get": _op("The journal's head", "HeadResponse")},
        "/v1/ns/{ns}/list": {
            "get": _op(
                "Changes since a cursor (long-polls with wait)",
                "ListResponse",
                params=[
                    _q("cursor", "string"),
                    _q("limit", minimum=1),
                    _q("wait"),
                    _q("inline"),
                ],
                errors=(Code.BAD_CURSOR, Code.CURSOR_INVALID),
            )
        },
        "/v1/ns/{ns}/commit": {
            "post": _op(
                "Commit a batch of paths",
                "CommitResponse",
                body="CommitRequest",
                errors=(
                    *w,
                    Code.BAD_PATH,
                    Code.BAD_DELTA,
                    Code.SIZE_MISMATCH,
                    Code.CHUNK_MISMATCH,
                    Code.CHUNK_UNAVAILABLE,
                    Code.BATCH_TOO_LARGE,
                    Code.FILE_TOO_LARGE,
                    Code.CURSOR_INVALID,
                ),
            )  # fmt: skip
        },
        "/v1/ns/{ns}/restore": {
            "post": _op(
                "Restore an old version as a new entry",
                "CommitResult",
                body="RestoreRequest",
                errors=(*w, Code.BAD_PATH, Code.CURSOR_INVALID),
            )  # fmt: skip
        },
        "/v1/ns/{ns}/chunks/missing": {
            "post": _op(
                "Which of these chunks does the namespace lack",
                "MissingResponse",
                body="IdsRequest",
                errors=(*w, Code.BATCH_TOO_LARGE),
            )  # fmt: skip
        },
        "/v1/ns/{ns}/chunks": {
            "post": _op(
                "Upload chunks (binary frames)",
                "UploadResponse",
                body_media=MEDIA_TYPE,
                errors=(
                    *w,
                    Code.BAD_FRAMING,
                    Code.CHUNK_MISMATCH,
                    Code.CHUNK_UNAVAILABLE,
                    Code.BATCH_TOO_LARGE,
                ),
            )  # fmt: skip
        },
        "/v1/ns/{ns}/chunks/get": {
            "post": _op(
                "Download chunks (binary frames)",
                None,
                body="IdsRequest",
                binary_response=True,
                errors=(Code.CHUNK_UNAVAILABLE, Code.BATCH_TOO_LARGE),
            )  # fmt: skip
        },
        "/v1/ns/{ns}/entries/{jid}": {
            "get": _op(
                "One journal entry with its full blocklist",
                "Entry",
                params=[
                    {
                        "name": "jid",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "integer", "minimum": 0},
                    }
                ],
            )  # fmt: skip
        },
        "/v1/ns/{ns}/history": {
            "get": _op(
                "Versions of a path, newest first",
                "HistoryResponse",
                params=[
                    _q("path", "string", True),
                    _q("before", minimum=1),
                    _q("limit", minimum=1),
                ],
                errors=(Code.BAD_PATH,),
            )
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "linesync", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
