"""The OpenAPI 3.1 document of API v1, generated from the wire schemas and the
server's limits.

``schema(config)`` is the document of a server running with ``config``: every
bound a request can run into (query parameters, list lengths, body sizes) is
stated with the value that server enforces, and every answer it can give is
listed per operation, with the error codes each status may carry. The server
serves the document of its own config; ``tests/hostile/test_schemathesis.py``
fuzzes a server against the document it serves.
"""

from __future__ import annotations

import copy
import functools
import math
from typing import Any

import msgspec

from linesync import __version__
from linesync.protocol import schemas, version
from linesync.protocol.errors import Code
from linesync.protocol.framing import MEDIA_TYPE
from linesync.protocol.inline import MAX_BASES, MAX_DICT
from linesync.server.config import ServerConfig

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
    schemas.PendingRequest,
    schemas.PendingResponse,
    schemas.RestoreRequest,
    schemas.UploadResponse,
]

JID_MAX = 2**62
HISTORY_PAGE = 1000  # fixed: routes.history
# A cursor as protocol/cursor.py parses it; "" (like no cursor) is the journal's start.
CURSOR_PATTERN = r"^([0-9a-f]{16}\.(0|[1-9][0-9]{0,17})\.([0-9a-f]{8}|[0-9a-f]{16}|0))?$"

# What each error code means, for the per-status descriptions.
_WHY: dict[Code, str] = {
    Code.BAD_REQUEST: "the request does not match the schema, or a value in it is malformed",
    Code.BAD_PATH: "a path breaks the path rules",
    Code.BAD_CURSOR: "a cursor is malformed",
    Code.BAD_DELTA: "a content delta cannot be applied",
    Code.BAD_FRAMING: "the chunk stream is malformed",
    Code.CHUNK_MISMATCH: "a chunk's bytes do not hash to its id",
    Code.CHUNK_UNAVAILABLE: "a chunk or base chunk is not held by the namespace",
    Code.SIZE_MISMATCH: "a file's size is not the sum of its chunks",
    Code.UNAUTHENTICATED: "no token, or an unknown, revoked or expired one",
    Code.FORBIDDEN: "the token or its user may not do this",
    Code.NOT_FOUND: "no such namespace for this user, or no such entry",
    Code.CURSOR_INVALID: "a cursor or journal id is not of this journal",
    Code.PAYLOAD_TOO_LARGE: "a body, chunk or decoded size is over its limit",
    Code.BATCH_TOO_LARGE: "too many ops, ids, frames or inline chunks",
    Code.FILE_TOO_LARGE: "a file is over the size or blocklist limit",
    Code.UNSUPPORTED_MEDIA_TYPE: "the body has another media type",
    Code.REQUEST_TIMEOUT: "the client stalled while sending the body",
    Code.RATE_LIMITED: "the token's request budget, the address's failed sign-ins, or the "
    "server's memory for bodies is spent (Retry-After)",
    Code.UNAVAILABLE: "chunk storage failed",
    Code.CLIENT_TOO_OLD: f"the `{version.HEADER}` header names only protocol versions older "
    "than this server's newest, none it speaks: upgrade the client",
    Code.CLIENT_TOO_NEW: f"the `{version.HEADER}` header names only protocol versions newer "
    "than this server's newest, none it speaks: upgrade the server",
}
# Every request may be refused for its protocol versions (PROTOCOL §1.4), whatever
# its operation: before anything else is looked at (a malformed header: bad_request).
NEGOTIATION = (Code.BAD_REQUEST, Code.CLIENT_TOO_OLD, Code.CLIENT_TOO_NEW)
# A Linesync-Protocol value as protocol/version.py parses it: whole numbers 0-9999
# separated by commas (with spaces between, none leading or trailing: HTTP drops
# those), at most MAX_HEADER characters.
VERSIONS_PATTERN = r"^[0-9]{1,4}( *, *[0-9]{1,4})*$"
_VERSIONS = {
    "type": "string",
    "maxLength": version.MAX_HEADER,
    "pattern": VERSIONS_PATTERN,
}
PROTOCOL_PARAM: dict[str, Any] = {
    "name": version.HEADER,
    "in": "header",
    "required": False,
    "schema": {**_VERSIONS, "examples": [version.format_versions(version.CLIENT_SPEAKS)]},
    "description": "The protocol versions the client speaks (PROTOCOL §1.4), like "
    f"`{version.format_versions(version.CLIENT_SPEAKS)}`. Absent: served (curl, browsers, "
    "clients from before negotiation speak version 1). Sharing a version with the server's "
    f"(`{version.format_versions(version.SERVER_SPEAKS)}`): served. Sharing none, checked "
    "before anything else: 426 `client_too_old` when the server's newest version is newer "
    "than the client's, else 400 `client_too_new`; not a list of whole numbers from 0 to "
    f"{version.MAX_VERSION} (or over {version.MAX_HEADER} characters): 400 `bad_request`.",
}


def _protocol_header(always: bool = True) -> dict[str, Any]:
    """The ``Linesync-Protocol`` response header: the versions the server speaks."""
    return {
        "required": always,
        "description": "The protocol versions this server speaks (PROTOCOL §1.4), on every "
        "answer"
        + ("" if always else " (but the empty one a stopping server gives a waiting long-poll)")
        + ": a client that shares none of them stops and tells its user what to upgrade.",
        "schema": {**_VERSIONS, "examples": [version.format_versions(version.SERVER_SPEAKS)]},
    }


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _packed_chars(ids: int) -> int:
    """Characters of a packed list of ``ids`` chunk ids (unpadded base64url)."""
    return math.ceil(32 * ids * 4 / 3)


def _errors(codes: list[Code]) -> dict[str, Any]:
    """One response per status; its body's ``error.code`` is one of ``codes``."""
    by_status: dict[int, list[Code]] = {}
    for code in codes:
        group = by_status.setdefault(code.status, [])
        if code not in group:
            group.append(code)
    out: dict[str, Any] = {}
    for status, group in sorted(by_status.items()):
        body = {
            "allOf": [
                _ref("ErrorResponse"),
                {
                    "properties": {
                        "error": {"properties": {"code": {"enum": [c.value for c in group]}}}
                    }
                },
            ]
        }
        answer: dict[str, Any] = {
            "description": "; ".join(f"`{c.value}`: {_WHY[c]}" for c in group),
            "content": _json(body),
        }
        if status == 401:
            answer["headers"] = {
                "WWW-Authenticate": {
                    "required": True,
                    "schema": {"type": "string", "const": "Bearer"},
                }
            }
        if status == 429:
            answer["headers"] = {
                "Retry-After": {
                    "required": True,
                    "description": "whole seconds to wait",
                    "schema": {"type": "integer", "minimum": 1},
                }
            }
        out[str(status)] = answer
    return out


def _param(
    name: str, where: str, schema: dict[str, Any], required: bool = False, about: str = ""
) -> dict[str, Any]:
    out = {"name": name, "in": where, "required": required or where == "path", "schema": schema}
    if about:
        out["description"] = about
    return out


def _int(lo: int, hi: int, default: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "integer", "minimum": lo, "maximum": hi}
    if default is not None:
        out["default"] = default
    return out


_NS = _param("ns", "path", _int(0, JID_MAX), about="A namespace id (GET /v1/me lists them).")
_SELF_NS = "$request.path.ns"


def _op(
    op_id: str,
    summary: str,
    ok: dict[str, Any],
    *,
    errors: tuple[Code, ...] = (),
    ns: bool = True,
    write: bool = False,
    params: tuple[dict[str, Any], ...] = (),
    body: dict[str, Any] | None = None,
    links: dict[str, Any] | None = None,
    about: str = "",
) -> dict[str, Any]:
    """An operation that needs a device token (read, or ``write``: an rw token
    and the rw role in the namespace)."""
    codes = [Code.BAD_REQUEST, Code.UNAUTHENTICATED, Code.FORBIDDEN, Code.RATE_LIMITED]
    op: dict[str, Any] = {"operationId": op_id, "summary": summary, "security": [{"bearer": []}]}
    need = "Needs an rw token and the rw role in the namespace" if write else "Needs a device token"
    if ns and not write:
        need += " of a member of the namespace"
    op["description"] = f"{about}\n\n{need}.".strip()
    parameters = [*([_NS] if ns else []), *params]
    if parameters:
        op["parameters"] = parameters
    if ns:
        codes.append(Code.NOT_FOUND)
    if body is not None:
        op["requestBody"] = body
        codes += [Code.REQUEST_TIMEOUT, Code.PAYLOAD_TOO_LARGE, Code.UNSUPPORTED_MEDIA_TYPE]
    codes += [*errors, *NEGOTIATION, Code.UNAVAILABLE]
    ok = {"description": "OK", **ok}
    if links:
        ok["links"] = links
    op["responses"] = {"200": ok, **_errors(codes)}
    return op


def _json_body(name: str, limit: int) -> dict[str, Any]:
    return {
        "required": True,
        "description": f"At most {limit} bytes (`max_json_body`). A request without a "
        "Content-Type is read as JSON.",
        "content": _json(_ref(name)),
    }


def _link(
    op_id: str, about: str, body: dict[str, Any] | None = None, **params: str
) -> dict[str, Any]:
    out: dict[str, Any] = {"operationId": op_id, "description": about}
    if params:
        out["parameters"] = params
    if body is not None:
        out["requestBody"] = body
    return out


def _components(config: ServerConfig) -> dict[str, Any]:
    _, components = msgspec.json.schema_components(
        _TYPES, ref_template="#/components/schemas/{name}"
    )
    ids_chars = _packed_chars(config.max_ids_per_request)
    # Bounds the structs leave to the server's config.
    commit = components["CommitRequest"]["properties"]
    commit["ops"]["maxItems"] = config.max_batch_paths
    commit["chunks"]["maxItems"] = config.max_inline_chunks
    commit["since"] = {"anyOf": [{"type": "string", "pattern": CURSOR_PATTERN}, {"type": "null"}]}
    commit["since"]["default"] = None
    # /chunks/missing reads only ``ids``: a well-formed ``bases`` is accepted and ignored.
    missing = copy.deepcopy(components["IdsRequest"])
    missing.update(title="MissingRequest", description="``ids`` packed; ``bases`` is ignored.")
    missing["properties"]["ids"]["maxLength"] = ids_chars
    components["MissingRequest"] = missing
    ids = components["IdsRequest"]["properties"]
    ids["ids"]["maxLength"] = ids_chars
    ids["bases"]["anyOf"][0]["maxLength"] = ids_chars
    base = components["InlineChunk"]["properties"]["base"]["anyOf"][0]
    base["maxLength"] = _packed_chars(MAX_BASES)
    components["ListResponse"]["properties"]["entries"]["maxItems"] = config.max_list_page
    components["HistoryResponse"]["properties"]["entries"]["maxItems"] = HISTORY_PAGE
    return components


def _limits(config: ServerConfig) -> dict[str, int | float]:
    """The limits a request can run into, by their ``--limit`` names."""
    names = [
        "max_json_body", "max_upload_body", "max_chunk", "max_request_decoded",
        "max_inline_chunks", "max_inline_decoded", "max_base_bytes", "max_inflight_bytes",
        "busy_timeout", "max_batch_paths", "max_ids_per_request", "max_list_page",
        "max_list_bytes", "max_wait_seconds", "max_inline_bytes", "max_download_body",
        "max_recompress_bytes", "body_idle_timeout", "header_timeout", "keepalive_timeout",
        "rate_per_second", "rate_burst", "auth_fail_rate", "auth_fail_burst",
    ]  # fmt: skip
    out: dict[str, int | float] = {n: getattr(config, n) for n in names}
    out["max_file_size"] = config.limits.max_file_size
    out["max_blocklist"] = config.limits.max_blocklist
    return out


SESSION_PARAM = _param(
    "session", "query", {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,32}$"},
    about="The client's session: a long-poll is not woken by this session's own commits.",
)  # fmt: skip


def _paths(config: ServerConfig) -> dict[str, Any]:
    cfg = config
    wait_max = int(cfg.max_wait_seconds)
    entry_ok = {"content": _json(_ref("Entry"))}
    ns = _SELF_NS
    list_params = (
        _param("cursor", "query", {"type": "string", "pattern": CURSOR_PATTERN},
               about="Where to continue; absent or empty: the journal's start."),
        _param("limit", "query", _int(1, cfg.max_list_page, cfg.max_list_page),
               about="Entries in the page at most (`max_list_page`)."),
        _param("wait", "query", _int(0, wait_max, 0),
               about="Seconds to wait for a change when there is none (`max_wait_seconds`)."),
        _param("inline", "query", _int(0, cfg.max_inline_bytes, 0),
               about="Bytes of chunks to carry in the answer (`max_inline_bytes`)."),
        _param("pending", "query", _int(0, JID_MAX),
               about="List the uploads in progress (`pending`); a long-poll also wakes "
               "for one announced by another device after this seq."),
        _param("fold", "query", {"type": "string"},
               about="`1`: a folder move may come as its own entry only, with `implied` "
               "and `digest` (PROTOCOL §4.16); anything else: every entry."),
        SESSION_PARAM,
    )  # fmt: skip
    history_params = (
        _param("path", "query", {"type": "string"}, required=True, about="The exact path, NFC."),
        _param("before", "query", _int(1, JID_MAX, JID_MAX), about="Only entries below this JID."),
        _param("limit", "query", _int(1, HISTORY_PAGE, 100), about="Entries at most."),
    )
    frames = {
        "type": "string",
        "format": "binary",
        "description": "MAGIC frame* END, where MAGIC is `LSCF1\\n`, END is 0x00 and a frame "
        "is 0x01, the chunk id (32 bytes), the codec (0 raw, 1 zstd, 2 zstd-dict), for "
        "zstd-dict a base count (1 to 255) and as many base ids, the payload length "
        "(u32, big-endian) and the payload (docs/PROTOCOL.md §5).",
    }
    upload_body = {
        "required": True,
        "description": f"At most {cfg.max_upload_body} bytes (`max_upload_body`) and "
        f"{cfg.max_ids_per_request} frames (`max_ids_per_request`); one frame's payload, and "
        f"what it decodes to, at most {cfg.max_chunk} bytes (`max_chunk`); all frames "
        f"decoded at most {cfg.max_request_decoded} bytes (`max_request_decoded`); the base "
        f"chunks of all zstd-dict frames at most {cfg.max_base_bytes} bytes "
        f"(`max_base_bytes`), of one frame at most {MAX_DICT} bytes.",
        "content": {MEDIA_TYPE: {"schema": frames}},
    }
    restore_from = {"path": "$response.body#/path", "jid": "$response.body#/jid"}
    return {
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "summary": "Liveness",
                "security": [],
                "responses": {
                    "200": {
                        "description": "OK",
                        "content": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "status": {"const": "ok"},
                                    "version": {"type": "string"},
                                    "protocol": {"type": "array", "items": {"type": "integer"}},
                                },
                                "required": ["status", "version"],
                            }
                        ),
                    },
                    **_errors([*NEGOTIATION]),
                },
            }
        },  # fmt: skip
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics",
                "description": "Needs a metrics token (`linesync token create USER --device "
                "NAME --metrics`); a device token gets 403. Counters are server-wide "
                "and name no user, device or namespace.",
                "security": [{"metrics": []}],
                "responses": {
                    "200": {
                        "description": "Prometheus text exposition format 0.0.4",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **_errors(
                        [Code.UNAUTHENTICATED, Code.FORBIDDEN, Code.RATE_LIMITED, *NEGOTIATION]
                    ),
                },
            }
        },
        "/v1/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "security": [],
                "responses": {
                    "200": {
                        "description": "OK",
                        "content": _json({"type": "object"}),
                    },
                    **_errors([*NEGOTIATION]),
                },
            }
        },
        "/v1/me": {
            "get": _op(
                "me",
                "Who am I, and my namespaces",
                {"content": _json(_ref("MeResponse"))},
                ns=False,
                links={
                    "head": _link(
                        "head",
                        "The head of my first namespace",
                        ns="$response.body#/namespaces/0/id",
                    ),
                    "list": _link(
                        "list",
                        "Changes in my first namespace after its head",
                        ns="$response.body#/namespaces/0/id",
                        cursor="$response.body#/namespaces/0/cursor",
                    ),
                    "commit": _link(
                        "commit",
                        "Commit to my first namespace",
                        ns="$response.body#/namespaces/0/id",
                    ),
                    "history": _link(
                        "history",
                        "History in my first namespace",
                        ns="$response.body#/namespaces/0/id",
                    ),
                    "upload": _link(
                        "upload",
                        "Upload chunks to my first namespace",
                        ns="$response.body#/namespaces/0/id",
                    ),
                },
            )  # fmt: skip
        },
        "/v1/ns/{ns}/head": {
            "get": _op(
                "head",
                "The journal's head",
                {"content": _json(_ref("HeadResponse"))},
                links={
                    "list": _link(
                        "list",
                        "Changes after the head (a long-poll with wait)",
                        ns=ns,
                        cursor="$response.body#/cursor",
                    )
                },
            )  # fmt: skip
        },
        "/v1/ns/{ns}/list": {
            "get": _op(
                "list",
                "Changes since a cursor (long-polls with wait)",
                {"content": _json(_ref("ListResponse"))},
                params=list_params,
                errors=(Code.BAD_CURSOR, Code.CURSOR_INVALID),
                links={
                    "next": _link("list", "The next page", ns=ns, cursor="$response.body#/cursor"),
                    "entry": _link(
                        "entry",
                        "The first entry in full",
                        ns=ns,
                        jid="$response.body#/entries/0/jid",
                    ),
                    "history": _link(
                        "history",
                        "The first entry's path's history",
                        ns=ns,
                        path="$response.body#/entries/0/path",
                    ),
                    "restore": _link(
                        "restore",
                        "Restore the first entry",
                        {
                            "path": "$response.body#/entries/0/path",
                            "jid": "$response.body#/entries/0/jid",
                        },
                        ns=ns,
                    ),
                },
            )  # fmt: skip
        },
        "/v1/ns/{ns}/commit": {
            "post": _op(
                "commit",
                "Commit a batch of paths",
                {"content": _json(_ref("CommitResponse"))},
                write=True,
                params=(SESSION_PARAM,),
                body=_json_body("CommitRequest", cfg.max_json_body),
                errors=(
                    Code.BAD_PATH,
                    Code.BAD_CURSOR,
                    Code.BAD_DELTA,
                    Code.SIZE_MISMATCH,
                    Code.CHUNK_MISMATCH,
                    Code.CHUNK_UNAVAILABLE,
                    Code.BATCH_TOO_LARGE,
                    Code.FILE_TOO_LARGE,
                    Code.CURSOR_INVALID,
                ),
                links={
                    "entry": _link(
                        "entry",
                        "The first path's new entry",
                        ns=ns,
                        jid="$response.body#/results/0/jid",
                    ),
                    "history": _link(
                        "history",
                        "The first path's history",
                        ns=ns,
                        path="$response.body#/results/0/path",
                    ),
                    "list": _link(
                        "list", "Changes after this commit", ns=ns, cursor="$response.body#/cursor"
                    ),
                    "restore": _link(
                        "restore",
                        "Restore the first path's new entry",
                        {
                            "path": "$response.body#/results/0/path",
                            "jid": "$response.body#/results/0/jid",
                        },
                        ns=ns,
                    ),
                },
                about=f"At most {cfg.max_batch_paths} ops (`max_batch_paths`) and "
                f"{cfg.max_inline_chunks} inline chunks (`max_inline_chunks`), which decode "
                f"to at most {cfg.max_inline_decoded} bytes together (`max_inline_decoded`).",
            )  # fmt: skip
        },
        "/v1/ns/{ns}/restore": {
            "post": _op(
                "restore",
                "Restore an old version as a new entry",
                {"content": _json(_ref("CommitResult"))},
                write=True,
                body=_json_body("RestoreRequest", cfg.max_json_body),
                errors=(Code.BAD_PATH, Code.CURSOR_INVALID),
                links={
                    "entry": _link("entry", "The new entry", ns=ns, jid="$response.body#/jid"),
                    "history": _link(
                        "history", "The path's history", ns=ns, path="$response.body#/path"
                    ),
                },
            )  # fmt: skip
        },
        "/v1/ns/{ns}/chunks/missing": {
            "post": _op(
                "missing",
                "Which of these chunks does the namespace lack",
                {"content": _json(_ref("MissingResponse"))},
                write=True,
                body=_json_body("MissingRequest", cfg.max_json_body),
                errors=(Code.BATCH_TOO_LARGE,),
                links={
                    "fetch": _link(
                        "fetch",
                        "Ask for the missing ones (422 unless none)",
                        {"ids": "$response.body#/missing"},
                        ns=ns,
                    ),
                },
                about=f"At most {cfg.max_ids_per_request} ids (`max_ids_per_request`).",
            )  # fmt: skip
        },
        "/v1/ns/{ns}/chunks": {
            "post": _op(
                "upload",
                "Upload chunks (binary frames)",
                {"content": _json(_ref("UploadResponse"))},
                write=True,
                body=upload_body,
                errors=(
                    Code.BAD_FRAMING,
                    Code.CHUNK_MISMATCH,
                    Code.CHUNK_UNAVAILABLE,
                    Code.BATCH_TOO_LARGE,
                ),
                about="Every frame is verified before any is stored; one bad frame "
                "refuses the whole body.",
            )  # fmt: skip
        },
        "/v1/ns/{ns}/chunks/get": {
            "post": _op(
                "fetch",
                "Download chunks (binary frames)",
                {"content": {MEDIA_TYPE: {"schema": frames}}},
                body=_json_body("IdsRequest", cfg.max_json_body),
                errors=(Code.CHUNK_UNAVAILABLE, Code.BATCH_TOO_LARGE),
                about=f"At most {cfg.max_ids_per_request} ids (`max_ids_per_request`) whose "
                f"chunks add up to at most {cfg.max_download_body} bytes as stored "
                "(`max_download_body`).",
            )  # fmt: skip
        },
        "/v1/ns/{ns}/pending": {
            "post": _op(
                "announce",
                "Announce an upload about to start (streaming sync)",
                {"content": _json(_ref("PendingResponse"))},
                write=True,
                body=_json_body("PendingRequest", cfg.max_json_body),
                errors=(Code.BAD_PATH, Code.BATCH_TOO_LARGE, Code.FILE_TOO_LARGE),
                links={
                    "pending": _link(
                        "pending",
                        "The announcement with its ids",
                        ns=ns,
                        seq="$response.body#/seq",
                    ),
                },
                about="The other devices' long-polls wake and may fetch the file's chunks "
                "(`available`) while it uploads. Lasts until a commit writes the path, or 10 "
                f"minutes; at most {cfg.max_pending_per_ns} a namespace "
                f"(`max_pending_per_ns`), the oldest dropped first; past "
                f"{cfg.max_pending_bytes} bytes of ids in all (`max_pending_bytes`): 429.",
            )  # fmt: skip
        },
        "/v1/ns/{ns}/pending/{seq}": {
            "get": _op(
                "pending",
                "An upload in progress, with its blocklist",
                {"content": _json(_ref("PendingResponse"))},
                params=(_param("seq", "path", _int(0, JID_MAX)),),
            )
        },
        "/v1/ns/{ns}/entries/{jid}": {
            "get": _op(
                "entry",
                "One journal entry with its full blocklist",
                entry_ok,
                params=(_param("jid", "path", _int(0, JID_MAX)),),
                links={
                    "fetch": _link(
                        "fetch", "The entry's chunks", {"ids": "$response.body#/content/ids"}, ns=ns
                    ),
                    "history": _link(
                        "history", "The entry's path's history", ns=ns, path="$response.body#/path"
                    ),
                    "restore": _link("restore", "Restore this entry", restore_from, ns=ns),
                },
            )  # fmt: skip
        },
        "/v1/ns/{ns}/history": {
            "get": _op(
                "history",
                "Versions of a path, newest first",
                {"content": _json(_ref("HistoryResponse"))},
                params=history_params,
                errors=(Code.BAD_PATH,),
                links={
                    "entry": _link(
                        "entry",
                        "The newest version in full",
                        ns=ns,
                        jid="$response.body#/entries/0/jid",
                    ),
                    "older": _link(
                        "history",
                        "Versions older than the newest",
                        ns=ns,
                        path="$request.query.path",
                        before="$response.body#/entries/0/jid",
                    ),
                    "restore": _link(
                        "restore",
                        "Restore the newest version",
                        {"path": "$request.query.path", "jid": "$response.body#/entries/0/jid"},
                        ns=ns,
                    ),
                },
            )  # fmt: skip
        },
    }


def _negotiated(paths: dict[str, Any]) -> dict[str, Any]:
    """Every operation takes the ``Linesync-Protocol`` request header, and every
    answer carries the server's (the negotiation middleware runs before any
    route: PROTOCOL §1.4); the refusals are among each operation's errors."""
    for item in paths.values():
        for op in item.values():
            op["parameters"] = [*op.get("parameters", []), PROTOCOL_PARAM]
            for status, answer in op["responses"].items():
                # A stopping server's empty answer to a waiting long-poll has none.
                always = not (op["operationId"] == "list" and status == "200")
                answer["headers"] = {
                    **answer.get("headers", {}),
                    version.HEADER: _protocol_header(always),
                }
    return paths


@functools.cache
def _document(config: ServerConfig) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "linesync",
            "version": __version__,
            "description": "API v1 of a linesync server, with the limits this server "
            "enforces (docs/PROTOCOL.md §2.8 explains each; `x-linesync-limits` lists them "
            "by the names `linesync serve --limit NAME=VALUE` takes). The API takes a "
            "device token (`linesync token create USER --device NAME [--read-only]`); "
            "/metrics takes a metrics token (`... --metrics`), and each refuses the "
            "other with 403.",
            "x-linesync-limits": _limits(config),
        },
        "paths": _negotiated(_paths(config)),
        "components": {
            "schemas": _components(config),
            "securitySchemes": {
                # A device token (linesync token create USER --device NAME [--read-only]);
                # each operation's description says what it needs.
                "bearer": {"type": "http", "scheme": "bearer"},
                "metrics": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A metrics token (`linesync token create USER --device "
                    "NAME --metrics`); it can read no namespace.",
                },
            },
        },
    }


def schema(config: ServerConfig | None = None) -> dict[str, Any]:
    """The document of a server running with ``config`` (default: the defaults).
    Cached: do not change what it returns."""
    return _document(config if config is not None else ServerConfig())
