"""The WebDAV ASGI application, mounted at /dav: authentication, the
namespace and path of each request, dispatch by method, and errors as
HTTP statuses (with RFC 4918 error bodies for preconditions)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from linesync.core import paths
from linesync.protocol.errors import LinesyncError
from linesync.server.budget import Reservation
from linesync.server.context import Context
from linesync.server.dav import auth, copymove, locking, reads, rules, writes, xmlbody
from linesync.server.dav.base import Call, DavState
from linesync.server.dav.rules import DavError
from linesync.server.stores.urls import transient

log = logging.getLogger("linesync.server.dav")

Handler = Callable[[Call], Awaitable[Response]]

GZIP_MAX = 8 * 2**20  # answers up to this size may be gzipped (by the app's middleware)

# Sent with every answer. /dav shares its origin with the web interface: a file
# served inline (an uploaded HTML or SVG file, or one a shared namespace's other
# member wrote) must never run as the site (read the pages' CSRF tokens, make
# tokens). A sandboxed document has an opaque origin and runs no script; the
# policy is the one raw file hosts use (images and text still show in a
# browser). WebDAV clients ignore these headers.
SAFE_HEADERS = {
    "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; sandbox",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
}

READS: dict[str, Handler] = {
    "PROPFIND": reads.propfind,
    "GET": lambda call: reads.get(call, head=False),
    "HEAD": lambda call: reads.get(call, head=True),
}
WRITES: dict[str, Handler] = {
    "PUT": writes.put,
    "MKCOL": writes.mkcol,
    "DELETE": writes.delete,
    "PROPPATCH": writes.proppatch,
    "COPY": copymove.copy,
    "MOVE": copymove.move,
    "LOCK": locking.lock,
    "UNLOCK": locking.unlock,
}


def _error(exc: DavError) -> Response:
    headers = dict(exc.headers)
    if exc.condition is not None:
        body = xmlbody.error_body(exc.condition, exc.href)
        return Response(body, exc.status, headers=headers, media_type=reads.XML)
    if exc.status == 304:
        return Response(status_code=304, headers=headers)
    return Response(exc.message + "\n", exc.status, headers=headers, media_type="text/plain")


def _from_linesync(exc: LinesyncError) -> DavError:
    headers = {}
    if "retry_after" in exc.detail:
        headers["retry-after"] = str(exc.detail["retry_after"])
    return DavError(exc.code.status, exc.message, headers=headers)


class DavApp:
    """ASGI app: every path under /dav."""

    def __init__(self, ctx: Context) -> None:
        self.state = DavState(ctx)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        res = request.state.reservation = Reservation(self.state.ctx.budget)
        try:
            response = await self.handle(request)
        except DavError as exc:
            response = _error(exc)
        except LinesyncError as exc:
            response = _error(_from_linesync(exc))
        except paths.PathError as exc:
            response = _error(DavError(400, f"bad name: {exc}"))
        except ClientDisconnect:
            response = Response(status_code=499)
        except Exception as exc:
            if not transient(exc):
                log.exception("WebDAV %s %s failed", request.method, request.url.path)
                response = _error(DavError(500, "internal server error"))
            else:
                response = _error(DavError(503, "the server's database is unavailable",
                                           headers={"retry-after": "1"}))  # fmt: skip
        for k, v in SAFE_HEADERS.items():
            response.headers.setdefault(k, v)
        if response.status_code == 206 or int(response.headers.get("content-length", 0)) > GZIP_MAX:
            # As they are: a range of the file's bytes (not of a gzip of them),
            # and big files (gzip would cost the server CPU in proportion).
            response.headers.setdefault("content-encoding", "identity")
        ctx = self.state.ctx
        ctx.metrics.inc("linesync_requests_total", route="dav", status=str(response.status_code))
        try:
            await response(scope, receive, send)
        finally:
            await res.close()

    async def handle(self, request: Request) -> Response:
        method = request.method.upper()
        if method == "OPTIONS":
            return reads.options()
        if method not in READS and method not in WRITES:
            raise DavError(405, f"{method} is not a WebDAV method here",
                           headers={"allow": reads.ALLOW})  # fmt: skip
        raw = request.scope.get("raw_path") or request.scope["path"].encode()
        target = rules.parse_target(raw.decode("latin-1"))
        ctx = self.state.ctx
        token = await auth.authenticate(ctx, request)
        if target.namespace is None:
            if method != "PROPFIND":
                raise DavError(405, "/dav/ lists your namespaces (PROPFIND) and is read-only")
            depth = rules.depth(request.headers.get("depth"), "1")
            return reads.namespaces_answer(await ctx.meta.namespaces_of(token.user_id), depth)
        ns = await auth.namespace(ctx, token, target.namespace, write=method in WRITES)
        if_lists = rules.parse_if(request.headers.get("if"))
        call = Call(self.state, request, token, ns, target.path, if_lists)
        handler = READS.get(method) or WRITES[method]
        return await handler(call)
