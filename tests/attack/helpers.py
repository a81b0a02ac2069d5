"""Shared moves of the attack suite: raw requests, raw sockets, and the checks
that a refused request stored nothing."""

from __future__ import annotations

import asyncio
import re
import socket
import time
from typing import Any

from linesync.core.ids import chunk_id, pack_ids
from linesync.protocol.framing import MEDIA_TYPE
from tests.support.api import Api, endpoint_requests, frames_body, ns_path, raw_frames
from tests.support.server import ServerProc

run = asyncio.run


async def head(api: Api, ns: int, token: str | None = None) -> int:
    resp = await api.get(ns_path(ns, "head"), token=token or True)
    return int(resp.expect(200).json()["jid"])


async def still_missing(api: Api, ns: int, ids: list[bytes], token: str | None = None) -> None:
    """Every id in ``ids`` is still reported missing for ``ns`` (nothing stored)."""
    for i in range(0, len(ids), 65536):
        part = ids[i : i + 65536]
        resp = await api.post(
            ns_path(ns, "chunks/missing"), json_body={"ids": pack_ids(part)}, token=token or True
        )
        assert resp.expect(200).json()["missing"] == pack_ids(part)


def chunks_post(api: Api, ns: int, body: Any, **kw: Any) -> Any:
    return api.post(ns_path(ns, "chunks"), data=body, content_type=MEDIA_TYPE, **kw)


def auth_routes(ns: int) -> list[tuple[str, str, dict[str, Any]]]:
    """One well-formed request per route that needs a token."""
    cid = chunk_id(b"x")
    return [("GET", "/v1/me", {}), *endpoint_requests(ns, cid, frames_body(raw_frames([b"x"])))]


def route_path(template: str, ns: int | str, jid: int | str = 1) -> str:
    """A route's path template (``/v1/ns/{ns:id}/entries/{jid:id}``, whatever the
    convertor) with values put in."""
    path = re.sub(r"\{ns(:\w+)?\}", str(ns), template)
    return re.sub(r"\{(jid|seq)(:\w+)?\}", str(jid), path)


def host_port(srv: ServerProc) -> tuple[str, int]:
    host, port = srv.url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


# -- raw sockets -----------------------------------------------------------------------


def closed_within(sock: socket.socket, timeout: float) -> tuple[bool, bytes]:
    """Read until the peer closes ``sock`` or ``timeout`` seconds pass; (closed,
    what was received). A reset counts as closed."""
    deadline = time.monotonic() + timeout
    got = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False, got
        sock.settimeout(left)
        try:
            piece = sock.recv(65536)
        except TimeoutError:
            return False, got
        except (ConnectionResetError, BrokenPipeError):
            return True, got
        if not piece:
            return True, got
        got += piece


def connect(srv: ServerProc) -> socket.socket:
    return socket.create_connection(host_port(srv), timeout=10)


def http_get(path: str, token: str | None = None, close: bool = False) -> bytes:
    """The bytes of a minimal HTTP/1.1 GET."""
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_response(sock: socket.socket, timeout: float) -> tuple[int, bytes]:
    """One HTTP/1.1 response with a Content-Length body: (status, body)."""
    sock.settimeout(timeout)
    buf = b""
    while b"\r\n\r\n" not in buf:
        piece = sock.recv(65536)
        assert piece, f"connection closed before a response: {buf!r}"
        buf += piece
    head_, _, rest = buf.partition(b"\r\n\r\n")
    lines = head_.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    while len(rest) < length:
        piece = sock.recv(65536)
        assert piece, "connection closed inside a response body"
        rest += piece
    assert len(rest) == length, "more bytes than the response announced"
    return status, rest
