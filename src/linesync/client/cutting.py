"""Cutting the files a scan read into chunks, on every core when there is much
to cut (a first sync): the text chunker is Python, so it runs in worker
processes while this one reads the next files and records what they gave.

The workers see only bytes (``chunking.cut_all``, pure); every disk access
stays with the engine and its ``FileSystem``. Big files go to the workers and
come back in the order they went; small ones are cut here at once; at most
HELD_BYTES of read files wait at a time. A
worker that dies costs only time: its files are cut here instead.

Workers are forked (Linux only): a fresh interpreter ("spawn", "forkserver")
would run the main module of the program that embeds the client again, and
one that is not guarded by ``if __name__ == "__main__"`` would start over.
A forked worker runs only pure code, so the threads of this process (the
file watcher's) cannot leave it a lock it needs. Elsewhere files are cut here.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import sys
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

from linesync.client.model import Stat
from linesync.core.chunking import cut, cut_all
from linesync.core.ids import ChunkId

log = logging.getLogger("linesync.client")

POOL_MIN_BYTES = 32 * 2**20  # bytes of big files to cut in one scan before workers pay off
# A file smaller than this is cut here: sending it to a worker costs about what
# cutting it does (100,000 files of 0.2-2 KB: workers saved 5% of the time and
# took 73 MiB more here, and 60 MiB of their own).
POOL_FILE_MIN = 64 * 2**10
TASK_BYTES = 4 * 2**20  # one worker task: files of about so many bytes
TASK_FILES = 256  # ... or so many files
HELD_BYTES = 64 * 2**20  # read and waiting to be cut, at most


@dataclass
class Cut:
    """A file the scan read, to be cut into chunks."""

    path: str
    data: bytes
    fhash: bytes
    stat: Stat
    exec: bool


Done = Callable[[Cut, list[ChunkId], list[int]], None]


class Cutter:
    """``add`` files; ``done(cut, ids, sizes)`` hears of each (the big ones in order) by
    :meth:`finish` at the latest. ``parallel``: in worker processes (one a
    core, at most 4), else here."""

    work = staticmethod(cut_all)  # what a worker runs (a seam for tests)

    def __init__(self, done: Done, parallel: bool) -> None:
        self.done = done
        cores = min(4, os.cpu_count() or 1)
        self.pool: ProcessPoolExecutor | None = None
        if parallel and cores > 1 and sys.platform.startswith("linux"):
            ctx = multiprocessing.get_context("fork")
            # A worker's garbage collector leaves what it inherited alone: its
            # pages stay shared with this process instead of being copied.
            self.pool = ProcessPoolExecutor(cores, mp_context=ctx, initializer=gc.freeze)
        self.batch: list[Cut] = []
        self.batch_bytes = 0
        self.flight: deque[tuple[list[Cut], Future[list[tuple[list[ChunkId], list[int]]]]]] = (
            deque()
        )
        self.held = 0

    def add(self, c: Cut) -> None:
        if self.pool is None or len(c.data) < POOL_FILE_MIN:
            self.done(c, *cut(c.data))
            return
        self.batch.append(c)
        self.batch_bytes += len(c.data)
        if self.batch_bytes >= TASK_BYTES or len(self.batch) >= TASK_FILES:
            self._submit()

    def finish(self) -> None:
        """Every file added is cut and told of; the workers stop."""
        try:
            self._submit()
            while self.flight:
                self._settle()
        finally:
            self.close(wait=True)

    def close(self, wait: bool = False) -> None:
        """Stop the workers (``wait``: until they have exited: none lingers
        with a copy of this process's descriptors)."""
        if self.pool is not None:
            self.pool.shutdown(wait=wait, cancel_futures=True)
            self.pool = None

    def _submit(self) -> None:
        if not self.batch:
            return
        assert self.pool is not None
        try:
            future = self.pool.submit(self.work, [c.data for c in self.batch])
        except BrokenProcessPool:
            future = Future()
            future.set_result(cut_all([c.data for c in self.batch]))
        self.flight.append((self.batch, future))
        self.held += self.batch_bytes
        self.batch, self.batch_bytes = [], 0
        while self.held > HELD_BYTES:
            self._settle()

    def _settle(self) -> None:
        cuts, future = self.flight.popleft()
        try:
            results = future.result()
        except BrokenProcessPool as exc:  # a worker died (killed, out of memory): here
            log.warning("a chunking worker stopped (%s); going on without it", exc)
            results = cut_all([c.data for c in cuts])
        self.held -= sum(len(c.data) for c in cuts)
        for c, (ids, sizes) in zip(cuts, results, strict=True):
            self.done(c, ids, sizes)
