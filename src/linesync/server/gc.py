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
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from linesync.server.context import Context
from linesync.server.model import ChunkLoc
from linesync.server.stores.base import GcStats, MaintenanceStore, MetadataStore
from linesync.server.stores.packs import ChunkStore, Location, Record
from linesync.server.stores.staged import StagedChunkStore, staged_name

DRAIN_BATCH = 4 * 2**20  # staged records moved per object-store append


class ChunkReader(Protocol):
    async def read_many(self, locs: Sequence[Location]) -> list[bytes]: ...


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
    await move(meta, packs, packs, await meta.pack_chunks(pack))


async def move(
    meta: MaintenanceStore, source: ChunkReader, target: ChunkStore, live: list[ChunkLoc]
) -> None:
    """Copy the records at ``live`` to ``target`` in one append, then point the
    index at the copies (the old ones stay until their pack is deleted)."""
    payloads = await source.read_many([Location(c.pack, c.offset, c.length) for c in live])
    locs = await target.append(
        [Record(c.chunk_id, c.codec, p) for c, p in zip(live, payloads, strict=True)]
    )
    await meta.relocate(
        [
            ChunkLoc(c.chunk_id, loc.pack, loc.offset, loc.length, c.codec, c.raw_size)
            for c, loc in zip(live, locs, strict=True)
        ]
    )


@dataclass
class DrainReport:
    packs: int = 0  # staged packs whose records moved
    records: int = 0
    appends: int = 0  # appends to the object store
    deleted: list[str] = field(default_factory=list)


async def drain(
    meta: MaintenanceStore, store: StagedChunkStore, hold_seconds: float
) -> DrainReport:
    """Move the staged packs' live records to the object store, a few MiB per
    append, and point the index at the copies. A staged pack emptied by an
    earlier drain at least ``hold_seconds`` ago, and still unused, is deleted (a
    reader that looked it up just before the move still finds it until then; an
    upload that staged records and has not indexed them yet has by then)."""
    report = DrainReport()
    now = time.time()
    for pack, since in list(store.drained.items()):
        if now - since < hold_seconds:
            continue
        del store.drained[pack]
        if not await meta.chunks_in([pack]):  # (else: moved by this drain)
            await store.stage.delete_pack(pack)
            report.deleted.append(pack)
    staged = [p.name for p in await store.stage.list_packs() if p.name not in store.drained]
    batch: list[ChunkLoc] = []
    for i in range(0, len(staged), 500):
        names = staged[i : i + 500]
        live = await meta.chunks_in(names)
        report.packs += len({c.pack for c in live})
        for loc in live:
            batch.append(loc)
            if sum(c.length for c in batch) >= DRAIN_BATCH:
                await move(meta, store.stage, store.big, batch)
                report.records, report.appends = report.records + len(batch), report.appends + 1
                batch = []
        store.drained.update((name, now) for name in names)
    if batch:
        await move(meta, store.stage, store.big, batch)
        report.records, report.appends = report.records + len(batch), report.appends + 1
    return report


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
            ctx.metrics.inc("linesync_gc_runs_total")
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
            report = await drain(ctx.meta, store, ctx.config.drain_hold_seconds)
            if report.records or report.deleted:
                log.info("drain: %s", report)
        except Exception:
            log.exception("drain failed")
