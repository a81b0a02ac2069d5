"""A deterministic simulation of the whole system, in the spirit of Dropbox's
Trinity: one server and several clients in one process and one event loop,
every choice drawn from one seeded random generator.

- The server is the real ASGI application on real SQLite and pack stores;
  its executors run inline, so the loop's order of events is the seed's.
- Each client is the real `Engine` on a real folder (on tmpfs), reached
  through `SimRemote` (lost, failed and reordered answers; server restarts)
  and `SimFS` (crashes at any disk call, a full disk, files saved again
  while the engine reads them).
- A user edits each folder: files, folders, symlinks, modes, editors' save
  patterns, case-only renames; clients go offline and come back.

After the run settles, `check` asserts the invariants of
`docs/RELIABILITY.md`: every folder and the server agree, no version a user
saved is lost, no partial file is visible at a user's path, and each
client's index matches its disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import hashlib
import os
import random
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from linesync.client import chunksource, committing
from linesync.client import engine as engine_module
from linesync.client import planner as pl
from linesync.client.api import _open_index
from linesync.client.config import INDEX_FILE, FolderConfig
from linesync.client.engine import Engine, MassDelete, SyncResult
from linesync.client.index import Index
from linesync.client.localfs import STATE_DIR, TMP_PREFIX
from linesync.client.model import PathState
from linesync.client.transfer import split
from linesync.core import blocklist as bl
from linesync.protocol.errors import Code, LinesyncError
from linesync.protocol.schemas import Kind
from linesync.server.app import create_app
from linesync.server.config import ServerConfig
from linesync.server.stores.base import MetadataStore
from linesync.server.stores.packs import DiskPackStore
from linesync.server.stores.postgres import PostgresStore
from linesync.server.stores.sqlite import SqliteStore
from tests.scenarios.helpers import tree as scenario_tree
from tests.sim.net import InlineExecutor, SimCrash, SimRemote, asgi_call, unavailable, yield_times
from tests.sim.simfs import SimFS

FILE_NAMES = ("a.txt", "b.md", "notes.txt", "todo", "x.bin", "Recipe.md", "c.txt", "log.txt")
DIR_NAMES = ("d", "e", "sub", "Docs")
WORDS = ("salt", "flour", "egg", "milk", "butter", "sugar", "yeast", "water", "oil", "lemon")
START_NS = 1_700_000_000 * 10**9


class SimFailure(AssertionError):
    world: World | None = None


@dataclass
class Faults:
    """Probabilities, drawn per seed (0 for some: each seed has its own mix)."""

    fail_request: float = 0.0  # the request never reaches the server
    lose_response: float = 0.0  # the server applied it; the answer is lost
    reorder: float = 0.0  # the answer comes back a few turns late
    crash: float = 0.0  # the client dies at a network or disk call
    server_restart: float = 0.0  # the server restarts after answering (answer lost)
    enospc: float = 0.0  # writing a file fails: disk full
    edit_under: float = 0.0  # the user saves again while the engine reads
    interfere: float = 0.0  # before a request: users and other clients act
    index_loss: float = 0.0  # a crashed client's index is gone or damaged

    @classmethod
    def draw(cls, rng: random.Random) -> Faults:
        def p(*choices: float) -> float:
            return rng.choice(choices)

        return cls(
            fail_request=p(0, 0.02, 0.08),
            lose_response=p(0, 0.02, 0.08),
            reorder=p(0, 0.1, 0.4),
            crash=p(0, 0, 0.005, 0.02),
            server_restart=p(0, 0, 0.01),
            enospc=p(0, 0, 0.05),
            edit_under=p(0, 0.02, 0.1),
            interfere=p(0, 0.05, 0.15),
            index_loss=p(0, 0, 0.3),
        )


# -- the server ------------------------------------------------------------------


class SimServer:
    def __init__(self, data_dir: Path, executor: InlineExecutor, db_url: str | None = None) -> None:
        """``db_url``: metadata in that PostgreSQL database instead of SQLite
        (its queries go over a real connection: the order of events is then
        the seed's only as far as the database answers in time)."""
        self.executor = executor
        self.db_url = db_url
        self.config = ServerConfig(
            data_dir=data_dir, rate_per_second=1e9, rate_burst=1e9, gc_grace_seconds=1e9
        )
        self.lock = asyncio.Lock()
        self.meta: MetadataStore | None = None
        self.packs: DiskPackStore | None = None
        self.app: Any = None
        self.restarts = 0

    async def start(self) -> None:
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        if self.db_url is not None:
            self.meta = await PostgresStore.open(self.db_url, max_size=4)
        else:
            self.meta = await SqliteStore.open(self.config.meta_path, self.executor)
        self.packs = DiskPackStore(self.config.packs_dir, executor=self.executor)
        self.app = create_app(self.config, self.meta, self.packs, run_gc=False)

    async def stop(self) -> None:
        if self.packs is not None:
            await self.packs.close()
        if self.meta is not None:
            await self.meta.close()
        self.meta = self.packs = self.app = None

    async def restart(self) -> None:
        async with self.lock:
            await self.stop()
            await self.start()
        self.restarts += 1

    async def handle(
        self, method: str, path: str, query: str, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> tuple[int, bytes]:
        async with self.lock:  # one request at a time, in arrival order
            return await asgi_call(self.app, method, path, query, headers, body)

    async def journal_hashes(self) -> set[bytes]:
        """Every content the journal holds. Under the lock: a dead client's
        last task may be restarting the server right now."""
        async with self.lock:
            query = "SELECT DISTINCT chash FROM entries WHERE chash IS NOT NULL"
            if isinstance(self.meta, PostgresStore):
                return {bytes(r[0]) for r in await self.meta.pool.fetch(query)}
            assert isinstance(self.meta, SqliteStore)
            return {bytes(r[0]) for r in self.meta.db.execute(query)}


# -- the clients -----------------------------------------------------------------


@dataclass
class SimClient:
    name: str
    folder: Path
    token: str
    config: FolderConfig | None = None
    index: Index | None = None
    life: ClientLife | None = None
    online: bool = True
    syncing: bool = False
    confirm_mass_delete: bool = False
    # The versions this user saved and has not replaced since: path -> content hash.
    held: dict[str, bytes] = field(default_factory=dict)
    deleted_since_sync: int = 0
    deleted_earlier: int = 0  # what the user deleted before that
    pending_saves: list[tuple[str, str]] = field(default_factory=list)  # (temp, dest)


class ClientLife:
    """One run of a client process: when it dies, every call it makes fails."""

    def __init__(self, client: SimClient) -> None:
        self.client = client
        self.dead = False

    def die(self) -> None:
        self.dead = True


class SimEngine(Engine):
    """The real engine; the world hears which local versions went into a merge
    (as the merge writes, so a crash right after still counts)."""

    world: World
    fs: SimFS

    async def _merge(self, op: pl.Merge, result: SyncResult) -> None:
        self.fs.merging = op.local.node.chash
        try:
            await super()._merge(op, result)
        finally:
            self.fs.merging = None

    def _visible_states(self) -> tuple[dict[str, PathState], bool]:
        """As the engine's, and a check that the plan made from only the paths
        whose views disagree is the plan every path's states make."""
        states, partial = super()._visible_states()
        if partial:
            every = {
                p: s
                for p, s in self.index.states().items()
                if not self.ignore.ignored(p, self._is_dir(s)) and p not in self.unstable
            }
            how = {"read_only": self.config.read_only, "avoid": frozenset(self.refused_moves)}
            some, whole = pl.plan(states, **how), pl.plan(every, **how)
            if some.ops != whole.ops or some.kept_locally != whole.kept_locally:
                raise SimFailure(
                    f"the plan of the paths that disagree ({some.ops}, kept {some.kept_locally}) "
                    f"is not the whole plan ({whole.ops}, kept {whole.kept_locally})"
                )
        return states, partial

    async def _conflict(self, op: pl.Conflict, result: SyncResult) -> None:
        merging, self.fs.merging = self.fs.merging, None  # a conflict copy merges nothing
        try:
            await super()._conflict(op, result)
        finally:
            self.fs.merging = merging


def content_hash(data: bytes) -> bytes:
    ids, _ = split(data)
    return bl.content_hash(ids)


# -- the world -------------------------------------------------------------------


class World:
    power = False  # tests.sim.power.PowerWorld: every machine's disk can lose power

    def __init__(
        self,
        seed: int,
        root: Path,
        *,
        steps: int | None = None,
        clients: int | None = None,
        db_url: str | None = None,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.root = root
        self.faults = Faults.draw(self.rng)
        self.n_clients = self.rng.choice((2, 2, 3))
        self.steps = self.rng.randint(20, 45)
        # Tiny batches for half the seeds: many requests in flight at once, so
        # answers really come back out of order and batches fail half done.
        self.small_batches = self.rng.random() < 0.5
        self.n_clients = clients or self.n_clients
        self.steps = steps or self.steps
        self.executor = InlineExecutor()
        self.server = SimServer(root / "server", self.executor, db_url)
        self.clients: list[SimClient] = []
        self.faults_on = True
        self.depth = 0  # interference nests once at most
        self.clock_ns = START_NS
        self.trace: list[str] = []
        self.saved: set[bytes] = set()  # every content a user saved
        self.orphans: set[bytes] = set()  # saved versions linesync replaced: must survive
        self.written: set[bytes] = set()  # every content the engine wrote whole
        self.errors: list[str] = []
        self.origin: dict[bytes, str] = {}  # where each saved version was first saved
        # A local version merged with the server's: what the merge made of it.
        self.merged_into: dict[bytes, set[bytes]] = {}
        self.last_merge: tuple[bytes, bytes, bytes] | None = None  # base, local, result
        self._ids = 0

    # -- small services for SimFS and SimRemote -------------------------------

    def next_id(self) -> int:
        self._ids += 1
        return self._ids

    def now(self) -> int:
        return self.clock_ns

    def tick(self) -> int:
        self.clock_ns += self.rng.randint(1, 5) * 10**9
        return self.clock_ns

    def log(self, line: str) -> None:
        self.trace.append(line)

    def produced(self, data: bytes, merged_from: bytes | None) -> None:
        h = content_hash(data)
        self.written.add(h)
        if merged_from is None or merged_from == h or self.last_merge is None:
            return
        base, local, out = self.last_merge
        # A merge keeps the local version only if every line it added or
        # changed is in the result (checked here without the merge's own code).
        if out == data and content_hash(local) == merged_from and has_changes(base, local, data):
            self.merged_into.setdefault(merged_from, set()).add(h)

    def _kill(self, life: ClientLife, where: str) -> None:
        life.die()
        self.log(f"  crash {life.client.name} at {where}")
        raise SimCrash(where)

    def fs_hook(self, life: ClientLife, name: str, path: str) -> None:
        if life.dead:
            raise SimCrash("dead")
        if self.faults_on and self.rng.random() < self.faults.crash:
            self._kill(life, f"{name} {path}")

    def write_fault(self, life: ClientLife, path: str) -> str | None:
        if not self.faults_on:
            return None
        r = self.rng.random()
        if r < self.faults.crash * 3:
            self.log(f"  crash {life.client.name} writing {path}")
            return "crash"
        if r < self.faults.crash * 3 + self.faults.enospc:
            self.log(f"  disk full on {life.client.name} writing {path}")
            return "enospc"
        return None

    def died_writing(self, life: ClientLife, path: str) -> None:
        """The process died halfway through writing a file (power mode: the
        power may have gone then)."""

    def maybe_edit_under(self, life: ClientLife, path: str) -> None:
        if self.faults_on and self.depth == 0 and self.rng.random() < self.faults.edit_under:
            self.log(f"  {life.client.name} saves {path} while it is read")
            self._edit(life.client, path, "append")

    async def before_request(self, life: ClientLife, method: str, path: str) -> None:
        c = life.client
        if life.dead:
            raise SimCrash("dead")
        if not c.online:
            raise unavailable("offline")
        if not self.faults_on:
            return
        f, rng = self.faults, self.rng
        if self.depth == 0 and rng.random() < f.interfere:
            self.depth += 1
            try:
                self.log(f"  interference before {c.name} {method} {path}")
                for _ in range(rng.randint(1, 3)):
                    await self.act(exclude=c)
            finally:
                self.depth -= 1
            if life.dead:
                raise SimCrash("dead")
        if rng.random() < f.crash:
            self._kill(life, f"sending {method} {path}")
        if rng.random() < f.fail_request:
            self.log(f"  {c.name} {method} {path}: refused")
            raise unavailable("connection refused")

    async def after_request(self, life: ClientLife, method: str, path: str) -> None:
        if life.dead:  # died while the request was on its way: the server applied it
            raise SimCrash("dead")
        if not self.faults_on:
            return
        f, rng = self.faults, self.rng
        name = life.client.name
        if rng.random() < f.server_restart:
            self.log(f"  server restarts after {name} {method} {path}")
            # The server's restart is its own: a client task cancelled meanwhile
            # must not leave it half done.
            await asyncio.shield(self.server.restart())
            raise unavailable("connection reset by a restart")
        if rng.random() < f.lose_response:
            self.log(f"  {name} {method} {path}: answer lost")
            raise unavailable("connection reset")
        if rng.random() < f.crash:
            self._kill(life, f"answer of {method} {path}")
        if rng.random() < f.reorder:
            await yield_times(rng.randint(1, 8))
            if life.dead:
                raise SimCrash("dead")

    # -- set-up ------------------------------------------------------------------

    async def start(self) -> None:
        self.faults_on = False
        await self.server.start()
        meta = self.server.meta
        assert meta is not None
        await meta.create_user("sim")
        for i in range(self.n_clients + 1):  # the last one is the observer of `check`
            token = await meta.create_token("sim", f"dev{i}", "rw")
            folder = self.root / f"c{i}"
            (folder / STATE_DIR).mkdir(parents=True)
            c = SimClient(f"c{i}", folder, token)
            life = ClientLife(c)
            me = await SimRemote(self, life, token).me()
            ns = next(n for n in me.namespaces if n.name == me.user)
            c.config = FolderConfig("http://sim", token, ns.id, ns.name, me.device, False)
            c.config.save(folder)
            self.clients.append(c)
        self.observer = self.clients.pop()
        self.faults_on = True

    async def close(self) -> None:
        for c in [*self.clients, self.observer]:
            if c.index is not None:
                c.index.close()
                c.index = None
        await self.server.stop()

    # -- syncing -------------------------------------------------------------------

    async def sync(self, c: SimClient) -> SyncResult | None:
        if c.syncing:
            return None
        c.syncing = True
        life = c.life = ClientLife(c)
        deleted_before = c.deleted_since_sync
        try:
            if c.index is None:
                folder = str(c.folder)  # the run's own path: the trace leaves it out
                c.index = _open_index(
                    c.folder, lambda msg: self.log(f"  {c.name}: " + msg.replace(folder, "."))
                )
            assert c.config is not None
            engine = SimEngine(
                c.folder,
                c.config,
                SimRemote(self, life, c.token),
                c.index,
                allow_mass_delete=c.confirm_mass_delete,
                fs=SimFS(self, life),
                clock=self.now,
            )
            engine.world = self
            try:
                r = await engine.sync_once()
            except SimCrash:
                self._restart_client(c)
                return None
            except MassDelete as exc:
                self.log(f"  {c.name}: mass delete of {exc.count} refused")
                if exc.count > c.deleted_since_sync:
                    raise SimFailure(
                        f"{c.name}: mass-delete guard counts {exc.count} deletions; "
                        f"the user removed {c.deleted_since_sync} paths"
                    ) from exc
                # ...nor, with the ones it sent just before, more than the user ever made.
                if exc.count + exc.recent > c.deleted_since_sync + c.deleted_earlier:
                    raise SimFailure(
                        f"{c.name}: mass-delete guard counts {exc.count} + {exc.recent} "
                        f"deletions; the user removed "
                        f"{c.deleted_since_sync + c.deleted_earlier} paths in all"
                    ) from exc
                c.confirm_mass_delete = True  # the user confirms; the next sync goes on
                return None
            except LinesyncError as exc:
                if exc.code is not Code.UNAVAILABLE:
                    raise SimFailure(f"{c.name}: unexpected error {exc.code}: {exc}") from exc
                self.log(f"  {c.name}: {exc.code.value}")
                return None
            if life.dead:  # an orphaned task died after the result: treat as a crash
                self._restart_client(c)
                return None
            c.confirm_mass_delete = False
            if r.converged:  # what the user deleted meanwhile is still to come
                c.deleted_since_sync -= deleted_before
                c.deleted_earlier += deleted_before
            self.log(
                f"  {c.name}: converged={r.converged} up={r.uploaded} down={r.downloaded} "
                f"del={r.deleted_local}/{r.deleted_remote} mv={r.moved} merged={r.merged} "
                f"conflicts={sorted(r.conflicts)} rounds={r.rounds}"
            )
            return r
        finally:
            c.syncing = False

    def _restart_client(self, c: SimClient) -> None:
        """The process died: what it had in memory is gone; its index is what
        it committed (the connection closes with its open transaction)."""
        if c.index is not None:
            with contextlib.suppress(sqlite3.Error):
                c.index.close()
            c.index = None
        self.log(f"  {c.name} restarts")
        if self.faults_on and self.rng.random() < self.faults.index_loss:
            index = c.folder / STATE_DIR / INDEX_FILE
            if self.rng.random() < 0.5:
                self.log(f"  {c.name}'s index is lost")
                for suffix in ("", "-wal", "-shm"):
                    index.with_name(index.name + suffix).unlink(missing_ok=True)
            else:
                self.log(f"  {c.name}'s index is damaged")
                for suffix in ("-wal", "-shm"):
                    index.with_name(index.name + suffix).unlink(missing_ok=True)
                index.write_bytes(b"this is not a database" * 100)

    # -- the user ------------------------------------------------------------------

    def _files(self, c: SimClient) -> list[str]:
        return [p for p, (kind, *_) in tree(c.folder, hashed=False).items() if kind == "f"]

    def _dirs(self, c: SimClient) -> list[str]:
        return [p for p, (kind, *_) in tree(c.folder, hashed=False).items() if kind == "d"]

    def _links(self, c: SimClient) -> list[str]:
        return [p for p, (kind, *_) in tree(c.folder, hashed=False).items() if kind == "l"]

    def _content(self, big: bool = False, binary: bool = False) -> bytes:
        rng = self.rng
        if binary:
            return rng.randbytes(rng.randint(1, 40_000))
        n = rng.randint(150, 600) if big else rng.randint(0, 12)
        return "".join(
            f"{rng.choice(WORDS)} {rng.randint(0, 999)} {rng.choice(WORDS)}\n" for _ in range(n)
        ).encode()

    def _supersede(self, c: SimClient, path: str) -> None:
        """The user replaces or removes the file at ``path``. The version they
        saved there is theirs to drop if it is still there; if linesync put
        something else there, theirs must live on elsewhere. Whatever the file
        holds now (maybe a version of theirs linesync moved here, say into a
        conflict copy) is dropped by the user, who saw it."""
        cur = file_hash(c.folder / path)
        held = c.held.pop(path, None)
        if held is not None and held != cur:
            self.orphans.add(held)
        if cur is not None and held != cur:
            # ...and with it the versions merged into it: the user saw their
            # changes there.
            def seen(v: bytes) -> bool:
                return self._kept(v, {cur}, set())

            self.orphans = {v for v in self.orphans if not seen(v)}
            same = next((p for p, h in c.held.items() if h == cur), None)
            for p in [p for p, h in c.held.items() if p == same or (h != cur and seen(h))]:
                del c.held[p]

    def _save(self, c: SimClient, path: str, data: bytes, *, exec: bool | None = None) -> None:
        p = c.folder / path
        self._supersede(c, path)
        mode = None if exec is None else (0o755 if exec else 0o644)
        if p.is_symlink():
            p.unlink()
        with open(p, "wb") as f:
            f.write(data)
        if mode is not None:
            os.chmod(p, mode)
        t = self.tick()
        os.utime(p, ns=(t, t))
        h = content_hash(data)
        c.held[path] = h
        self.saved.add(h)
        self.origin.setdefault(h, f"{c.name}:{path} at event {len(self.trace)}")

    def _edit(self, c: SimClient, path: str, how: str) -> None:
        p = c.folder / path
        try:
            old = p.read_bytes()
        except OSError:
            return
        rng = self.rng
        lines = old.splitlines(keepends=True)
        new_line = f"{rng.choice(WORDS)} edited {rng.randint(0, 10**6)}\n".encode()
        if how == "append" or not lines:
            data = old + new_line
        elif how == "line":
            i = rng.randrange(len(lines))
            lines[i] = new_line
            data = b"".join(lines)
        elif how == "many":
            for _ in range(rng.randint(2, 6)):
                i = rng.randrange(len(lines))
                lines[i] = f"{rng.choice(WORDS)} {rng.randint(0, 10**6)}\n".encode()
            data = b"".join(lines)
        else:  # truncate
            data = old[: rng.randint(0, len(old))]
        self._save(c, path, data)

    def _rename(self, c: SimClient, src: str, dst: str) -> None:
        """Rename (file, symlink or folder), keeping what the user holds with it."""
        if (c.folder / dst).is_file():  # an editor's save replaces the file there
            self._supersede(c, dst)
        moving = {p: h for p, h in c.held.items() if p == src or p.startswith(src + "/")}
        # Paths the user removed, for the mass-delete guard (a move it does not
        # recognise as one, say of an edited file, is a delete there).
        c.deleted_since_sync += sum(
            1
            for p, (kind, *_) in tree(c.folder, hashed=False).items()
            if kind != "d" and (p == src or p.startswith(src + "/"))
        )
        os.rename(c.folder / src, c.folder / dst)
        for p, h in moving.items():
            del c.held[p]
            new = dst + p[len(src) :]
            if file_hash(c.folder / new) == h:
                c.held[new] = h
            else:
                self.orphans.add(h)

    def _new_path(self, c: SimClient, names: tuple[str, ...]) -> str:
        parent = self.rng.choice(["", *self._dirs(c)])
        name = self.rng.choice(names)
        return f"{parent}/{name}" if parent else name

    def user_op(self, c: SimClient) -> None:
        """One random action of the user at ``c``."""
        rng = self.rng
        files, dirs = self._files(c), self._dirs(c)
        ops: list[tuple[int, Callable[[], str | None]]] = [
            (14, lambda: self._op_create(c)),
            (16 if files else 0, lambda: self._op_edit(c, files)),
            (5 if files else 0, lambda: self._op_delete(c, files)),
            (6 if files else 0, lambda: self._op_rename(c, files)),
            (2 if files else 0, lambda: self._op_case(c, files)),
            (4 if files else 0, lambda: self._op_editor_save(c, files)),
            (3 if files else 0, lambda: self._op_chmod(c, files)),
            (2, lambda: self._op_symlink(c)),
            (4, lambda: self._op_mkdir(c)),
            (2 if dirs else 0, lambda: self._op_rmtree(c, dirs)),
            (4 if dirs else 0, lambda: self._op_move_dir(c, dirs)),
            (3 if c.pending_saves else 0, lambda: self._op_finish_save(c)),
            (1, lambda: self._op_many_files(c)),
            (1 if len(files) >= 10 else 0, lambda: self._op_wipe(c)),
        ]
        weights = [w for w, _ in ops]
        _, fn = rng.choices(ops, weights=weights)[0]
        try:
            what = fn()
        except OSError as exc:  # e.g. the parent vanished: a user's action can fail too
            what = f"failed: {exc.strerror}"
        if what:
            self.log(f"{c.name}: {what}")

    def _op_create(self, c: SimClient) -> str | None:
        path = self._new_path(c, FILE_NAMES)
        p = c.folder / path
        if p.exists() or p.is_symlink():
            return None
        binary = path.endswith(".bin")
        self._save(c, path, self._content(self.rng.random() < 0.15, binary),
                   exec=self.rng.random() < 0.1)  # fmt: skip
        return f"create {path}"

    def _op_edit(self, c: SimClient, files: list[str]) -> str:
        path = self.rng.choice(files)
        how = self.rng.choices(("line", "many", "append", "truncate"), (10, 4, 5, 3))[0]
        self._edit(c, path, how)
        return f"edit {path} ({how})"

    def _op_delete(self, c: SimClient, files: list[str]) -> str:
        path = self.rng.choice(files + self._links(c))
        self._supersede(c, path)
        (c.folder / path).unlink()
        c.deleted_since_sync += 1
        return f"delete {path}"

    def _op_rename(self, c: SimClient, files: list[str]) -> str | None:
        src = self.rng.choice(files)
        dst = self._new_path(c, FILE_NAMES)
        if (c.folder / dst).exists() or (c.folder / dst).is_symlink() or dst == src:
            return None
        self._rename(c, src, dst)
        return f"rename {src} -> {dst}"

    def _op_case(self, c: SimClient, files: list[str]) -> str | None:
        src = self.rng.choice(files)
        head, _, name = src.rpartition("/")
        flipped = name.swapcase()
        dst = f"{head}/{flipped}" if head else flipped
        if dst == src or (c.folder / dst).exists():
            return None
        self._rename(c, src, dst)
        return f"case rename {src} -> {dst}"

    def _op_editor_save(self, c: SimClient, files: list[str]) -> str:
        """Write a temporary file, then rename it over the original: at once
        (the temp name ignored, like vim's ``name~``) or later (an unignored
        ``.goutputstream-*`` a scan may see)."""
        path = self.rng.choice(files)
        head, _, name = path.rpartition("/")
        later = self.rng.random() < 0.4
        tmp_name = f".goutputstream-{self.next_id()}" if later else f"{name}~"
        tmp = f"{head}/{tmp_name}" if head else tmp_name
        try:
            old = (c.folder / path).read_bytes()
        except OSError:
            return f"editor save {path}: gone"
        self._save(c, tmp, old + f"saved {self.rng.randint(0, 10**6)}\n".encode())
        if later:
            c.pending_saves.append((tmp, path))
            return f"editor writes {tmp} for {path}"
        self._rename(c, tmp, path)
        return f"editor save {path} via {tmp}"

    def _op_finish_save(self, c: SimClient) -> str | None:
        tmp, path = c.pending_saves.pop(0)
        if not (c.folder / tmp).is_file() or not (c.folder / path).parent.is_dir():
            return None
        if (c.folder / path).is_dir():
            return None
        self._rename(c, tmp, path)
        return f"editor renames {tmp} -> {path}"

    def _op_chmod(self, c: SimClient, files: list[str]) -> str:
        path = self.rng.choice(files)
        p = c.folder / path
        mode = p.stat().st_mode
        os.chmod(p, (mode ^ 0o111) & 0o777)
        return f"chmod {path}"

    def _op_symlink(self, c: SimClient) -> str | None:
        path = self._new_path(c, ("link", "to-notes", "Link"))
        p = c.folder / path
        if p.exists() or p.is_symlink():
            return None
        target = self.rng.choice(("a.txt", "../b.md", "d/notes.txt", "/etc/hostname", "nowhere"))
        os.symlink(target, p)
        return f"symlink {path} -> {target}"

    def _op_mkdir(self, c: SimClient) -> str | None:
        path = self._new_path(c, DIR_NAMES)
        p = c.folder / path
        if p.exists() or p.is_symlink():
            return None
        p.mkdir()
        return f"mkdir {path}"

    def _op_rmtree(self, c: SimClient, dirs: list[str]) -> str:
        path = self.rng.choice(dirs)
        inside = [p for p in self._files(c) if p.startswith(path + "/")]
        for p in sorted(set(inside) | {p for p in c.held if p.startswith(path + "/")}):
            self._supersede(c, p)
        c.deleted_since_sync += sum(1 for p in self._files(c) if p.startswith(path + "/"))
        c.deleted_since_sync += sum(1 for p in self._links(c) if p.startswith(path + "/"))
        shutil.rmtree(c.folder / path)
        return f"rm -r {path}"

    def _op_many_files(self, c: SimClient) -> str | None:
        """A batch of new files at once (an unpacked archive)."""
        folder = self._new_path(c, ("bulk", "archive"))
        if (c.folder / folder).exists() or (c.folder / folder).is_symlink():
            return None
        (c.folder / folder).mkdir()
        n = self.rng.randint(8, 20)
        for i in range(n):
            self._save(c, f"{folder}/f{i:02}.txt", self._content())
        return f"unpack {n} files into {folder}"

    def _op_wipe(self, c: SimClient) -> str:
        """Everything goes at once (rm -rf *): the mass-delete guard's case."""
        for name in sorted(os.listdir(c.folder)):
            if name == STATE_DIR:
                continue
            p = c.folder / name
            if p.is_dir() and not p.is_symlink():
                self._op_rmtree(c, [name])
            else:
                self._supersede(c, name)
                p.unlink()
                c.deleted_since_sync += 1
        return "rm -rf *"

    def _op_move_dir(self, c: SimClient, dirs: list[str]) -> str | None:
        src = self.rng.choice(dirs)
        dst = self._new_path(c, DIR_NAMES)
        if dst == src or dst.startswith(src + "/") or (c.folder / dst).exists():
            return None
        self._rename(c, src, dst)
        return f"move folder {src} -> {dst}"

    # -- the run -------------------------------------------------------------------

    async def act(self, exclude: SimClient | None = None) -> None:
        """One step: a user acts, a client syncs, or the world changes."""
        rng = self.rng
        choice = rng.choices(("user", "sync", "offline", "restart"), (55, 40, 4, 1))[0]
        c = rng.choice(self.clients)
        if choice == "user":
            self.user_op(c)
        elif choice == "sync" and c is not exclude:
            self.log(f"sync {c.name}")
            await self.sync(c)
        elif choice == "offline" and self.faults_on:
            c.online = not c.online
            self.log(f"{c.name} {'online' if c.online else 'offline'}")
        elif choice == "restart" and self.faults_on and self.depth == 0:
            self.log("server restarts")
            await self.server.restart()

    async def run(self) -> None:
        await self.start()
        try:
            for step in range(self.steps):
                self.log(f"-- step {step}")
                await self.act()
                await self.check_no_partial_files()
            await self.settle()
            await self.check()
        finally:
            await self.close()

    async def settle(self) -> None:
        """Faults off, everyone online, pending saves finished: sync until quiet."""
        self.log("-- settle")
        self.faults_on = False
        for c in self.clients:
            c.online = True
            while c.pending_saves:
                what = self._op_finish_save(c)
                if what:
                    self.log(f"{c.name}: {what}")
        for _ in range(12):
            quiet = True
            for c in self.clients:
                r = await self.sync(c)
                if r is None or not r.converged or _active(r):
                    quiet = False
            if quiet:
                return
        raise SimFailure("the clients did not settle in 12 passes")

    # -- invariants ----------------------------------------------------------------

    async def check_no_partial_files(self) -> None:
        known = self.saved | self.written | await self.server.journal_hashes()
        for c in self.clients:
            for path, (kind, h, _) in tree(c.folder).items():
                if kind == "f" and h not in known:
                    raise SimFailure(f"{c.name}/{path}: holds bytes no one saved (partial?)")

    async def check(self) -> None:
        await self.check_no_partial_files()
        trees = {c.name: tree(c.folder) for c in self.clients}
        first = self.clients[0].name
        for name, t in trees.items():
            if t != trees[first]:
                raise SimFailure(f"{name} and {first} differ: {_diff(t, trees[first])}")
        for c in self.clients:
            leftovers = [p for p in _all_names(c.folder) if TMP_PREFIX in p]
            if leftovers:
                raise SimFailure(f"{c.name}: temporary files left behind: {leftovers}")
            self.check_index(c)
        # The server agrees: a new client gets the same tree.
        obs = self.observer
        for _ in range(3):
            r = await self.sync(obs)
            if r is not None and r.converged and not _active(r):
                break
        else:
            raise SimFailure("a new client did not converge")
        if tree(obs.folder) != trees[first]:
            raise SimFailure(f"the server's tree differs: {_diff(tree(obs.folder), trees[first])}")
        # No lost version: every version a user saved and did not replace is in
        # the tree, in the journal's history, or in a conflict copy.
        have = {h for _, h, _ in trees[first].values() if h} | await self.server.journal_hashes()
        must = self.orphans | {h for c in self.clients for h in c.held.values()}
        lost = {h for h in must if not self._kept(h, have, set())}
        if lost:
            held = {h: f"{c.name}:{p}" for c in self.clients for p, h in c.held.items()}
            where = sorted(
                f"{self.origin[h]} (" + (f"held at {held[h]}" if h in held else "replaced") + ")"
                for h in lost
            )
            raise SimFailure(f"{len(lost)} saved versions are lost: {where}")

    def _kept(self, h: bytes, have: set[bytes], seen: set[bytes]) -> bool:
        """In ``have``, or merged into a version that is (its changes live on)."""
        if h in have:
            return True
        seen.add(h)
        return any(self._kept(m, have, seen) for m in self.merged_into.get(h, set()) - seen)

    def check_index(self, c: SimClient) -> None:
        """The index's three views agree with each other and with the disk."""
        if c.index is None:
            c.index = Index.open(c.folder / STATE_DIR / INDEX_FILE)
        disk = tree(c.folder)
        for path, s in c.index.states().items():
            local = s.local_node
            if local is None:
                if path in disk:
                    raise SimFailure(f"{c.name}/{path}: on disk, not in the index")
                if s.remote_node is not None:
                    raise SimFailure(f"{c.name}/{path}: on the server, not here")
                continue
            got = disk.get(path)
            if got is None:
                raise SimFailure(f"{c.name}/{path}: in the index, not on disk")
            kind = {Kind.FILE: "f", Kind.DIRECTORY: "d", Kind.SYMLINK: "l"}[local.kind]
            want = (kind, local.chash if kind == "f" else None,
                    local.exec if kind == "f" else local.target)  # fmt: skip
            if got != want:
                raise SimFailure(f"{c.name}/{path}: index says {want}, disk has {got}")
            if not (local.same_content(s.remote_node) and local.same_content(s.synced_node)):
                raise SimFailure(f"{c.name}/{path}: views disagree: {s}")
        missing = set(disk) - set(c.index.states())
        if missing:
            raise SimFailure(f"{c.name}: on disk, not in the index: {sorted(missing)}")

    def digest(self) -> str:
        return hashlib.sha256("\n".join(self.trace).encode()).hexdigest()

    def dead_process_error(self, exc: BaseException | None) -> bool:
        """An error a dead process's task may end with (none: SIGKILL keeps its files)."""
        return False


def _active(r: SyncResult) -> bool:
    # (Counts leave folders out: a sync that did anything took a second round.)
    return bool(
        r.uploaded or r.downloaded or r.deleted_local or r.deleted_remote or r.moved
        or r.merged or r.conflicts or r.rounds > 1
    )  # fmt: skip


def has_changes(base: bytes, local: bytes, merged: bytes) -> bool:
    """Every run of lines ``local`` added or changed from ``base`` is in ``merged``."""
    b, lo, m = base.splitlines(True), local.splitlines(True), merged.splitlines(True)
    for tag, _, _, j1, j2 in difflib.SequenceMatcher(None, b, lo, autojunk=False).get_opcodes():
        if tag in ("replace", "insert"):
            run = lo[j1:j2]
            if not any(m[k : k + len(run)] == run for k in range(len(m) - len(run) + 1)):
                return False
    return True


def file_hash(p: Path) -> bytes | None:
    try:
        if p.is_symlink() or not p.is_file():
            return None
        return content_hash(p.read_bytes())
    except OSError:
        return None


Snapshot = dict[str, tuple[str, Any, Any]]


def tree(folder: Path, *, hashed: bool = True) -> Snapshot:
    """path -> ("f", content hash, exec) | ("d", None, None) | ("l", None, target):
    the scenarios' tree, without ignored temporary names and linesync's temp
    files; ``hashed=False`` leaves the hash out, for a listing."""
    out: Snapshot = {}
    for path, node in scenario_tree(folder).items():
        name = path.rpartition("/")[2]
        if name.startswith(TMP_PREFIX) or name.endswith("~"):
            continue
        if node[0] == "file":
            data = node[1]
            assert isinstance(data, bytes)
            out[path] = ("f", content_hash(data) if hashed else None, node[2])
        elif node[0] == "dir":
            out[path] = ("d", None, None)
        elif node[0] == "link":
            out[path] = ("l", None, node[1])
    return out


def _all_names(folder: Path) -> list[str]:
    return [str(p.relative_to(folder)) for p in folder.rglob("*") if STATE_DIR not in p.parts]


def _diff(a: Snapshot, b: Snapshot) -> str:
    keys = sorted(set(a) | set(b))
    return "; ".join(f"{k}: {a.get(k)} vs {b.get(k)}" for k in keys if a.get(k) != b.get(k))[:2000]


def run_seed(
    seed: int,
    root: Path,
    *,
    steps: int | None = None,
    clients: int | None = None,
    power: bool = False,
    db_url: str | None = None,
) -> World:
    """Run one seed to the end; raises SimFailure (with the seed) on a broken invariant.
    ``power``: every machine's disk on a LazyFS that loses power (tests/sim/power.py).
    ``db_url``: the server's metadata in that (empty) PostgreSQL database."""
    world_class = World
    if power:
        from tests.sim.power import PowerWorld

        world_class = PowerWorld
    if db_url is not None:
        assert not power, "the power-loss world runs on SQLite"
        world = world_class(seed, root, steps=steps, clients=clients, db_url=db_url)
    else:
        world = world_class(seed, root, steps=steps, clients=clients)

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        # Tasks of a dead client die on their next call; nothing else may fail unseen.
        if isinstance(exc, (SimCrash, sqlite3.ProgrammingError, LinesyncError)):
            return
        if world.dead_process_error(exc):
            return
        world.errors.append(str(context.get("message")) + f": {exc!r}")

    merge3 = engine_module.merge3
    limits = {
        (chunksource, "FETCH_BATCH"): 2,
        (committing, "UPLOAD_BATCH_BYTES"): 8 * 1024,
        (committing, "COMMIT_BATCH"): 4,
        (engine_module, "GROUP_BYTES"): 16 * 1024,
        (engine_module, "LIST_INLINE"): 0,  # every chunk fetched, none inline
        (committing, "INLINE_BUDGET"): 0,  # every chunk uploaded on its own
    }
    saved_limits = {key: getattr(*key) for key in limits}

    def recording_merge3(base: bytes, local: bytes, theirs: bytes) -> bytes | None:
        out = merge3(base, local, theirs)
        world.last_merge = None if out is None else (base, local, out)
        return out

    async def main() -> None:
        engine_module.merge3 = recording_merge3  # type: ignore[assignment]
        if world.small_batches:
            for (module, name), value in limits.items():
                setattr(module, name, value)
        loop = asyncio.get_running_loop()
        loop.set_default_executor(world.executor)
        loop.set_exception_handler(handler)
        await world.run()

    failure: SimFailure | None = None
    try:
        asyncio.run(main())
    except SimFailure as exc:
        hint = replay_hint(seed, steps, clients, power)
        failure = SimFailure(f"seed {seed}: {exc}\n  replay: {hint}")
    except Exception as exc:
        hint = replay_hint(seed, steps, clients, power)
        failure = SimFailure(f"seed {seed}: {exc!r}\n  replay: {hint}")
        failure.__cause__ = exc
    finally:
        engine_module.merge3 = merge3
        for (module, name), value in saved_limits.items():
            setattr(module, name, value)
    if failure is None and world.errors:
        failure = SimFailure(f"seed {seed}: unseen task errors: {world.errors}")
    if failure is not None:
        failure.world = world
        raise failure
    return world


def replay_hint(
    seed: int, steps: int | None = None, clients: int | None = None, power: bool = False
) -> str:
    extra = (f" --steps {steps}" if steps else "") + (f" --clients {clients}" if clients else "")
    extra += " --power" if power else ""
    return f"python -m tests.sim --seed {seed}{extra} --trace"


def sim_root() -> str | None:
    """Where simulated folders live: memory (tmpfs) when there is one."""
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
