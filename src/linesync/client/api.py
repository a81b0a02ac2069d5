"""The library API: embed a linesync client in an application.

from linesync import Client

client = Client.init("~/Notes", server="http://host:8440", token="lst_...")
result = client.sync_once()          # one pass; result.converged says if both agree
asyncio.run(client.watch(stop))      # keep syncing until ``stop`` is set
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from linesync.client.base import LIST_INLINE
from linesync.client.config import INDEX_FILE, FolderConfig, check_server_url
from linesync.client.engine import Engine, MassDelete, SyncResult
from linesync.client.index import Index, IndexError_
from linesync.client.localfs import STATE_DIR, FolderBusy, fsync_dir
from linesync.client.rail import WATCH_SETTLE_NS, Rail, describe
from linesync.client.remote import Remote, RemoteUnavailable
from linesync.client.retry import RetryPolicy, retry_after
from linesync.client.streaming import Streams
from linesync.memory import give_back
from linesync.protocol.errors import Code, LinesyncError
from linesync.protocol.schemas import ListResponse

if TYPE_CHECKING:
    from linesync.client.watcher import FolderWatcher

log = logging.getLogger("linesync.client")

WATCH_DEBOUNCE = 0.05
# With the watcher naming what changed, the whole folder is scanned this often
# (and after any failed round): what events may have missed is found then.
WATCH_RESCAN = 600.0
WATCH_SETTLE = WATCH_SETTLE_NS / 1e9  # seconds without a new deletion before judging them
LONG_POLL = 25
WATCHER_CHECK = 10.0  # seconds between checks that the file watcher still runs
NEWS_WAIT = 5.0  # seconds the poller waits for the loop to take its answer


def secure_state(folder: Path) -> None:
    """The client's own state is its user's alone: ``.linesync/`` 0700, its
    files (the token in config.json, the index with the folder's names) 0600.
    Tightens what an older linesync (or a loose umask) left."""
    state = folder / STATE_DIR
    with contextlib.suppress(OSError):
        if state.stat().st_mode & 0o077:
            state.chmod(0o700)
    try:
        entries = list(os.scandir(state))
    except OSError:
        return
    for e in entries:
        with contextlib.suppress(OSError):
            if e.is_file(follow_symlinks=False) and e.stat(follow_symlinks=False).st_mode & 0o077:
                os.chmod(e.path, 0o600)


def _open_index(folder: Path, report: Callable[[str], None]) -> Index:
    path = folder / STATE_DIR / INDEX_FILE
    secure_state(folder)
    try:
        return Index.open(path)
    except IndexError_ as exc:
        if "newer linesync" in str(exc):
            raise
        # A damaged index is rebuilt from disk and server: every file then counts
        # as present on both sides, so nothing is deleted because of it.
        report(f"{exc}; rebuilding the index")
        broken = path.with_name(path.name + ".broken")
        for suffix in ("", "-wal", "-shm"):
            p = path.with_name(path.name + suffix)
            if p.exists():
                p.replace(broken.with_name(broken.name + suffix))
        return Index.open(path)


class Client:
    """A folder kept in sync with one namespace of one server."""

    def __init__(self, folder: str | Path, *, report: Callable[[str], None] | None = None) -> None:
        self.folder = Path(folder).expanduser().resolve()
        self.config = FolderConfig.load(self.folder)
        self.report = report or (lambda msg: log.info("%s", msg))

    @classmethod
    def init(
        cls,
        folder: str | Path,
        *,
        server: str,
        token: str,
        namespace: str | None = None,
    ) -> Client:
        """Make ``folder`` a linesync folder (it may already hold files)."""
        return asyncio.run(cls.init_async(folder, server=server, token=token, namespace=namespace))

    @classmethod
    async def init_async(
        cls, folder: str | Path, *, server: str, token: str, namespace: str | None = None
    ) -> Client:
        server = check_server_url(server)
        root = Path(folder).expanduser().resolve()
        if FolderConfig.path(root).exists():
            raise FileExistsError(f"{root} is already a linesync folder")
        async with Remote(server, token) as remote:
            me = await remote.me()
        spaces = me.namespaces
        if namespace is not None:
            chosen = [n for n in spaces if n.name == namespace or str(n.id) == namespace]
        else:
            chosen = [n for n in spaces if n.name == me.user] or spaces[:1]
        if not chosen:
            names = ", ".join(n.name for n in spaces) or "none"
            raise LookupError(f"no namespace {namespace!r} for {me.user} (you have: {names})")
        ns = chosen[0]
        read_only = ns.role == "ro" or me.token_role == "ro"
        for folder in reversed([root, *root.parents]):  # each new one durable in its parent
            if not folder.exists():
                folder.mkdir(exist_ok=True)
                fsync_dir(folder.parent)
        (root / STATE_DIR).mkdir(mode=0o700, exist_ok=True)
        secure_state(root)
        FolderConfig(server, token, ns.id, ns.name, me.device, read_only).save(root)
        Index.open(root / STATE_DIR / INDEX_FILE).close()
        return cls(root)

    def _remote(self, retry: RetryPolicy | None = None) -> Remote:
        """The connection to the server (a seam: tests answer from elsewhere)."""
        return Remote(self.config.server, self.config.token, retry=retry)

    async def sync(
        self,
        *,
        allow_mass_delete: bool = False,
        progress: Callable[[str, int, int], None] | None = None,
        retry_for: float = 0.0,
        on_retry: Callable[[LinesyncError, float], None] | None = None,
    ) -> SyncResult:
        """One pass; ``progress(what, done, total)`` hears about long transfers.
        ``retry_for``: seconds a request that fails for a passing reason (server
        unreachable, 429, 502/503/504) is tried again, with backoff and the
        server's Retry-After (0: not at all); ``on_retry(error, wait)`` hears of
        each retry. Raises :class:`MassDelete` when the mass-delete rail holds
        deletions back (everything else is synced first; ``exc.result``)."""
        index = _open_index(self.folder, self.report)
        policy = RetryPolicy(retry_for=retry_for, jitter=random.random, on_retry=on_retry)
        try:
            async with self._remote(policy) as remote:
                engine = self._engine(remote, index, allow_mass_delete)
                if progress is not None:
                    engine.progress = progress
                return await engine.sync_once()
        finally:
            index.close()

    def _engine(
        self, remote: Remote, index: Index, allow_mass_delete: bool, rail: Rail | None = None
    ) -> Engine:
        return Engine(
            self.folder,
            self.config,
            remote,
            index,
            allow_mass_delete=allow_mass_delete,
            report=self.report,
            rail=rail,
        )

    def sync_once(self, *, allow_mass_delete: bool = False, retry_for: float = 0.0) -> SyncResult:
        return asyncio.run(self.sync(allow_mass_delete=allow_mass_delete, retry_for=retry_for))

    async def watch(
        self,
        stop: asyncio.Event,
        *,
        on_result: Callable[[SyncResult], None] | None = None,
        allow_mass_delete: bool = False,
        settle: float = WATCH_SETTLE,
        stream: bool = True,
    ) -> None:
        """Sync whenever the folder or the server changes, until ``stop`` is set.
        Network errors are retried with backoff; they never delete anything.
        Deletions wait until no new one came for ``settle`` seconds, and are
        then judged whole by the mass-delete rail; one it refuses is held (and
        reported) while everything else keeps syncing. ``stream``: fetch a big
        file's chunks while another device still uploads it."""
        from linesync.client.watcher import FolderWatcher

        dirty = asyncio.Event()
        dirty.set()
        index = _open_index(self.folder, self.report)
        watcher = FolderWatcher(self.folder, dirty)
        watcher.start()
        try:
            async with self._remote() as remote:
                rail = Rail(settle_ns=int(settle * 1e9))
                engine = self._engine(remote, index, allow_mass_delete, rail)
                streams = None
                if stream:
                    streams = Streams(remote, self.config.namespace, self.folder / STATE_DIR,
                                      engine.wants_streamed)  # fmt: skip
                    engine.chunks.streams = streams
                news = _News()
                poller = asyncio.create_task(self._poll(remote, index, dirty, stop, news, streams))
                try:
                    await self._loop(engine, dirty, stop, on_result, watcher, news, streams)
                finally:
                    poller.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await poller
                    if streams is not None:
                        await streams.close()
        finally:
            watcher.stop()
            index.close()

    async def _loop(
        self,
        engine: Engine,
        dirty: asyncio.Event,
        stop: asyncio.Event,
        on_result: Callable[[SyncResult], None] | None,
        watcher: FolderWatcher | None = None,
        news: _News | None = None,
        streams: Streams | None = None,
    ) -> None:
        """Sync on each wake-up. A round the watcher's events explain looks only
        at the paths they named (and those whose views disagree); the first
        round, one after WATCH_RESCAN quiet seconds and one after a failure
        scan the whole folder."""
        backoff = 1.0
        loop = asyncio.get_running_loop()
        wake_at: float | None = None  # held deletions settle then: judge them again
        told: tuple[int, int, int] | None = None  # the refusal last reported
        full = True
        last_full = loop.time()
        while not stop.is_set():
            timeout = max(WATCH_RESCAN - (loop.time() - last_full), 0.0)
            if wake_at is not None:
                timeout = min(timeout, max(wake_at - loop.time(), 0.0))
            if watcher is not None:
                timeout = min(timeout, WATCHER_CHECK)
            await _wait_either(dirty, stop, timeout)
            if stop.is_set():
                return
            if watcher is not None and watcher.settings_changed():
                dirty.set()  # (its event was missed: `linesync exclude` applies now)
            if watcher is not None and not watcher.alive():
                watcher.restart()  # what it missed meanwhile: found by a full scan
                full = True
            elif not dirty.is_set() and not (
                (wake_at is not None and loop.time() >= wake_at)
                or loop.time() - last_full >= WATCH_RESCAN
            ):
                continue  # only the watcher check was due
            await asyncio.sleep(WATCH_DEBOUNCE)  # let a burst of saves settle
            dirty.clear()
            wake_at = None
            touched = watcher.take() if watcher is not None else set()
            if watcher is None or loop.time() - last_full >= WATCH_RESCAN:
                full = True
            # The poller's long-poll covers the server between full rounds: a round
            # the watcher alone woke lists nothing (its own writes wake it, too).
            pull = full or news is None or news.stale
            page = news.take() if news is not None else None
            try:
                if streams is not None:
                    streams.round_started()
                try:
                    result = await engine.sync_once(None if full else touched, page, pull)
                except MassDelete as exc:
                    assert exc.result is not None
                    result = exc.result
                finally:
                    if news is not None:
                        news.done.set()
                    if streams is not None:
                        streams.round_done()
                if full:
                    last_full = loop.time()
                full = False
                backoff = 1.0
                told = self._tell_hold(result, told)
                if on_result is not None:
                    on_result(result)
                if result.uploaded or result.downloaded:
                    give_back()  # the round's buffers: not kept while watching
                if result.wake_ns is not None:
                    wake_at = loop.time() + max(result.wake_ns - engine.clock(), 0) / 1e9
                elif not result.converged and result.held is None:
                    if watcher is not None:
                        watcher.touched |= touched  # still to be looked at
                    dirty.set()
                    await asyncio.sleep(0.5)
            except FolderBusy as exc:  # a one-off `linesync sync` runs: after it
                full = True  # this round's events may not all be done: look at everything
                self.report(f"{exc}; retrying in {backoff:.0f} s")
                await _sleep_or_stop(stop, backoff)
                backoff = min(backoff * 2, 60.0)
                dirty.set()
            except RemoteUnavailable as exc:
                full = True  # this round's events may not all be done: look at everything
                wait = max(backoff, retry_after(exc))
                self.report(f"server unreachable ({exc}); retrying in {wait:.0f} s")
                await _sleep_or_stop(stop, wait)
                backoff = min(backoff * 2, 60.0)
                dirty.set()
            except LinesyncError as exc:
                if exc.code in (Code.CLIENT_TOO_OLD, Code.CLIENT_TOO_NEW):
                    raise  # no retry mends it: one of the two must be upgraded
                full = True  # this round's events may not all be done: look at everything
                wait = max(backoff, retry_after(exc))
                self.report(f"sync failed: {exc.message}; retrying in {wait:.0f} s")
                await _sleep_or_stop(stop, wait)
                backoff = min(backoff * 2, 60.0)
                dirty.set()

    def _tell_hold(
        self, result: SyncResult, told: tuple[int, int, int] | None
    ) -> tuple[int, int, int] | None:
        """Report a refused deletion once (and again only when it changes), and
        when nothing is held back any more."""
        held = result.held
        if held is not None and held.refused:
            key = (held.count, held.total, held.since_ns)
            if key != told:
                self.report(describe(held, str(self.folder)))
            return key
        if held is None and told is not None:
            self.report("no deletions are held back any more")
            return None
        return told

    async def _poll(
        self,
        remote: Remote,
        index: Index,
        dirty: asyncio.Event,
        stop: asyncio.Event,
        news: _News | None = None,
        streams: Streams | None = None,
    ) -> None:
        """Long-poll the server; when the journal moves on, hand the answer (the
        changes themselves, small chunks inline) to the sync loop and wake it:
        a small change elsewhere then costs one round trip here. ``streams``
        hears of the big files other devices are uploading."""
        if news is not None:
            # Not before the first round ran: a long-poll from the journal's start
            # would bring what that round lists anyway (a whole first sync, twice).
            await _wait_either(news.done, stop, None)
        news = news or _News()
        backoff = 1.0
        while not stop.is_set():
            cursor = index.get("cursor")
            try:
                resp = await remote.list_changes(
                    self.config.namespace, cursor, wait=LONG_POLL, inline=LIST_INLINE,
                    pending=None if streams is None else streams.seen, fold=True,
                )  # fmt: skip
                backoff = 1.0
                if streams is not None:  # (none in progress: left out of the answer)
                    streams.heard(resp.pending or [])
                if resp.entries and resp.cursor == index.get("cursor"):
                    continue  # our own commit, whose answer brought it already
                if resp.entries:
                    news.put(cursor, resp)
                    dirty.set()
                    # Until a round ran (the index's cursor moved on): not the same page again.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(news.done.wait(), NEWS_WAIT)
            except LinesyncError as exc:
                news.stale = True  # what the server has now: the next round lists it
                dirty.set()
                await _sleep_or_stop(stop, max(backoff, retry_after(exc)))
                backoff = min(backoff * 2, 60.0)


class _News:
    """A long-poll's answer, from the poller to the sync loop."""

    def __init__(self) -> None:
        self.page: tuple[str | None, ListResponse] | None = None
        self.done = asyncio.Event()  # a round ran since the page was put
        self.stale = False  # the long-poll failed: the server may have news unheard

    def put(self, cursor: str | None, page: ListResponse) -> None:
        self.page = (cursor, page)
        self.done.clear()

    def take(self) -> tuple[str | None, ListResponse] | None:
        """The page and the cursor it was listed from (the engine uses it only
        if that is still the index's); a round that takes it lists if it must."""
        page, self.page = self.page, None
        self.stale = False
        return page


async def _wait_either(a: asyncio.Event, b: asyncio.Event, timeout: float | None) -> None:
    """Until either event is set or ``timeout`` passes; leaves no task behind."""
    if a.is_set() or b.is_set():
        return
    tasks = [asyncio.ensure_future(a.wait()), asyncio.ensure_future(b.wait())]
    try:
        await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
