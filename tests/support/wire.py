"""Measure the bytes one change costs on the wire: uploader and downloader each
talk to the server through their own byte-counting proxy."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from urllib.parse import urlsplit

from linesync.client.remote import Remote
from linesync.client.transfer import prepare_file, resolve_content, split
from linesync.core.ids import ChunkId
from linesync.protocol import inline
from tests.support.files import put_file
from tests.support.proxy import ByteProxy, Counts


@dataclass
class WireCost:
    upload: Counts
    download: Counts
    reconstructed: bool


async def measure_edit(url: str, token: str, path: str, old: bytes, new: bytes) -> WireCost:
    """Commit ``old`` (setup, not counted), then measure committing ``new`` from
    one client and receiving it on another that holds ``old``."""
    parts = urlsplit(url)
    assert parts.hostname and parts.port
    pa, pb = ByteProxy(parts.hostname, parts.port), ByteProxy(parts.hostname, parts.port)
    ua, ub = await pa.start(), await pb.start()
    try:
        async with Remote(ua, token) as a, Remote(ub, token) as b:
            ns = (await a.me()).namespaces[0].id
            jid = await put_file(a, ns, path, old)
            old_ids, old_chunks = split(old)
            cursor = (await b.head(ns)).cursor
            new_ids, new_chunks = split(new)
            pa.reset()
            pb.reset()
            poll = asyncio.create_task(b.list_changes(ns, cursor, wait=30, inline=65536))
            await asyncio.sleep(0.2)  # the long-poll is waiting before the edit
            prep = prepare_file(
                path, new_ids, new_chunks, size=len(new), mtime_ns=2, base_jid=jid,
                base_ids=old_ids, base_chunks=old_chunks.get,
            )  # fmt: skip
            (res,) = await a.commit(ns, [prep.op], prep.inline, journal=cursor.split(".")[0])
            assert res.status == "ok", res
            listing = await poll
            up, down = pa.reset(), pb.reset()
            (entry,) = [e for e in listing.entries if e.path == path]
            assert entry.content is not None
            got = resolve_content(entry.content, lambda j: old_ids if j == jid else None)
            have: dict[ChunkId, bytes] = dict(old_chunks)
            have.update(inline.decode(listing.chunks, have.get))
            ok = got is not None and all(c in have for c in got)
            rebuilt = b"".join(have[c] for c in got) if ok and got is not None else b""
            return WireCost(upload=up, download=down, reconstructed=rebuilt == new)
    finally:
        await pa.close()
        await pb.close()
