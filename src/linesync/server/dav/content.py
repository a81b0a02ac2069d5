"""File bytes in and out of the chunk store, for PUT and GET.

A PUT body is spooled to a temporary file as it arrives (bounded memory),
read a second time through the client's own :class:`Chunker` (text or
binary, as ``is_text`` of the whole file decides: the cut points, hence the
chunks, are the ones a linesync client makes, so both dedupe against each
other), and the chunks the namespace lacks go through the server's
:class:`Intake` like an upload's. A GET reads the chunks a few MiB at a time.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import IO

from linesync.core.chunking import Chunker, TextSniffer
from linesync.core.ids import ChunkId, chunk_id
from linesync.protocol import codec
from linesync.protocol.framing import Frame
from linesync.server.chunks import READ_BYTES
from linesync.server.context import Context
from linesync.server.dav.rules import DavError
from linesync.server.model import ChunkLoc
from linesync.server.stores.packs import ChunkStoreError, Location

BLOCK = 2**20  # bytes spooled or chunked at a time
BATCH = 4 * 2**20  # bytes of chunks handed to the intake at a time
INTAKE_BYTES = 64 * 2**20  # chunk bytes one intake takes before they are indexed


def spool_dir(ctx: Context) -> Path | None:
    """Where PUT bodies are spooled: the data directory when it exists."""
    d = ctx.config.data_dir / "dav-spool"
    try:
        d.mkdir(mode=0o700, exist_ok=True)  # private, as the data directory is
    except OSError:
        return None
    return d


async def spool(ctx: Context, body: AsyncIterator[bytes]) -> tuple[IO[bytes], int, bool]:
    """The body on disk, its size, and whether it is text (``is_text``)."""
    f = tempfile.TemporaryFile(dir=spool_dir(ctx))  # noqa: SIM115 (the caller closes it)
    try:
        sniffer = TextSniffer()
        size = 0
        buf = bytearray()
        async for piece in body:
            size += len(piece)
            buf += piece
            if len(buf) >= BLOCK:
                sniffer.feed(bytes(buf))
                await asyncio.to_thread(f.write, bytes(buf))
                buf.clear()
        sniffer.feed(bytes(buf), final=True)
        if buf:
            await asyncio.to_thread(f.write, bytes(buf))
        await asyncio.to_thread(f.seek, 0)
        return f, size, sniffer.text
    except BaseException:
        f.close()
        raise


class _Cutter:
    """Reads the spooled file and cuts it, a batch of chunks at a time (on a
    worker thread): each chunk's id and its stored form."""

    def __init__(self, f: IO[bytes], text: bool) -> None:
        self.f = f
        self.chunker = Chunker(text)
        self.done = False

    def next_batch(self) -> list[tuple[ChunkId, int, codec.Codec, bytes]]:
        out: list[tuple[ChunkId, int, codec.Codec, bytes]] = []
        size = 0
        while not self.done and size < BATCH:
            block = self.f.read(BLOCK)
            pieces = self.chunker.feed(block) if block else self.chunker.finish()
            if not block:
                self.done = True
            for p in pieces:
                kind, payload = codec.encode(p)
                out.append((chunk_id(p), len(p), kind, payload))
                size += len(p)
        return out


async def store(ctx: Context, ns_id: int, f: IO[bytes], text: bool) -> list[ChunkId]:
    """Cut the spooled file, store the chunks the namespace lacks; its blocklist."""
    cutter = _Cutter(f, text)
    intake = ctx.chunks.intake(ns_id, ctx.config.limits.max_file_size + 1)
    ids: list[ChunkId] = []
    taken = 0  # bytes the current intake took
    while not cutter.done:
        if taken >= INTAKE_BYTES:  # index what it holds: its records leave memory
            await intake.finish()
            intake, taken = ctx.chunks.intake(ns_id, ctx.config.limits.max_file_size + 1), 0
        batch = await asyncio.to_thread(cutter.next_batch)
        ids += [c[0] for c in batch]
        if len(ids) > ctx.config.limits.max_blocklist:
            raise DavError(413, "the file has more chunks than the server takes")
        unique = list(dict.fromkeys(c[0] for c in batch))
        absent = await ctx.meta.missing(ns_id, unique) if unique else set()
        frames: list[Frame] = []
        for cid, size, kind, payload in batch:
            if cid in absent:
                absent.discard(cid)
                frames.append(Frame(cid, int(kind), None, payload))
                taken += size
        await intake.add(frames)
    await intake.finish()
    return ids


WINDOW = 1024  # chunk ids located at a time while a GET streams


async def read(
    ctx: Context, ns_id: int, ids: Sequence[ChunkId], start: int, end: int
) -> AsyncIterator[bytes]:
    """Bytes ``start`` to ``end`` (exclusive) of a file made of the chunks
    ``ids``: located a window at a time, read and decoded a few MiB at a time."""
    pos = 0
    group: list[tuple[ChunkLoc, int]] = []  # chunk, its offset in the file
    size = 0
    for w in range(0, len(ids), WINDOW):
        window = ids[w : w + WINDOW]
        found = await ctx.meta.locate(ns_id, list(dict.fromkeys(window)))
        for cid in window:
            loc = found.get(cid)
            if loc is None:
                raise DavError(500, "the file's content is not available on this server")
            if pos + loc.raw_size > start and pos < end:
                group.append((loc, pos))
                size += loc.raw_size
            pos += loc.raw_size
            if group and (size >= READ_BYTES or pos >= end):
                yield await _read_group(ctx, group, start, end)
                group, size = [], 0
            if pos >= end:
                return
    if group:
        yield await _read_group(ctx, group, start, end)


async def _read_group(
    ctx: Context, group: list[tuple[ChunkLoc, int]], start: int, end: int
) -> bytes:
    try:
        payloads = await ctx.chunks.packs.read_many(
            [Location(c.pack, c.offset, c.length) for c, _ in group]
        )
    except ChunkStoreError as exc:
        raise DavError(503, f"chunk storage: {exc}") from exc
    limit = ctx.config.max_chunk

    def decode() -> bytes:
        out = bytearray()
        for (loc, at), payload in zip(group, payloads, strict=True):
            data = codec.decode(loc.codec, payload, None, limit)
            lo, hi = max(start - at, 0), min(end - at, len(data))
            out += memoryview(data)[lo:hi]
        return bytes(out)

    return await asyncio.to_thread(decode)


def close_quietly(f: IO[bytes]) -> None:
    try:
        f.close()
    except OSError:
        pass
