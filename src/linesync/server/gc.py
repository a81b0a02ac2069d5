"""Garbage collection of chunks that no entry references.

A chunk uploaded to a namespace but never taken up by a commit is dropped
after the grace period (uploads in flight are younger than that). A chunk no
namespace holds any more leaves the index; a pack left mostly dead is
rewritten: its live records are copied to the current pack, the index is
pointed at the copies, and the old pack is deleted one GC round later, so a
read that looked up the old location just before still finds it, and only if
the index still points at nothing in it then (an upload in flight may have
written records there that it indexed after the pack was judged).

What a round leaves for the next (the retired packs) is kept in the metadata
store, and with several server processes on one store only the holder of the
"gc" lease collects.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass, field

from linesync.server.context import Context
from linesync.server.model import ChunkLoc
from linesync.server.stores.base import GcStats, MetadataStore
from linesync.server.stores.packs import ChunkStore, Location, Record
from linesync.server.stores.staged import StagedChunkStore, staged_name

log = logging.getLogger("linesync.gc")


@dataclass
class GcReport:
    stats: GcStats
    packs_rewritten: list[str] = field(default_factory=list)
    packs_deleted: list[str] = field(default_factory=list)


async def collect(
    meta: MetadataStore,
    packs: ChunkStore,
    grace_seconds: float,
    *,
    hold_seconds: float,
    min_live_ratio: float = 0.5,
) -> GcReport:
    """One GC round. A pack found unused is retired (in the metadata store, so
    that whichever process collects next knows it); one retired at least
    ``hold_seconds`` ago and still unused is deleted."""
    stats, _ = await meta.gc(grace_seconds)
    report = GcReport(stats)
    usage = await meta.pack_usage()
    now = time.time()
    retired = await meta.retired()
    back: list[str] = []
    for pack, since in sorted(retired.items()):
        if usage.get(pack, 0) > 0:
            # An upload may have written to this pack just before it was judged
            # dead and indexed its chunks only after: a pack in use again stays.
            back.append(pack)
        elif now - since >= hold_seconds:
            await packs.delete_pack(pack)
            report.packs_deleted.append(pack)
    await meta.set_retired([], back + report.packs_deleted)
    active = packs.current_pack
    fresh: list[str] = []
    for info in await packs.list_packs():
        if info.name == active or info.name in report.packs_deleted:
            continue
        live = usage.get(info.name, 0)
        if live == 0:
            fresh.append(info.name)
        elif staged_name(info.name):
            continue  # small packs in the database: the drain moves them, many at once
        elif live < min_live_ratio * info.size:
            await _rewrite(meta, packs, info.name)
            report.packs_rewritten.append(info.name)
            fresh.append(info.name)
    await meta.set_retired(fresh, [])
    return report


async def _rewrite(meta: MetadataStore, packs: ChunkStore, pack: str) -> None:
    live = await meta.pack_chunks(pack)
    payloads = await packs.read_many([Location(c.pack, c.offset, c.length) for c in live])
    locs = await packs.append(
        [Record(c.chunk_id, c.codec, p) for c, p in zip(live, payloads, strict=True)]
    )
    await meta.relocate(
        [
            ChunkLoc(c.chunk_id, loc.pack, loc.offset, loc.length, c.codec, c.raw_size)
            for c, loc in zip(live, locs, strict=True)
        ]
    )


async def gc_loop(ctx: Context) -> None:
    """Collect every ``gc_interval_seconds``; with several server processes on
    one store, the one holding the "gc" lease does (a lease outlives a round,
    so a runner that died is replaced within about two intervals)."""
    me = secrets.token_hex(8)
    interval = ctx.config.gc_interval_seconds
    packs = ctx.chunks.packs
    while True:
        await asyncio.sleep(interval)
        try:
            if not await ctx.meta.lease("gc", me, 1.5 * interval):
                continue
            report = await collect(
                ctx.meta, packs, ctx.config.gc_grace_seconds, hold_seconds=0.9 * interval
            )
            ctx.metrics.inc("linesync_gc_chunks_deleted_total", report.stats.chunks_deleted)
            log.info("gc: %s", report)
        except Exception:
            log.exception("gc round failed")


async def drain_loop(ctx: Context, store: StagedChunkStore) -> None:
    """Move staged small packs to the object store every
    ``drain_interval_seconds``, in the process holding the "drain" lease."""
    me = secrets.token_hex(8)
    interval = ctx.config.drain_interval_seconds
    while True:
        await asyncio.sleep(interval)
        try:
            if not await ctx.meta.lease("drain", me, 3 * interval):
                continue
            report = await store.drain(ctx.meta, ctx.config.drain_hold_seconds)
            if report.records or report.deleted:
                log.info("drain: %s", report)
        except Exception:
            log.exception("drain failed")
