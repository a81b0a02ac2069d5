"""The client's view of the server: API v1 over HTTP (aiohttp).

Every method returns wire structs or raises :class:`LinesyncError` with the
server's code; a transport failure raises :class:`RemoteUnavailable` (a
subclass, code ``unavailable``) so callers can retry it and never mistake it
for an answer.
"""

from __future__ import annotations

import asyncio
import io
import secrets
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, TypeVar

import aiohttp
import msgspec

from linesync.client.metrics import METRICS
from linesync.client.retry import RetriesExhausted, RetryPolicy, parse_retry_after, retryable
from linesync.core.ids import ChunkId, pack_ids
from linesync.protocol import version
from linesync.protocol.errors import Code, LinesyncError
from linesync.protocol.framing import MEDIA_TYPE, Frame, FrameReader, frame_pieces
from linesync.protocol.schemas import (
    CommitOp,
    CommitResponse,
    CommitResult,
    Entry,
    ErrorResponse,
    HeadResponse,
    HistoryResponse,
    IdsRequest,
    InlineChunk,
    ListResponse,
    MeResponse,
    MissingResponse,
    PendingRequest,
    PendingResponse,
    RestoreRequest,
    UploadResponse,
)

T = TypeVar("T")
_enc = msgspec.json.Encoder()


# Every header byte is paid on every request: aiohttp adds none of these.
SKIP_HEADERS = ("Accept-Encoding", "Accept", "User-Agent", "Content-Type")
# The client settings `timeout` and `connections` (client/settings.py); the CLI sets them.
DEFAULT_TIMEOUT = 120.0
DEFAULT_CONNECTIONS = 16


class RemoteUnavailable(LinesyncError):
    def __init__(self, message: str) -> None:
        super().__init__(Code.UNAVAILABLE, message)


def _elsewhere(exc: LinesyncError) -> bool:
    """Might another process of the server answer? (Not reached, or overloaded
    or restarting; every request is safe to send again: PROTOCOL §4.8.6.)"""
    return exc.code is Code.UNAVAILABLE  # (502/503/504 without our body are this too)


class Remote:
    """One server, one token. Use as an async context manager."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        """``url``: the server, or several processes of one server separated by
        commas: a request that cannot reach one (or finds it overloaded or
        restarting: 502/503/504) goes to the next at once, each tried once
        before ``retry`` waits. ``retry``: how long a request that fails for a
        passing reason (no connection, 429, 502/503/504) is tried again; by
        default it is not."""
        self.urls = [u.strip().rstrip("/") for u in url.split(",") if u.strip()]
        self.url = self.urls[0]
        self.retry = retry or RetryPolicy()
        self._headers = {
            "Authorization": f"Bearer {token}",
            version.HEADER: version.format_versions(version.CLIENT_SPEAKS),
        }
        total = DEFAULT_TIMEOUT if timeout is None else timeout
        self._timeout = aiohttp.ClientTimeout(total=total, sock_connect=10)
        self._session: aiohttp.ClientSession | None = None
        # While a long-poll of ours waits, our commits name this session, so that
        # the server does not wake it for news the commit's answer brings.
        self.session_id = secrets.token_urlsafe(6)
        self._polls = 0

    async def __aenter__(self) -> Remote:
        self._session = aiohttp.ClientSession(
            headers=self._headers,
            timeout=self._timeout,
            skip_auto_headers=SKIP_HEADERS,
            connector=aiohttp.TCPConnector(limit=DEFAULT_CONNECTIONS),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "use Remote as an async context manager"
        return self._session

    async def _call(
        self,
        method: str,
        path: str,
        kind: type[T] | None,
        *,
        json: Any = None,
        data: bytes | list[bytes] | None = None,
        params: dict[str, str] | None = None,
        content_type: str | None = None,
        timeout: float | None = None,
        gzip: bool = False,
    ) -> Any:
        body = _enc.encode(json) if json is not None else data
        # A body without a Content-Type is read as JSON: 32 bytes saved a commit.
        headers = {"Content-Type": content_type} if content_type is not None else {}
        if gzip:  # only where answers can be big: small ones do not pay the header
            headers["Accept-Encoding"] = "gzip"
        started = self.retry.clock()
        others = 0  # other processes tried since the last wait
        attempt = 0
        while True:
            try:
                status, raw = await self._exchange(method, path, params, headers, body, timeout)
                if status >= 400:
                    raise _error(status, raw)
                break
            except LinesyncError as exc:
                if others < len(self.urls) - 1 and _elsewhere(exc):
                    others += 1
                    self.url = self.urls[(self.urls.index(self.url) + 1) % len(self.urls)]
                    continue
                others = 0
                wait = self.retry.next_wait(attempt, started, exc)
                attempt += 1
                if wait is None:
                    if self.retry.retry_for > 0 and retryable(exc):
                        raise RetriesExhausted(
                            self.url, exc, self.retry.clock() - started, attempt
                        ) from exc
                    raise
                if self.retry.on_retry is not None:
                    self.retry.on_retry(exc, wait)
                await (self.retry.sleep or asyncio.sleep)(wait)
        if kind is None:
            return raw
        return msgspec.json.decode(raw, type=kind)

    async def _exchange(
        self,
        method: str,
        path: str,
        params: dict[str, str] | None,
        headers: dict[str, str],
        body: bytes | list[bytes] | None,
        timeout: float | None,
    ) -> tuple[int, bytes]:
        """One HTTP exchange: the status and the (decompressed) answer body.
        The transport, and all of it: a test may answer from elsewhere. A body
        in pieces is sent piece by piece (never joined in memory)."""
        data: bytes | io.BytesIO | AsyncIterator[bytes] | None
        if isinstance(body, list):
            data = _each(body)
        elif body is not None and len(body) > 2**20:  # aiohttp wants big bodies as files
            data = io.BytesIO(body)
        else:
            data = body
        extra = aiohttp.ClientTimeout(total=timeout) if timeout else None
        sent = sum(map(len, body)) if isinstance(body, list) else len(body or b"")
        began = time.monotonic()
        try:
            async with self.session.request(
                method, self.url + path, data=data, params=params, headers=headers, timeout=extra
            ) as resp:
                raw = await resp.read()
                METRICS.request(path, str(resp.status), time.monotonic() - began, sent, len(raw))
                refusal = version.client_verdict(resp.headers.get(version.HEADER), self.url)
                if refusal is not None:  # one clear line, whatever the body says
                    raise LinesyncError(Code(refusal.code), refusal.message)
                asked = parse_retry_after(resp.headers.get("Retry-After"))
                if resp.status >= 400 and asked is not None:
                    raise _error(resp.status, raw, asked)
                return resp.status, raw
        except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
            METRICS.request(path, "unreachable", time.monotonic() - began, 0, 0)
            raise RemoteUnavailable(
                f"cannot reach {self.url}: {exc or type(exc).__name__}"
            ) from exc

    # -- calls -------------------------------------------------------------

    async def me(self) -> MeResponse:
        return await self._call("GET", "/v1/me", MeResponse)  # type: ignore[no-any-return]

    async def head(self, ns: int) -> HeadResponse:
        return await self._call("GET", f"/v1/ns/{ns}/head", HeadResponse)  # type: ignore[no-any-return]

    async def list_changes(
        self, ns: int, cursor: str | None = None, *, wait: int = 0, inline: int = 0,
        limit: int | None = None, pending: int | None = None, fold: bool = False,
    ) -> ListResponse:  # fmt: skip
        """``pending``: list the uploads in progress too, and wake for one
        announced after this seq (streaming sync). ``fold``: a folder move may
        come as its own entry only (PROTOCOL §4.16)."""
        params = {}
        if cursor:
            params["cursor"] = cursor
        if wait:
            params["wait"] = str(wait)
            params["session"] = self.session_id
        if inline:
            params["inline"] = str(inline)
        if limit:
            params["limit"] = str(limit)
        if pending is not None:
            params["pending"] = str(pending)
        if fold:
            params["fold"] = "1"
        self._polls += bool(wait)
        try:
            return await self._call(  # type: ignore[no-any-return]
                "GET", f"/v1/ns/{ns}/list", ListResponse, params=params, timeout=wait + 60,
                gzip=True,
            )  # fmt: skip
        finally:
            self._polls -= bool(wait)

    async def commit(
        self,
        ns: int,
        ops: Sequence[CommitOp],
        chunks: Sequence[InlineChunk] = (),
        *,
        journal: str | None = None,
    ) -> list[CommitResult]:
        """The per-op results; see :meth:`commit_full` for the whole answer."""
        return (await self.commit_full(ns, ops, chunks, journal=journal)).results

    async def commit_full(
        self,
        ns: int,
        ops: Sequence[CommitOp],
        chunks: Sequence[InlineChunk] = (),
        *,
        journal: str | None = None,
        since: str | None = None,
    ) -> CommitResponse:
        """``journal``: the journal id of the cursor the ops' JIDs come from;
        ``since``: a cursor, to get the changes after it in the same answer."""
        body: dict[str, Any] = {"ops": list(ops)}
        if chunks:
            body["chunks"] = list(chunks)
        if journal is not None:
            body["journal"] = journal
        if since is not None:
            body["since"] = since
        params = {"session": self.session_id} if self._polls else None
        return await self._call(  # type: ignore[no-any-return]
            "POST", f"/v1/ns/{ns}/commit", CommitResponse, json=body, params=params
        )

    async def restore(
        self,
        ns: int,
        path: str,
        jid: int,
        base_jid: int,
        *,
        journal: str | None = None,
        copy: bool = False,
    ) -> CommitResult:
        """``copy``: ``jid`` may be another path's version (refused otherwise)."""
        req = RestoreRequest(path=path, jid=jid, base_jid=base_jid, journal=journal, copy=copy)
        return await self._call("POST", f"/v1/ns/{ns}/restore", CommitResult, json=req)  # type: ignore[no-any-return]

    async def missing(self, ns: int, ids: Sequence[ChunkId]) -> MissingResponse:
        req = IdsRequest(ids=pack_ids(ids))
        return await self._call("POST", f"/v1/ns/{ns}/chunks/missing", MissingResponse, json=req)  # type: ignore[no-any-return]

    async def upload(self, ns: int, frames: Sequence[Frame]) -> UploadResponse:
        return await self._call(  # type: ignore[no-any-return]
            "POST", f"/v1/ns/{ns}/chunks", UploadResponse,
            data=frame_pieces(frames), content_type=MEDIA_TYPE,
        )  # fmt: skip

    async def announce(
        self, ns: int, path: str, size: int, ids: Sequence[ChunkId]
    ) -> PendingResponse:
        """Tell the namespace's other devices an upload of this file begins."""
        req = PendingRequest(path=path, size=size, ids=pack_ids(ids))
        return await self._call("POST", f"/v1/ns/{ns}/pending", PendingResponse, json=req)  # type: ignore[no-any-return]

    async def pending(self, ns: int, seq: int) -> PendingResponse:
        """An upload in progress, with its blocklist."""
        return await self._call("GET", f"/v1/ns/{ns}/pending/{seq}", PendingResponse, gzip=True)  # type: ignore[no-any-return]

    async def fetch(
        self,
        ns: int,
        ids: Sequence[ChunkId],
        bases: Sequence[ChunkId | None] | None = None,
        *,
        available: bool = False,
    ) -> list[Frame]:
        """``available``: the chunks the server holds (within its download
        limit), the others left out rather than an error."""
        req = IdsRequest(ids=pack_ids(ids), available=available)
        if bases is not None:
            req.bases = pack_ids(b or bytes(32) for b in bases)
        raw = await self._call("POST", f"/v1/ns/{ns}/chunks/get", None, json=req)
        reader = FrameReader(max_payload=64 * 2**20)
        frames = reader.feed(raw)
        reader.close()
        return frames

    async def entry(self, ns: int, jid: int) -> Entry:
        return await self._call("GET", f"/v1/ns/{ns}/entries/{jid}", Entry)  # type: ignore[no-any-return]

    async def history(
        self, ns: int, path: str, *, before: int | None = None, limit: int = 100
    ) -> HistoryResponse:
        params = {"path": path, "limit": str(limit)}
        if before is not None:
            params["before"] = str(before)
        return await self._call(  # type: ignore[no-any-return]
            "GET", f"/v1/ns/{ns}/history", HistoryResponse, params=params
        )


def _error(status: int, raw: bytes, retry_after: float | None = None) -> LinesyncError:
    """The error an answer carries; ``retry_after``: its Retry-After header."""
    extra = {} if retry_after is None else {"retry_after": retry_after}
    try:
        body = msgspec.json.decode(raw, type=ErrorResponse).error
        code = Code(body.code)
        return LinesyncError(code, body.message, **{**(body.detail or {}), **extra})
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError):
        if status == 429:
            return LinesyncError(Code.RATE_LIMITED, "too many requests (HTTP 429)", **extra)
        if status == 408:
            return LinesyncError(Code.REQUEST_TIMEOUT, "request timeout (HTTP 408)", **extra)
        if status >= 500:
            err = RemoteUnavailable(f"server error {status}")
            err.detail.update(extra)
            return err
        return LinesyncError(Code.BAD_REQUEST, f"unexpected HTTP {status}: {raw[:200]!r}")


async def _each(pieces: list[bytes]) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece
