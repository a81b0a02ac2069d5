"""The client decodes downloaded chunks with one decompression and checks
each against its id; a payload that way does not match (several zstd frames,
as another client may upload) is decoded the strict way, not refused."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import zstandard

from linesync.client.api import Client
from linesync.client.chunksource import ChunkSource
from linesync.client.index import Index
from linesync.client.localfs import LocalFS
from linesync.client.remote import Remote
from linesync.core.ids import chunk_id
from linesync.protocol import codec
from linesync.protocol.codec import Codec
from linesync.protocol.errors import LinesyncError
from linesync.protocol.framing import Frame
from tests.client.conftest import files
from tests.support.api import file_op, ns_id, split
from tests.support.server import ServerProc


def test_a_chunk_of_two_zstd_frames_downloads_whole(server: ServerProc, tmp_path: Path) -> None:
    data = b"".join(b"line %d of a note that another client uploaded\n" % i for i in range(12))
    (part,) = split(data)  # one chunk
    z = zstandard.ZstdCompressor(level=3)
    two = z.compress(part[:300]) + z.compress(part[300:])
    ns = ns_id(server, "admin")

    async def put() -> None:
        async with Remote(server.url, server.new_token("admin", "other")) as r:
            await r.upload(ns, [Frame(chunk_id(part), Codec.ZSTD, None, two)])
            (res,) = await r.commit(ns, [file_op("note.txt", data)])
            assert res.status == "ok", res

    asyncio.run(put())
    b = Client.init(tmp_path / "B", server=server.url, token=server.new_token("admin", "beta"))
    result = b.sync_once()
    assert result.downloaded == 1 and not result.problems, result
    assert files(b.folder) == {"note.txt": data}


class _Serves:
    """A server (fault injection) that answers a fetch with given frames."""

    def __init__(self, frames: list[Frame]) -> None:
        self.frames = frames

    async def fetch(self, ns: int, ids: object, bases: object = None) -> list[Frame]:
        return self.frames


def test_a_payload_the_fast_decode_gets_wrong_is_decoded_the_strict_way(tmp_path: Path) -> None:
    part = b"".join(b"line %d\n" % i for i in range(200))
    z = zstandard.ZstdCompressor(level=3)
    two = z.compress(part[:300]) + z.compress(part[300:])
    assert codec.decode_and_verify(Codec.ZSTD, two, None, 2**20) == part[:300]  # first frame
    cid = chunk_id(part)
    index = Index.open(tmp_path / "index.db")
    source = ChunkSource(index, LocalFS(tmp_path), _Serves([Frame(cid, Codec.ZSTD, None, two)]),  # type: ignore[arg-type]
                         ns=1)  # fmt: skip
    assert asyncio.run(source.get([cid])) == {cid: part}
    cut = Frame(cid, Codec.ZSTD, None, z.compress(part)[:-4])
    source = ChunkSource(index, LocalFS(tmp_path), _Serves([cut]), ns=1)  # type: ignore[arg-type]
    with pytest.raises(LinesyncError):
        asyncio.run(source.get([cid]))
