"""Streaming sync, the downloading side: while another device uploads a big
file, its chunks are fetched as they reach the server, into a staging file
under ``.linesync/streams/``. When the commit lands, the download finds
them there (each checked against its id again) and only writes the file:
it arrives about one transfer after its upload began, not two.

Nothing here is trusted or kept: a stream is a hint the server gave, it
stops on any error (the file then comes the usual way, after its commit),
and its staging file goes when the upload is committed and downloaded or
dropped. The folder itself is never touched.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from linesync.client.remote import Remote
from linesync.core.ids import ChunkId, chunk_id, unpack_ids
from linesync.protocol import codec
from linesync.protocol.errors import LinesyncError
from linesync.protocol.schemas import PendingFile

log = logging.getLogger("linesync.client")

STREAMS_MAX = 2  # files streamed at once
STALL = 120.0  # seconds without a new chunk before a stream gives up
GAP = 0.2  # seconds between asking again for chunks not uploaded yet
# Asked for at a time: about what an uploader has in flight (3 requests of 8 MiB).
WINDOW_BYTES = 24 * 2**20
MAX_CHUNK = 2**20
FETCH_MAX_IDS = 4096


@dataclass
class Stream:
    seq: int
    path: str
    file: Path
    where: dict[ChunkId, tuple[int, int]] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None
    gone: int | None = None  # rounds started when its upload was committed or dropped


class Streams:
    """The streams of one watched folder. The poller tells it what the server
    announces (:meth:`heard`); the sync loop, when its rounds start and end;
    the chunk source reads what is staged (:meth:`read_many`)."""

    def __init__(
        self, remote: Remote, ns: int, folder_state: Path, wanted: Callable[[str, int], bool]
    ) -> None:
        self.remote, self.ns, self.wanted = remote, ns, wanted
        self.dir = folder_state / "streams"
        self.seen = 0  # the newest announcement looked at
        self.streams: dict[int, Stream] = {}
        self.rounds = 0
        shutil.rmtree(self.dir, ignore_errors=True)  # a killed run's leftovers

    def heard(self, pending: list[PendingFile]) -> None:
        """The uploads in progress now: follow the new ones wanted here; those no
        longer listed were committed (or dropped): stop fetching them."""
        live = {p.seq for p in pending}
        for s in self.streams.values():
            if s.seq not in live and s.gone is None:
                s.gone = self.rounds
                if s.task is not None:
                    s.task.cancel()
        for p in pending:
            if p.seq <= self.seen:
                continue
            self.seen = p.seq
            active = sum(s.gone is None for s in self.streams.values())
            if active < STREAMS_MAX and self.wanted(p.path, p.size) and self._room(p.size):
                self.dir.mkdir(mode=0o700, exist_ok=True)
                s = Stream(p.seq, p.path, self.dir / f"{p.seq}.part")
                s.task = asyncio.create_task(self._follow(s, p.size))
                self.streams[p.seq] = s

    def round_started(self) -> None:
        self.rounds += 1

    def round_done(self) -> None:
        """Staging files of uploads committed before this round began go: the
        round downloaded what it could from them."""
        for s in [s for s in self.streams.values() if s.gone is not None and s.gone < self.rounds]:
            del self.streams[s.seq]
            s.file.unlink(missing_ok=True)

    async def close(self) -> None:
        tasks = [s.task for s in self.streams.values() if s.task is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.streams.clear()
        shutil.rmtree(self.dir, ignore_errors=True)

    def read_many(self, ids: Iterable[ChunkId]) -> dict[ChunkId, bytes]:
        """The chunks of ``ids`` staged so far, each checked against its id."""
        out: dict[ChunkId, bytes] = {}
        if not self.streams:
            return out
        for s in self.streams.values():
            found = [(c, w) for c in ids if c not in out and (w := s.where.get(c)) is not None]
            if not found:
                continue
            try:
                fd = os.open(s.file, os.O_RDONLY)
            except OSError:
                continue
            try:
                for cid, (offset, size) in found:
                    data = os.pread(fd, size, offset)
                    if chunk_id(data) == cid:
                        out[cid] = data
            finally:
                os.close(fd)
        return out

    def _room(self, size: int) -> bool:
        """Room on disk for the staged copy and the file itself, and some left."""
        try:
            return shutil.disk_usage(self.dir.parent).free > 2 * size + 2**30
        except OSError:
            return False

    async def _follow(self, s: Stream, size: int) -> None:
        try:
            ann = await self.remote.pending(self.ns, s.seq)
            ids = unpack_ids(ann.ids)
            step = max(16, min(FETCH_MAX_IDS, WINDOW_BYTES * len(ids) // max(size, 1)))
            fd = os.open(s.file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                await self._fetch_into(s, fd, dict.fromkeys(ids), step)
            finally:
                os.close(fd)
            log.info("%s: %d chunks fetched while they were uploaded", s.path, len(s.where))
        except (LinesyncError, OSError, ValueError) as exc:
            # A hint, not a duty: the file comes after its commit as usual.
            log.info("%s: not streamed (%s)", s.path, exc)

    async def _fetch_into(self, s: Stream, fd: int, todo: dict[ChunkId, None], step: int) -> None:
        """Fetch the chunks of ``todo`` as they reach the server, the first
        ``step`` not fetched yet at a time, and append them to the staging file
        (in the order they came: ``where`` says where each lies)."""
        loop = asyncio.get_running_loop()
        offset = 0
        last = loop.time()
        while todo:
            ask = list(itertools.islice(todo, step))
            frames = await self.remote.fetch(self.ns, ask, available=True)
            if not frames:
                if loop.time() - last > STALL:
                    raise TimeoutError(f"no new chunk for {STALL:.0f} s")
                await asyncio.sleep(GAP)
                continue
            last = loop.time()
            pieces: list[tuple[ChunkId, bytes]] = []
            for f in frames:
                if f.chunk_id not in todo or f.base is not None:
                    raise ValueError("the server sent a chunk not asked for")
                data = codec.decode(f.codec, f.payload, None, MAX_CHUNK)
                if chunk_id(data) != f.chunk_id:
                    raise ValueError("the server sent a corrupt chunk")
                del todo[f.chunk_id]
                pieces.append((f.chunk_id, data))
            await asyncio.to_thread(os.pwrite, fd, b"".join(d for _, d in pieces), offset)
            for cid, data in pieces:  # readable once written
                s.where[cid] = (offset, len(data))
                offset += len(data)
            if len(frames) < len(ask):
                await asyncio.sleep(GAP / 4)  # the rest is on its way up
