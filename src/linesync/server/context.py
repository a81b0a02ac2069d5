"""The context every request handler gets: the configuration, the stores and
the server's process-local state (rate limits, notifications, announcements,
the memory budget), built in one place (``Context.build``). Handlers
(``routes``) and the garbage collector (``gc``) depend on it, and it on
neither: ``app`` wires all three together."""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TypeVar

import msgspec
from starlette.requests import Request

from linesync.protocol.errors import Code, LinesyncError
from linesync.server.budget import ByteBudget, reservation
from linesync.server.chunks import ChunkService
from linesync.server.config import ServerConfig
from linesync.server.metrics import Metrics, Reading
from linesync.server.model import Namespace, TokenInfo
from linesync.server.notify import Notifier
from linesync.server.pending import Pending
from linesync.server.ratelimit import RateLimiter
from linesync.server.stores.base import MetadataStore
from linesync.server.stores.common import ReportsCache
from linesync.server.stores.packs import ChunkStore

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

    @classmethod
    def build(cls, config: ServerConfig, meta: MetadataStore, packs: ChunkStore) -> Context:
        metrics = Metrics()
        notifier = Notifier()
        meta.subscribe(notifier.publish)
        caches = {"blocklists": meta, "chunk records": packs}

        def cache(field: str) -> list[Reading]:
            return [
                ({"cache": name}, float(getattr(store.cache_stats, field)))
                for name, store in caches.items()
                if isinstance(store, ReportsCache)
            ]

        metrics.read("linesync_cache_hits_total", lambda: cache("hits"))
        metrics.read("linesync_cache_misses_total", lambda: cache("misses"))
        return cls(
            config=config,
            meta=meta,
            chunks=ChunkService(meta, packs, config, metrics),
            metrics=metrics,
            notifier=notifier,
            pending=Pending(config.max_pending_per_ns, config.max_pending_bytes),
            limiter=RateLimiter(config.rate_per_second, config.rate_burst),
            auth_failures=RateLimiter(config.auth_fail_rate, config.auth_fail_burst),
            budget=ByteBudget(config.max_inflight_bytes, config.busy_timeout),
        )

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
