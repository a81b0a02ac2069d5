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
from collections.abc import Callable
from pathlib import Path

from linesync.client.config import INDEX_FILE, FolderConfig
from linesync.client.engine import Engine, SyncResult
from linesync.client.index import Index, IndexError_
from linesync.client.localfs import STATE_DIR, FolderBusy
from linesync.client.remote import Remote, RemoteUnavailable
from linesync.protocol.errors import LinesyncError

log = logging.getLogger("linesync.client")

WATCH_DEBOUNCE = 0.05
WATCH_RESCAN = 60.0
LONG_POLL = 25


def _open_index(folder: Path, report: Callable[[str], None]) -> Index:
    path = folder / STATE_DIR / INDEX_FILE
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
        root.mkdir(parents=True, exist_ok=True)
        (root / STATE_DIR).mkdir(exist_ok=True)
        FolderConfig(server, token, ns.id, ns.name, me.device, read_only).save(root)
        Index.open(root / STATE_DIR / INDEX_FILE).close()
        return cls(root)

    async def sync(
        self,
        *,
        allow_mass_delete: bool = False,
        progress: Callable[[str, int, int], None] | None = None,
    ) -> SyncResult:
        """One pass; ``progress(what, done, total)`` hears about long transfers."""
        index = _open_index(self.folder, self.report)
        try:
            async with Remote(self.config.server, self.config.token) as remote:
                engine = self._engine(remote, index, allow_mass_delete)
                if progress is not None:
                    engine.progress = progress
                return await engine.sync_once()
        finally:
            index.close()

    def _engine(self, remote: Remote, index: Index, allow_mass_delete: bool) -> Engine:
        return Engine(
            self.folder,
            self.config,
            remote,
            index,
            allow_mass_delete=allow_mass_delete,
            report=self.report,
        )

    def sync_once(self, *, allow_mass_delete: bool = False) -> SyncResult:
        return asyncio.run(self.sync(allow_mass_delete=allow_mass_delete))

    async def watch(
        self,
        stop: asyncio.Event,
        *,
        on_result: Callable[[SyncResult], None] | None = None,
        allow_mass_delete: bool = False,
    ) -> None:
        """Sync whenever the folder or the server changes, until ``stop`` is set.
        Network errors are retried with backoff; they never delete anything."""
        from linesync.client.watcher import FolderWatcher

        dirty = asyncio.Event()
        dirty.set()
        index = _open_index(self.folder, self.report)
        watcher = FolderWatcher(self.folder, dirty)
        watcher.start()
        try:
            async with Remote(self.config.server, self.config.token) as remote:
                engine = self._engine(remote, index, allow_mass_delete)
                poller = asyncio.create_task(self._poll(remote, index, dirty, stop))
                try:
                    await self._loop(engine, dirty, stop, on_result)
                finally:
                    poller.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await poller
        finally:
            watcher.stop()
            index.close()

    async def _loop(
        self,
        engine: Engine,
        dirty: asyncio.Event,
        stop: asyncio.Event,
        on_result: Callable[[SyncResult], None] | None,
    ) -> None:
        backoff = 1.0
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(WATCH_RESCAN):
                    waiter = asyncio.create_task(dirty.wait())
                    stopper = asyncio.create_task(stop.wait())
                    await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                    waiter.cancel()
                    stopper.cancel()
            if stop.is_set():
                return
            await asyncio.sleep(WATCH_DEBOUNCE)  # let a burst of saves settle
            dirty.clear()
            try:
                result = await engine.sync_once()
                backoff = 1.0
                if on_result is not None:
                    on_result(result)
                if not result.converged:
                    dirty.set()
                    await asyncio.sleep(0.5)
            except FolderBusy as exc:  # a one-off `linesync sync` runs: after it
                self.report(f"{exc}; retrying in {backoff:.0f} s")
                await _sleep_or_stop(stop, backoff)
                backoff = min(backoff * 2, 60.0)
                dirty.set()
            except RemoteUnavailable as exc:
                self.report(f"server unreachable ({exc}); retrying in {backoff:.0f} s")
                await _sleep_or_stop(stop, backoff)
                backoff = min(backoff * 2, 60.0)
                dirty.set()
            except LinesyncError as exc:
                self.report(f"sync failed: {exc.message}; retrying in {backoff:.0f} s")
                await _sleep_or_stop(stop, backoff)
                backoff = min(backoff * 2, 60.0)
                dirty.set()

    async def _poll(
        self, remote: Remote, index: Index, dirty: asyncio.Event, stop: asyncio.Event
    ) -> None:
        """Long-poll the server; wake the loop when the journal moves on."""
        backoff = 1.0
        while not stop.is_set():
            cursor = index.get("cursor")
            try:
                resp = await remote.list_changes(
                    self.config.namespace, cursor, wait=LONG_POLL, limit=1
                )
                backoff = 1.0
                if resp.entries:
                    dirty.set()
                    await asyncio.sleep(0.2)  # the sync loop moves the cursor on
            except LinesyncError:
                dirty.set()
                await _sleep_or_stop(stop, backoff)
                backoff = min(backoff * 2, 60.0)


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
