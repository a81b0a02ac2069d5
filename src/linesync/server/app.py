"""The ASGI application: routing, authentication, limits and error rendering.

Handlers stay thin: they parse and check the request, call the metadata store
or the chunk service, and render the answer. Every failure leaves as a JSON
error body with a stable code (see ``linesync.protocol.errors``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import re
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from linesync import __version__
from linesync.core import paths
from linesync.protocol.errors import Code, LinesyncError
from linesync.protocol.framing import MEDIA_TYPE
from linesync.server import gc, routes
from linesync.server.budget import ByteBudget, Reservation, reservation
from linesync.server.chunks import ChunkService
from linesync.server.config import ServerConfig
from linesync.server.metrics import Metrics
from linesync.server.model import Namespace, TokenInfo
from linesync.server.notify import Notifier
from linesync.server.pending import Pending
from linesync.server.ratelimit import RateLimiter
from linesync.server.responses import error_response
from linesync.server.stores.base import MetadataStore
from linesync.server.stores.packs import ChunkStore

log = logging.getLogger("linesync.server")
T = TypeVar("T")

_JSON = "application/json"


# A token as ``token create`` makes it: a cheap check that spares the database
# the guesses that cannot be tokens.
TOKEN_FORM = re.compile(r"lst_[A-Za-z0-9_-]{32}")
_UNKNOWN_TTL = 60.0  # seconds a token found unknown is refused without a lookup
_UNKNOWN_MAX = 10_000


@dataclass
class Context:
    """Everything a handler needs, built once per server."""

    config: ServerConfig
    meta: MetadataStore
    chunks: ChunkService
    metrics: Metrics
    notifier: Notifier
    pending: Pending
    limiter: RateLimiter
    auth_failures: RateLimiter
    budget: ByteBudget
    unknown_tokens: dict[bytes, float] = field(default_factory=dict)

    async def auth(self, request: Request, charge: bool = True, scope: str = "api") -> TokenInfo:
        """The request's token. Failed attempts are counted per client address; an
        address past its allowance is refused before any lookup."""
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise LinesyncError(Code.UNAUTHENTICATED, "missing bearer token")
        address = request.client.host if request.client else ""
        wait = self.auth_failures.wait(address)
        if wait > 0:
            raise LinesyncError(
                Code.RATE_LIMITED,
                "too many failed sign-ins from this address; wait and try again",
                retry_after=math.ceil(wait),
            )
        info = await self._lookup(token)
        if info is None:
            self.auth_failures.allow(address)
            self.metrics.inc("linesync_auth_failures_total")
            raise LinesyncError(Code.UNAUTHENTICATED, "token is invalid, expired or revoked")
        if scope == "metrics" and info.role != "metrics":
            raise LinesyncError(
                Code.FORBIDDEN,
                "/metrics needs a metrics token (linesync token create USER --device NAME "
                "--metrics)",
            )
        if scope != "metrics" and info.role == "metrics":
            raise LinesyncError(Code.FORBIDDEN, "this token may read /metrics only")
        wait = self.limiter.allow(info.token_id) if charge else 0.0
        if wait > 0:
            raise LinesyncError(Code.RATE_LIMITED, "too many requests", retry_after=math.ceil(wait))
        return info

    async def _lookup(self, token: str) -> TokenInfo | None:
        if TOKEN_FORM.fullmatch(token) is None:
            return None
        digest = hashlib.sha256(token.encode()).digest()
        now = time.monotonic()
        if self.unknown_tokens.get(digest, 0.0) > now:
            return None
        info = await self.meta.authenticate(token)
        if info is None:
            if len(self.unknown_tokens) >= _UNKNOWN_MAX:
                self.unknown_tokens.clear()
            self.unknown_tokens[digest] = now + _UNKNOWN_TTL
        return info

    async def namespace(
        self, request: Request, write: bool, charge: bool = True
    ) -> tuple[TokenInfo, Namespace]:
        token = await self.auth(request, charge)
        ns_id = request.path_params["ns"]
        ns = await self.meta.namespace(ns_id, token.user_id) if ns_id < 2**62 else None
        if ns is None:
            raise LinesyncError(Code.NOT_FOUND, "namespace not found")
        if write and token.role != "rw":
            raise LinesyncError(Code.FORBIDDEN, "this token is read-only")
        if write and ns.role != "rw":
            raise LinesyncError(Code.FORBIDDEN, "you have read-only access to this namespace")
        return token, ns

    async def body(self, request: Request, limit: int) -> bytes:
        """The whole body, refused past ``limit`` bytes or when the client stalls.
        What it will hold is reserved from the server's budget first."""
        declared = _declared_length(request, limit)
        await reservation(request).take(declared if declared is not None else limit)
        out = bytearray()
        async for piece in self.stream(request, limit):
            out += piece
        return bytes(out)

    async def stream(self, request: Request, limit: int) -> AsyncIterator[bytes]:
        """The body piece by piece (the caller holds what it keeps)."""
        _declared_length(request, limit)
        seen = 0
        it = request.stream().__aiter__()
        while True:
            try:
                async with asyncio.timeout(self.config.body_idle_timeout):
                    piece = await it.__anext__()
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise LinesyncError(Code.REQUEST_TIMEOUT, "request body stalled") from None
            seen += len(piece)
            if seen > limit:
                raise LinesyncError(
                    Code.PAYLOAD_TOO_LARGE, f"body is larger than {limit} bytes", limit=limit
                )
            if piece:
                yield piece

    async def decode(self, request: Request, kind: type[T]) -> T:
        ctype = request.headers.get("content-type", _JSON).split(";")[0].strip().lower()
        if ctype != _JSON:
            raise LinesyncError(Code.UNSUPPORTED_MEDIA_TYPE, f"expected {_JSON}")
        raw = await self.body(request, self.config.max_json_body)
        try:
            return msgspec.json.decode(raw, type=kind)
        except msgspec.ValidationError as exc:
            raise LinesyncError(Code.BAD_REQUEST, f"invalid request: {exc}") from exc
        except msgspec.DecodeError as exc:
            raise LinesyncError(Code.BAD_REQUEST, f"body is not valid JSON: {exc}") from exc


def _declared_length(request: Request, limit: int) -> int | None:
    declared = request.headers.get("content-length")
    if declared is None:
        return None
    if not (declared.isascii() and declared.isdigit()) or len(declared) > 19:
        raise LinesyncError(Code.BAD_REQUEST, "bad Content-Length")
    if int(declared) > limit:
        raise LinesyncError(
            Code.PAYLOAD_TOO_LARGE, f"body is larger than {limit} bytes", limit=limit
        )
    return int(declared)


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
        except BaseException:
            await res.close()
            raise
        if isinstance(response, StreamingResponse):
            response.body_iterator = _release_after(response.body_iterator, res)
        else:
            await res.close()
        ctx.metrics.inc("linesync_requests_total", route=name, status=str(response.status_code))
        ctx.metrics.observe(name, time.perf_counter() - started)
        return response

    return endpoint


async def _release_after(body: AsyncIterable[Any], res: Reservation) -> AsyncIterator[Any]:
    try:
        async for piece in body:
            yield piece
    finally:
        await res.close()


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
    metrics = Metrics()
    ctx = Context(
        config=config,
        meta=meta,
        chunks=ChunkService(meta, packs, config, metrics),
        metrics=metrics,
        notifier=Notifier(),
        pending=Pending(config.max_pending_per_ns, config.max_pending_bytes),
        limiter=RateLimiter(config.rate_per_second, config.rate_burst),
        auth_failures=RateLimiter(config.auth_fail_rate, config.auth_fail_burst),
        budget=ByteBudget(config.max_inflight_bytes, config.busy_timeout),
    )
    table = [
        Route(path, _route(ctx, name, handler), methods=[method], name=name)
        for method, path, name, handler in routes.ROUTES
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(gc.gc_loop(ctx)) if run_gc else None
        log.info("linesync %s ready", __version__)
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    # Big JSON answers (a list page after a folder move) shrink several-fold;
    # chunk bodies are compressed already.
    middleware = [
        Middleware(
            GZipMiddleware,
            minimum_size=1024,
            compresslevel=6,
            exclude_content_types=(MEDIA_TYPE,),
        )
    ]
    app = Starlette(
        routes=table,
        middleware=middleware,
        exception_handlers={HTTPException: _http_error, Exception: _internal_error},
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    return app
