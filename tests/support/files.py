"""Put whole files on a server the plain way: commit, upload what is missing,
commit again."""

from __future__ import annotations

from linesync.client.remote import Remote
from linesync.client.transfer import prepare_file, split
from linesync.core import paths
from linesync.core.ids import unpack_ids
from linesync.protocol import codec
from linesync.protocol.framing import Frame
from linesync.protocol.schemas import CommitOp, Kind


def frames_for(chunks: dict[bytes, bytes], ids: list[bytes]) -> list[Frame]:
    out = []
    for cid in ids:
        kind, payload = codec.encode(chunks[cid])
        out.append(Frame(cid, kind, None, payload))
    return out


async def put_file(remote: Remote, ns: int, path: str, data: bytes, base_jid: int = 0) -> int:
    """Commit ``data`` at ``path`` (creating its folders); returns the JID."""
    folders = paths.ancestors(path)
    if folders:
        await remote.commit(ns, [CommitOp(path=f, kind=Kind.DIRECTORY) for f in folders])
    ids, chunks = split(data)
    prep = prepare_file(path, ids, chunks, size=len(data), mtime_ns=1, base_jid=base_jid)
    (res,) = await remote.commit(ns, [prep.op], prep.inline)
    if res.status == "missing":
        frames = frames_for(chunks, unpack_ids(res.missing or ""))
        for i in range(0, len(frames), 1000):
            await remote.upload(ns, frames[i : i + 1000])
        (res,) = await remote.commit(ns, [prep.op])
    assert res.status == "ok" and res.jid, res
    return res.jid
