"""Power loss in the whole-system simulation.

SIGKILL keeps the kernel's page cache, so a crash never shows a missing
fsync. Here each machine's disk is a LazyFS (`tests.support.lazyfs`): a FUSE
file system that keeps what was written, created, renamed or removed in
memory until it is fsynced (a file's bytes by fsync of the file; a name by
fsync of the directory that holds it), and forgets it when the power goes.

The machines, each on its own LazyFS mount:
- the server: a data directory that it creates on its disk (SQLite database,
  WAL, pack files); nothing is made durable for it;
- each client: its whole folder (the user's files, ``.linesync/`` with the
  index, the configuration and the lock). What ``linesync init`` made (the
  folder's ``.linesync/`` and configuration) is made durable before the run:
  ``init`` itself is not under test here (tests/sim/test_lazyfs.py has it).
The observer of the final check (a new client) is on plain tmpfs.

**Where the power goes** (seeded; a separate generator, so a seed's other
choices stay the same as without power cuts):
- a client's machine, at the points where the simulation already kills
  clients: every disk call the engine makes (before and after it, and
  halfway through writing a file), the sending of each request, and the
  answer to each;
- the server's machine, before any of its disk calls (each SQLite transaction
  or query and each pack append runs as one call; the request that made it is
  then never answered), or after it answered a request (the answer is lost);
- everything at once (the house loses power): the server and every client.
Some seeds also run the server's garbage collection now and then (no grace
period: between steps no upload is in flight), so that packs are rewritten
and deleted with the power going, mid-round too.
At a cut, some unsynced changes may have reached the disk first: the pending
names of some folders, some pages of some files, in any order
(``LazyFS.tear``; for none, half or all of a seed's cuts, as drawn). Each
machine then boots from what its disk kept: the client restarts from its
index, with nothing else kept; the server reopens its database and packs. A
seed cuts the power at most `MAX_CUTS` times.

**The user's editor fsyncs its saves**: every change the simulated user makes
(a save, a rename, a delete, a new folder, a chmod) is durable at once, name
by name (the directory's other pending names stay pending). A version the user
saved can therefore only be lost through linesync.

**Invariants**, checked at each boot, after every step, and when the run
settles:
1. *Acknowledged commits survive.* After the server boots, every journal entry
   that existed when it last answered a request is there, with the same JID,
   path, kind and content; the journal keeps its identity.
2. *The server's data is consistent* (``linesync check``): every indexed chunk
   reads back whole from its pack and hashes to its id; every file entry's
   chunks are indexed and held by its namespace; JIDs are gapless up to the
   head. A torn pack tail is allowed; a location pointing into one is not.
3. *What a client's index relied on survives.* When a client boots, its index
   must open (SQLite lost no committed transaction), and for every path whose
   local view in the index matched the disk just before the cut (kind,
   content, exec bit, modification time, symlink target), the disk still
   matches it after the cut. Otherwise the next scan would read the loss as
   the user's doing and send it to every device: a file that vanished as a
   deletion, older bytes as a new edit.
4. *No partial file* at a user's path after any step, a boot included: every
   file holds bytes a user saved, the engine wrote whole, or the journal has.
5. *No temporary file outlives the next sync*: the ``.linesync-tmp-*`` files
   a client has when it boots are gone after its next whole sync.
6. The invariants of the simulation without power cuts (`tests.sim.world`),
   when the run settles: every folder and a new client agree; no version a
   user saved is lost; no ``.linesync-tmp-*`` file is left; each client's
   index matches its disk; no 5xx (a server that lost power answers
   nothing), no task failed unseen (a process that lost power sees its files
   fail with I/O errors: those are its own).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import random
import sqlite3
import stat as st
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from linesync.client.config import INDEX_FILE
from linesync.client.engine import SyncResult
from linesync.client.index import Index, IndexError_
from linesync.client.localfs import STATE_DIR, TMP_PREFIX
from linesync.protocol.schemas import Kind
from linesync.server.check import check as check_server_data
from linesync.server.gc import collect
from tests.sim.net import InlineExecutor, SimCrash, asgi_call, unavailable
from tests.sim.world import ClientLife, SimClient, SimFailure, SimServer, World, content_hash
from tests.support.lazyfs import LazyMount

MAX_CUTS = 10  # power cuts per seed, at most

# What one path is on disk, as the index's local view describes it.
DiskState = dict[str, tuple[Any, ...]]


def disk_state(folder: Path) -> DiskState:
    """path -> ("f", content hash, exec, mtime_ns) | ("d",) | ("l", target), for
    every name in ``folder`` but linesync's own state and temporary files."""
    out: DiskState = {}

    def walk(rel: str) -> None:
        base = folder / rel if rel else folder
        for name in sorted(os.listdir(base)):
            path = f"{rel}/{name}" if rel else name
            if path == STATE_DIR or name.startswith(TMP_PREFIX):
                continue
            p = folder / path
            s = os.lstat(p)
            if st.S_ISLNK(s.st_mode):
                out[path] = ("l", os.readlink(p))
            elif st.S_ISDIR(s.st_mode):
                out[path] = ("d",)
                walk(path)
            elif st.S_ISREG(s.st_mode):
                out[path] = ("f", content_hash(p.read_bytes()), bool(s.st_mode & 0o100),
                             s.st_mtime_ns)  # fmt: skip

    walk("")
    return out


def _relied(index_path: Path) -> DiskState:
    """What the index says each path is on disk (its local view)."""
    idx = Index.open(index_path)
    try:
        out: DiskState = {}
        for path, s in idx.states().items():
            local = s.local_node
            if local is None:
                continue
            if local.kind is Kind.FILE:
                out[path] = ("f", local.chash, local.exec, local.mtime_ns)
            elif local.kind is Kind.DIRECTORY:
                out[path] = ("d",)
            else:
                out[path] = ("l", local.target)
        return out
    finally:
        idx.close()


class PowerExecutor(InlineExecutor):
    """The server's executor: every SQLite call and pack append runs here, so
    the power may go before any of them."""

    def __init__(self, world: PowerWorld) -> None:
        super().__init__()
        self.world = world

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.world.maybe_cut_server(fn, args)
        return super().submit(fn, *args, **kwargs)


class PowerServer(SimServer):
    """The simulated server on its own LazyFS. After a power cut it is dead:
    nothing it was doing is answered, and it boots (from what its disk kept)
    when next asked."""

    def __init__(self, data_dir: Path, world: PowerWorld) -> None:
        super().__init__(data_dir, PowerExecutor(world))
        self.world = world
        self.dead = False
        self.booting = False

    async def handle(
        self, method: str, path: str, query: str, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> tuple[int, bytes]:
        async with self.lock:
            await self.revive()
            try:
                out = await asgi_call(self.app, method, path, query, headers, body)
            except Exception:
                if not self.dead:
                    raise
            if self.dead:  # it lost power while working on this: no answer left it
                await self.revive()
                raise unavailable("connection reset: the server lost power")
            self.world.acknowledged()
            return out

    async def collect_garbage(self) -> None:
        """One GC round with no grace (no upload is in flight between steps): a
        chunk no commit took up is dropped, every pack but the current one is
        rewritten, a pack emptied by the round before is deleted."""
        async with self.lock:
            await self.revive()
            assert self.meta is not None and self.packs is not None
            try:
                # min_live_ratio 1: every pack but the one appended to is rewritten,
                # the most moving of records and deleting of packs GC can do.
                report = await collect(
                    self.meta, self.packs, 0.0, hold_seconds=0.0, min_live_ratio=1.0
                )
            except Exception:
                if not self.dead:
                    raise
            if self.dead:  # lost power in the middle of it
                await self.revive()
                return
            self.world.log(
                f"  server gc: {report.stats.chunks_deleted} chunks dropped, "
                f"packs rewritten {len(report.packs_rewritten)}, "
                f"deleted {len(report.packs_deleted)}"
            )

    async def journal_hashes(self) -> set[bytes]:
        async with self.lock:
            await self.revive()
            assert self.meta is not None
            rows = self.meta.db.execute(
                "SELECT DISTINCT chash FROM entries WHERE chash IS NOT NULL"
            )
            return {bytes(r[0]) for r in rows}

    async def restart(self) -> None:
        """A clean restart (the power stays on while it stops and starts)."""
        async with self.lock:
            await self.revive()
            self.booting = True
            try:
                await self.stop()
                await self.start()
            finally:
                self.booting = False
        self.restarts += 1

    async def stop(self) -> None:
        if self.dead:
            self._abandon()
        else:
            await super().stop()

    def lose_power(self) -> None:
        if self.booting or self.dead:  # (a cut of everything while it boots: it boots)
            return
        self.world.cuts["server"] += 1
        self.dead = True
        self.world.cut_disk("server")

    def _abandon(self) -> None:
        """Drop the stores of a server that lost power: their files are on a
        mount that is gone, so closing them fails (and writes nothing)."""
        if self.meta is not None and self.meta._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self.meta._db.close()
            self.meta._db = None
        packs = self.packs
        if packs is not None:
            packs._closed = True
            if packs._cur is not None:
                with contextlib.suppress(OSError):
                    os.close(packs._cur.fd)
                packs._cur = None
            fds = packs._fds
            fds._closed = True
            while fds._open:
                with contextlib.suppress(OSError):
                    os.close(fds._open.popitem()[1])
        self.meta = self.packs = self.app = None

    async def revive(self) -> None:
        """Boot from what the disk kept, and check it (invariants 1 and 2)."""
        if not self.dead:
            return
        self._abandon()
        self.world.mounts["server"].start()
        self.dead = False
        self.booting = True
        try:
            await self.start()
            await self.world.check_server()
        finally:
            self.booting = False
        self.world.log("  server boots after a power cut")


class PowerWorld(World):
    """The simulated world with every machine's disk on a LazyFS."""

    power = True

    def __init__(
        self, seed: int, root: Path, *, steps: int | None = None, clients: int | None = None
    ) -> None:
        super().__init__(seed, root, steps=steps, clients=clients)
        # Its own generator: the rest of the seed's choices stay as without power cuts.
        self.prng = random.Random(f"power {seed}")
        p = self.prng.choice
        # About 100 client calls, 130 server disk calls and 25 answers a seed.
        self.p_client = p((0.02, 0.04, 0.08))  # per client disk call or request
        self.p_server_disk = p((0.003, 0.008, 0.02))  # per server disk call
        self.p_server_answer = p((0.01, 0.04, 0.08))  # per answered request
        self.p_everything = p((0.1, 0.25, 0.5))  # a client's cut takes the whole house
        self.p_torn = p((0.0, 0.5, 1.0))  # some unsynced changes reached the disk first
        self.p_gc = p((0.0, 0.05, 0.15))  # a GC round on the server, per step
        self.cuts_left = MAX_CUTS
        self.cuts: Counter[str] = Counter()
        self.chances: Counter[str] = Counter()  # points where the power could have gone
        # The data directory inside the server's disk, made by the server itself.
        self.server: PowerServer = PowerServer(root / "server" / "data", self)
        self.mounts: dict[str, LazyMount] = {}
        self.before_cut: dict[str, tuple[DiskState, bool]] = {}
        self.broken: list[str] = []
        # The temporary files a client had when it booted: its next sync removes them.
        self.leftovers: dict[str, list[str]] = {}
        self._cut_writing = False  # the next "killed while writing" is a power cut
        self._user_depth: Counter[str] = Counter()
        # The journal as of the last answered request: ns -> (identity, entries by JID).
        self.acked: dict[int, tuple[str, list[tuple[Any, ...]]]] = {}

    # -- machines --------------------------------------------------------------------

    def _quiet(self, record: logging.LogRecord) -> bool:
        """A server that lost power logs nothing: its errors are its vanished files."""
        return not self.server.dead

    async def start(self) -> None:
        logging.getLogger("linesync.server").addFilter(self._quiet)
        disks = self.root / "disks"
        for name in ["server", *(f"c{i}" for i in range(self.n_clients))]:
            mount = LazyMount(disks / name, self.root / name)
            self.mounts[name] = mount
            mount.start()
        await super().start()
        # The clients' set-up (what `linesync init` does) is made durable here; the
        # server's is its own to make durable.
        for name, mount in self.mounts.items():
            if name != "server":
                mount.sync()

    async def close(self) -> None:
        try:
            for c in self.clients:
                if c.index is not None and not self.mounts[c.name].up:
                    with contextlib.suppress(sqlite3.Error):
                        c.index.close()
                    c.index = None
            await super().close()
        finally:
            for mount in self.mounts.values():
                mount.stop()
            logging.getLogger("linesync.server").removeFilter(self._quiet)

    def dead_process_error(self, exc: BaseException | None) -> bool:
        """A task of a process that lost power failed on its vanished files."""
        if isinstance(exc, sqlite3.OperationalError):
            return "disk I/O error" in str(exc)
        return isinstance(exc, OSError) and exc.errno in (errno.ENOTCONN, errno.EIO)

    def fail(self, message: str) -> None:
        """Record a broken invariant (so a handler that swallows the exception
        cannot hide it) and raise it."""
        self.broken.append(message)
        self.log(f"  BROKEN: {message}")
        raise SimFailure(message)

    # -- the user: every change durable at once ------------------------------------------

    @contextlib.contextmanager
    def _user(self, c: SimClient) -> Iterator[None]:
        mount = self.mounts[c.name]
        outer = self._user_depth[c.name] == 0
        self._user_depth[c.name] += 1
        try:
            if outer:
                with mount.user():
                    yield
            else:
                yield
        finally:
            self._user_depth[c.name] -= 1

    def user_op(self, c: SimClient) -> None:
        if not self.mounts[c.name].up:
            return  # that machine is off
        with self._user(c):
            super().user_op(c)

    def _edit(self, c: SimClient, path: str, how: str) -> None:
        with self._user(c):
            super()._edit(c, path, how)

    def _op_finish_save(self, c: SimClient) -> str | None:
        with self._user(c):
            return super()._op_finish_save(c)

    async def act(self, exclude: SimClient | None = None) -> None:
        if self.depth == 0 and self.faults_on and self.prng.random() < self.p_gc:
            for _ in range(self.prng.choice((1, 2))):  # the second deletes what the first retired
                self.log("server gc round")
                await self.server.collect_garbage()
        await super().act(exclude)

    # -- cutting the power ----------------------------------------------------------------

    def fs_hook(self, life: ClientLife, name: str, path: str) -> None:
        if life.dead:
            raise SimCrash("dead")
        self._maybe_cut(life, f"{name} {path}")
        super().fs_hook(life, name, path)

    def write_fault(self, life: ClientLife, path: str) -> str | None:
        if self._may_cut():
            self.chances["client"] += 1
            # Fewer files are written than calls made: three times as likely here.
            if self.prng.random() < 3 * self.p_client:  # half written, then the power goes
                self._cut_writing = True
                return "crash"
        return super().write_fault(life, path)

    def died_writing(self, life: ClientLife, path: str) -> None:
        if self._cut_writing:
            self._cut_writing = False
            self._cut(life, f"writing {path}")

    async def before_request(self, life: ClientLife, method: str, path: str) -> None:
        if life.dead:
            raise SimCrash("dead")
        self._maybe_cut(life, f"sending {method} {path}")
        await super().before_request(life, method, path)

    async def after_request(self, life: ClientLife, method: str, path: str) -> None:
        if not life.dead and self._may_cut():
            self.chances["server answer"] += 1
        if not life.dead and self._may_cut() and self.prng.random() < self.p_server_answer:
            self._take_cut()
            self.log(f"  power cut: the server, after answering {life.client.name} {method} {path}")
            self.server.lose_power()
            raise unavailable("connection reset: the server lost power")
        if not life.dead:
            self._maybe_cut(life, f"answer of {method} {path}")
        await super().after_request(life, method, path)

    def maybe_cut_server(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        server = self.server
        if server.dead or server.booting or not self._may_cut():
            return
        self.chances["server disk"] += 1
        if self.prng.random() >= self.p_server_disk:
            return
        what = getattr(fn, "__qualname__", "a call")
        if args and callable(args[0]):  # a transaction: name what it runs
            what += " " + getattr(args[0], "__qualname__", "")
        self._take_cut()
        self.log(f"  power cut: the server, before {what}")
        server.lose_power()

    def _may_cut(self) -> bool:
        return self.faults_on and self.cuts_left > 0

    def _take_cut(self) -> None:
        self.cuts_left -= 1
        self.cuts["cuts"] += 1

    def _maybe_cut(self, life: ClientLife, where: str) -> None:
        if not self._may_cut():
            return
        self.chances["client"] += 1
        if self.prng.random() < self.p_client:
            self._cut(life, where)

    def _cut(self, life: ClientLife, where: str) -> None:
        """The power goes at ``life``'s machine (or everywhere): raises SimCrash."""
        self._take_cut()
        c = life.client
        everything = self.prng.random() < self.p_everything
        self.log(f"  power cut: {'everything' if everything else c.name}, at {c.name} {where}")
        self._cut_client(c)
        life.die()
        if everything:
            self.cuts["everything"] += 1
            self.server.lose_power()
            for d in self.clients:
                if d is c:
                    continue
                self._cut_client(d)
                if d.syncing and d.life is not None:
                    d.life.die()  # its sync ends on its next call, and boots it
                else:
                    self._restart_client(d)
        raise SimCrash(f"power cut at {where}")

    def _cut_client(self, c: SimClient) -> None:
        self.cuts["client"] += 1
        self.before_cut[c.name] = (disk_state(c.folder), c.index is not None)
        self.cut_disk(c.name)

    def cut_disk(self, name: str) -> None:
        tear = None
        if self.prng.random() < self.p_torn:
            tear = self.prng.randrange(1 << 32)
            self.cuts["torn"] += 1
            self.log(f"  {name}: some unsynced changes reached the disk first")
        self.mounts[name].cut(tear)

    def _restart_client(self, c: SimClient) -> None:
        mount = self.mounts.get(c.name)
        if mount is not None and not mount.up:
            if c.index is not None:  # the dead process's connection: its files are gone
                with contextlib.suppress(sqlite3.Error):
                    c.index.close()
                c.index = None
            mount.start()
            self.log(f"  {c.name} boots after a power cut")
            self.check_client(c)
        super()._restart_client(c)

    async def sync(self, c: SimClient) -> SyncResult | None:
        try:
            result = await super().sync(c)
            if result is not None:  # a whole sync: it scanned the folder
                left = [p for p in self.leftovers.pop(c.name, []) if (c.folder / p).exists()]
                if left:
                    self.fail(f"{c.name}: temporary files a power cut left are still there: {left}")
            return result
        except SimFailure:
            raise
        except Exception as exc:
            # A process that lost power fails on its files (its index): it is dead.
            if c.life is None or not c.life.dead or not self.dead_process_error(exc):
                raise
            self._restart_client(c)
            return None

    # -- invariants --------------------------------------------------------------------

    def acknowledged(self) -> None:
        """The server answered a request: what its journal holds now must survive."""
        meta = self.server.meta
        assert meta is not None
        for ns_id, journal, head in meta.db.execute("SELECT id, journal, head FROM namespaces"):
            _, entries = self.acked.setdefault(ns_id, (journal, []))
            if head > len(entries):
                entries.extend(
                    tuple(r)
                    for r in meta.db.execute(
                        "SELECT jid, path, kind, chash FROM entries WHERE ns_id=? AND jid>?"
                        " ORDER BY jid",
                        (ns_id, len(entries)),
                    )
                )

    async def check_server(self) -> None:
        """Invariants 1 and 2, on a server that just booted."""
        meta, packs = self.server.meta, self.server.packs
        assert meta is not None and packs is not None
        for ns_id, (journal, entries) in self.acked.items():
            row = meta.db.execute(
                "SELECT journal, head FROM namespaces WHERE id=?", (ns_id,)
            ).fetchone()
            if row is None or row[0] != journal:
                self.fail(f"after a power cut namespace {ns_id} is gone or has a new journal")
            have = [
                tuple(r)
                for r in meta.db.execute(
                    "SELECT jid, path, kind, chash FROM entries WHERE ns_id=? AND jid<=?"
                    " ORDER BY jid",
                    (ns_id, len(entries)),
                )
            ]
            if have != entries:
                lost = [e for e in entries if e not in have]
                self.fail(
                    f"after a power cut the server lost {len(lost)} acknowledged entries "
                    f"of namespace {ns_id} (head {row[1]}, was {len(entries)}): {lost[:5]}"
                )
        problems = await check_server_data(meta, packs)
        if problems:
            self.fail(f"after a power cut the server's data is inconsistent: {problems[:5]}")

    def check_client(self, c: SimClient) -> None:
        """Invariant 3 (and what 5 needs), on a client that just booted."""
        before, had_index = self.before_cut.pop(c.name)
        after = disk_state(c.folder)
        self.leftovers[c.name] = sorted(
            str(p.relative_to(c.folder))
            for p in c.folder.rglob(TMP_PREFIX + "*")
            if STATE_DIR not in p.relative_to(c.folder).parts
        )
        index_path = c.folder / STATE_DIR / INDEX_FILE
        if not index_path.exists():
            if had_index:
                self.fail(f"{c.name}: the index is gone after a power cut")
            return
        try:
            relied = _relied(index_path)
        except IndexError_ as exc:
            if not had_index:  # damaged before (a fault of its own), not yet rebuilt
                return
            self.fail(f"{c.name}: the index is unreadable after a power cut: {exc}")
        for path, want in sorted(relied.items()):
            if before.get(path) == want and after.get(path) != want:
                self.fail(
                    f"{c.name}/{path}: the index relied on {_show(want)}; after a power cut "
                    f"the disk has {_show(after.get(path))} (partial or lost)"
                )

    async def check_no_partial_files(self) -> None:
        for c in self.clients:  # every machine is up at the end of a step
            if not self.mounts[c.name].up:
                self._restart_client(c)
        if self.broken:
            raise SimFailure(self.broken[0])
        await super().check_no_partial_files()

    async def check(self) -> None:
        await super().check()
        if self.broken:
            raise SimFailure(self.broken[0])


def _show(state: tuple[Any, ...] | None) -> str:
    if state is None:
        return "nothing"
    if state[0] == "f":
        return f"a file {state[1].hex()[:12]} exec={state[2]} mtime={state[3]}"
    return "a folder" if state[0] == "d" else f"a symlink to {state[1]}"
