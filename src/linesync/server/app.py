"""The ASGI application: routing, authentication, limits and error rendering.

Handlers stay thin: they parse and check the request, call the metadata store
or the chunk service, and render the answer. Every failure leaves as a JSON
error body with a stable code (see ``linesync.protocol.errors``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Mount, Route

from linesync import __version__
from linesync.core import paths
from linesync.protocol.errors import Code, LinesyncError
from linesync.protocol.framing import MEDIA_TYPE
from linesync.server import gc, longpoll, routes, web
from linesync.server.budget import Reservation
from linesync.server.config import ServerConfig
from linesync.server.context import Context
from linesync.server.dav import DavApp
from linesync.server.negotiation import Negotiation
from linesync.server.responses import error_response
from linesync.server.stores.base import MetadataStore
from linesync.server.stores.packs import ChunkStore
from linesync.server.stores.staged import StagedChunkStore
from linesync.server.stores.urls import transient

log = logging.getLogger("linesync.server")

Handler = Callable[[Context, Request], Awaitable[Response]]


def _route(ctx: Context, name: str, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        started = time.perf_counter()
        res = request.state.reservation = Reservation(ctx.budget)
        try:
            response = await handler(ctx, request)
        except LinesyncError as exc:
            headers = None
            if exc.code is Code.UNAUTHENTICATED:
                headers = {"www-authenticate": "Bearer"}
            elif exc.code is Code.RATE_LIMITED:
                headers = {"retry-after": str(exc.detail.get("retry_after", 1))}
            response = error_response(exc, headers)
        except paths.PathError as exc:
            response = error_response(LinesyncError(Code.BAD_PATH, str(exc)))
        except ClientDisconnect:
            # The client hung up mid-body: nobody is left to answer, and it is no error.
            log.debug("%s %s: client disconnected", request.method, request.url.path)
            response = Response(status_code=499)
        except BaseException as exc:
            if not transient(exc):
                await res.close()
                raise
            # The database went away mid-request (a restart, a dropped connection):
            # its transaction did all or nothing, and every request may be sent again.
            log.warning("%s %s: store unavailable: %r", request.method, request.url.path, exc)
            response = error_response(
                LinesyncError(Code.UNAVAILABLE, "the server's database is unavailable; try again"),
                {"retry-after": "1"},
            )
        if response is longpoll.PARKED:
            await res.close()
            return response  # counted once, when it answers
        if isinstance(response, StreamingResponse):
            response.body_iterator = _release_after(response.body_iterator, res, ctx, name)
        else:
            await res.close()
            ctx.metrics.inc("linesync_response_bytes_total", len(response.body), route=name)
        length = request.headers.get("content-length", "")
        if length.isdigit():
            ctx.metrics.inc("linesync_request_bytes_total", int(length), route=name)
        ctx.metrics.inc("linesync_requests_total", route=name, status=str(response.status_code))
        ctx.metrics.observe(name, time.perf_counter() - started)
        return response

    return endpoint


async def _release_after(
    body: AsyncIterable[Any], res: Reservation, ctx: Context, route: str
) -> AsyncIterator[Any]:
    sent = 0
    try:
        async for piece in body:
            sent += len(piece)
            yield piece
    finally:
        await res.close()
        ctx.metrics.inc("linesync_response_bytes_total", sent, route=route)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: Code.NOT_FOUND, 405: Code.METHOD_NOT_ALLOWED}.get(
        exc.status_code, Code.BAD_REQUEST
    )
    return error_response(LinesyncError(code, str(exc.detail)), dict(exc.headers or {}))


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(LinesyncError(Code.INTERNAL, "internal server error"))


def create_app(
    config: ServerConfig, meta: MetadataStore, packs: ChunkStore, *, run_gc: bool = True
) -> Starlette:
    ctx = Context.build(config, meta, packs)
    table = [
        Route(path, _route(ctx, name, handler), methods=[method], name=name)
        for method, path, name, handler in routes.ROUTES
    ]
    dav = Mount("/dav", app=DavApp(ctx))  # WebDAV (docs/WEBDAV.md)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(gc.gc_loop(ctx))] if run_gc else []
        if run_gc and isinstance(packs, StagedChunkStore):
            tasks.append(asyncio.create_task(gc.drain_loop(ctx, packs)))
        log.info("linesync %s ready", __version__)
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    # Big JSON answers (a list page after a folder move) shrink several-fold;
    # chunk bodies are compressed already.
    middleware = [
        Middleware(longpoll.LongPolls, notifier=ctx.notifier),
        # Every answer names the protocol versions (§1.4); inside LongPolls, so a
        # parked long-poll holds nothing of it.
        Middleware(Negotiation),
        Middleware(
            GZipMiddleware,
            minimum_size=1024,
            compresslevel=6,
            exclude_content_types=(MEDIA_TYPE,),
        ),
    ]
    app = Starlette(
        routes=[*table, dav, *web.routes(ctx)],  # the web interface at /web/ (docs/WEB.md)
        middleware=middleware,
        exception_handlers={HTTPException: _http_error, Exception: _internal_error},
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    return app
