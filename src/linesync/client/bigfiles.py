"""Files too big to hold in memory (STREAM_MIN and up): cut and hashed from
blocks read twice (is it text? then the chunks), and uploaded chunk by chunk
straight from disk. The chunks are exactly those of ``chunking.chunk`` on
the whole file."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from linesync.client.filesystem import FileSystem
from linesync.client.localfs import Changed
from linesync.client.model import Stat
from linesync.core.chunking import Chunker, TextSniffer
from linesync.core.ids import ChunkId, chunk_id

STREAM_MIN = 16 * 2**20  # files this big never pass through memory whole
BLOCK = 2**20  # bytes read at a time
WINDOW_BYTES = 8 * 2**20  # of a big file's chunks fetched at a time


def cut_file(fs: FileSystem, path: str) -> tuple[list[ChunkId], list[int], Stat]:
    """The blocklist of a file on disk, its chunks' sizes, and the stat they
    go with; Changed if the file changed while it was read."""
    with fs.open_read(path) as r:
        sniff = TextSniffer()
        seen = 0
        for block in r.blocks(BLOCK):
            seen += len(block)
            if not sniff.feed(block, seen >= r.stat.size):
                break
        cut = Chunker(sniff.text)
        ids: list[ChunkId] = []
        sizes: list[int] = []
        for block in r.blocks(BLOCK):
            for piece in cut.feed(block):
                ids.append(chunk_id(piece))
                sizes.append(len(piece))
        for piece in cut.finish():
            ids.append(chunk_id(piece))
            sizes.append(len(piece))
        return ids, sizes, r.stat


class FileChunks(Mapping[ChunkId, bytes]):
    """A file's chunks by id, each read from disk when asked for and checked
    against its id (Changed when the file no longer holds it)."""

    def __init__(self, fs: FileSystem, path: str, ids: list[ChunkId], sizes: list[int]) -> None:
        self.fs, self.path, self.ids = fs, path, ids
        self.total = sum(sizes)
        self.where: dict[ChunkId, tuple[int, int]] = {}
        offset = 0
        for cid, size in zip(ids, sizes, strict=True):
            self.where.setdefault(cid, (offset, size))
            offset += size

    def __getitem__(self, cid: ChunkId) -> bytes:
        offset, size = self.where[cid]
        data = self.fs.read_range(self.path, offset, size)
        if data is None or chunk_id(data) != cid:
            raise Changed(f"{self.path} changed since it was scanned")
        return data

    def __iter__(self) -> Iterator[ChunkId]:
        return iter(self.where)

    def __len__(self) -> int:
        return len(self.where)

    def size(self, cid: ChunkId) -> int:
        return self.where[cid][1]


def size_of(body: Mapping[ChunkId, bytes], cid: ChunkId) -> int:
    """A chunk's size, without reading it from disk."""
    return body.size(cid) if isinstance(body, FileChunks) else len(body[cid])
