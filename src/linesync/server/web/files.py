"""File contents for the web interface: reading versions, writing uploads as
commits, and folders as streamed zip files.

Writes go through the journal exactly as a client's do: the bytes are cut
by the client's own chunker (``linesync.core.chunking``), every chunk is
verified and stored through the chunk service's intake, and one commit
makes the new version current (or reports a conflict)."""

from __future__ import annotations

import asyncio
import time
import zipfile
from collections.abc import AsyncIterator, Sequence
from typing import IO

from linesync.core.chunking import Chunker, TextSniffer
from linesync.core.ids import ChunkId, chunk_id, pack_ids
from linesync.protocol import codec
from linesync.protocol.errors import Code, LinesyncError
from linesync.protocol.framing import Frame
from linesync.protocol.schemas import CommitOp, CommitResult, Content, Kind
from linesync.server.context import Context
from linesync.server.model import Row

BLOCK = 2**20  # bytes read from an upload at a time
_FETCH_IDS = 64  # chunk ids asked from the chunk service at a time
# A folder's zip: at most so many files and bytes (refused past them, with a message).
MAX_ZIP_FILES = 10_000
MAX_ZIP_BYTES = 2 * 2**30


async def current(ctx: Context, ns_id: int, path: str) -> Row | None:
    """The newest entry at ``path`` (a tombstone when deleted), or None."""
    rows = await ctx.meta.history(ns_id, path, 2**62, 1)
    return rows[0] if rows else None


async def read(ctx: Context, ns_id: int, jid: int) -> AsyncIterator[bytes]:
    """The bytes of file version ``jid``, a chunk at a time (a few MiB held)."""
    ids = await ctx.meta.blocklist(ns_id, jid)
    if ids is None:
        raise LinesyncError(Code.NOT_FOUND, "no such file version")
    return _chunks(ctx, ns_id, ids)


async def _chunks(ctx: Context, ns_id: int, ids: Sequence[ChunkId]) -> AsyncIterator[bytes]:
    limit = ctx.config.max_chunk
    for start in range(0, len(ids), _FETCH_IDS):
        group = ids[start : start + _FETCH_IDS]
        frames = await ctx.chunks.fetch(
            ns_id, group, [None] * len(group), ctx.config.max_download_body
        )
        async for f in frames:
            yield codec.decode(f.codec, f.payload, None, limit)


async def read_all(ctx: Context, ns_id: int, jid: int, limit: int) -> bytes:
    """The whole version (the caller checked its size against ``limit``)."""
    out = bytearray()
    async for piece in await read(ctx, ns_id, jid):
        out += piece
        if len(out) > limit:
            raise LinesyncError(Code.PAYLOAD_TOO_LARGE, f"larger than {limit} bytes")
    return bytes(out)


async def store(ctx: Context, ns_id: int, fileobj: IO[bytes]) -> tuple[list[ChunkId], int]:
    """Cut ``fileobj`` (a spooled upload) as the client would and store its
    chunks in the namespace; its blocklist and size. Read twice: once to
    tell text from binary, once to cut."""
    sniff = TextSniffer()
    size = 0
    fileobj.seek(0)
    while block := fileobj.read(BLOCK):
        size += len(block)
        sniff.feed(block)
    is_text = sniff.feed(b"", final=True)
    if size > ctx.config.limits.max_file_size:
        raise LinesyncError(Code.FILE_TOO_LARGE, "the file is larger than the server allows")
    fileobj.seek(0)
    chunker = Chunker(is_text)
    ids: list[ChunkId] = []
    intake = ctx.chunks.intake(ns_id, ctx.config.max_request_decoded)
    taken = 0
    while True:
        block = fileobj.read(BLOCK)
        pieces = chunker.feed(block) if block else chunker.finish()
        frames = await asyncio.to_thread(_frames, pieces)
        if taken + sum(len(p) for p in pieces) > ctx.config.max_request_decoded:
            await intake.finish()  # one intake holds at most so much: start another
            intake, taken = ctx.chunks.intake(ns_id, ctx.config.max_request_decoded), 0
        await intake.add(frames)
        taken += sum(len(p) for p in pieces)
        ids.extend(f.chunk_id for f in frames)
        if not block:
            break
    await intake.finish()
    return ids, size


async def commit_file(
    ctx: Context, ns_id: int, path: str, ids: list[ChunkId], size: int, device: str
) -> CommitResult:
    """Make these bytes the current version of ``path`` (over whatever is there
    now: the upload is what the user asked for, and the old version stays in
    the history)."""
    cur = await current(ctx, ns_id, path)
    op = CommitOp(
        path=path,
        kind=Kind.FILE,
        base_jid=cur.jid if cur is not None else 0,
        size=size,
        mtime_ns=time.time_ns(),
        content=Content(ids=pack_ids(ids)),
    )
    outcome = await ctx.meta.commit(ns_id, [op], device, ctx.config.limits)
    return outcome.results[0]


# Why the journal refused an op, for people (linesync.server.commit's reasons).
REASONS = {
    "parent": "its folder does not exist (any more)",
    "case_collision": "another name there differs from it only in case",
    "changed": "it changed meanwhile",
    "source_changed": "it changed meanwhile",
    "not_empty": "the folder is not empty",
}


def refused(r: CommitResult) -> str:
    """Why an op did not go through, for people."""
    return REASONS.get(r.reason or "", r.reason or r.status)


async def commit_ops(ctx: Context, ns_id: int, ops: list[CommitOp], device: str) -> None:
    """Commit ``ops`` together; a conflict (the path changed meanwhile) is an error."""
    outcome = await ctx.meta.commit(ns_id, ops, device, ctx.config.limits)
    for r in outcome.results:
        if r.status != "ok":
            why = f"{r.path}: not saved ({refused(r)}); reload the page and try again"
            raise LinesyncError(Code.BAD_REQUEST, why)


def _frames(pieces: list[bytes]) -> list[Frame]:
    """Chunks as the client sends them: each with its id, compressed when that
    is smaller (the chunk store keeps them so)."""
    out = []
    for p in pieces:
        kind, payload = codec.encode(p)
        out.append(Frame(chunk_id(p), kind, None, payload))
    return out


class _Sink:
    """A write-only file for zipfile (not seekable: entries get data descriptors)
    whose bytes are taken out as they come."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def take(self) -> bytes:
        out = b"".join(self.parts)
        self.parts.clear()
        return out


def zip_check(files: Sequence[Row]) -> str | None:
    """Why a zip of these files is refused, or None."""
    if len(files) > MAX_ZIP_FILES:
        return f"more than {MAX_ZIP_FILES} files: download fewer at a time, or sync them"
    if sum(r.size for r in files) > MAX_ZIP_BYTES:
        return f"more than {MAX_ZIP_BYTES // 2**30} GiB: download fewer at a time, or sync them"
    return None


async def zip_stream(
    ctx: Context, ns_id: int, files: Sequence[Row], folder: str
) -> AsyncIterator[bytes]:
    """A zip of ``files`` (paths relative to ``folder``), stored uncompressed,
    streamed as it is written: a chunk or so held at a time."""
    sink = _Sink()
    cut = len(folder) + 1 if folder else 0
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED) as zf:
        for row in files:
            info = zipfile.ZipInfo(row.path[cut:], _zip_time(row.mtime_ns))
            info.file_size = row.size
            with zf.open(info, "w", force_zip64=row.size > 2**31) as out:
                async for piece in await read(ctx, ns_id, row.jid):
                    out.write(piece)
                    if sum(len(p) for p in sink.parts) >= BLOCK:
                        yield sink.take()
            yield sink.take()
    yield sink.take()


def _zip_time(mtime_ns: int) -> tuple[int, int, int, int, int, int]:
    t = time.gmtime(max(mtime_ns // 10**9, 315532800))  # zip counts from 1980
    return (t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec)
