"""SQLite metadata store, part one: the connection and its thread, the
schema, and the admin and auth operations (users, tokens, namespaces).
The journal and the chunk index are in ``sqlite.py``."""

from __future__ import annotations

import asyncio
import math
import secrets
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Self, TypeVar

from linesync.server.model import (
    Namespace,
    NamespaceRecord,
    Role,
    TokenInfo,
    TokenRecord,
    TokenRole,
)
from linesync.server.stores.base import StoreError
from linesync.server.stores.common import hash_token, new_token
from linesync.server.stores.packs import fsync_dir

T = TypeVar("T")

SCHEMA_VERSION = 3

# The current schema, for a new database. An existing one is brought up to it
# by ``_MIGRATIONS``; a change to one needs the same change to the other.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
  id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (
  id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id),
  device TEXT NOT NULL, hash BLOB NOT NULL UNIQUE, role TEXT NOT NULL,
  created REAL NOT NULL, revoked REAL, expires REAL);
CREATE TABLE IF NOT EXISTS namespaces (
  id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, owner_id INTEGER NOT NULL,
  journal TEXT NOT NULL, head INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS members (
  ns_id INTEGER NOT NULL, user_id INTEGER NOT NULL, role TEXT NOT NULL,
  PRIMARY KEY (ns_id, user_id));
CREATE TABLE IF NOT EXISTS entries (
  ns_id INTEGER NOT NULL, jid INTEGER NOT NULL, path TEXT NOT NULL, kind TEXT NOT NULL,
  size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, exec INTEGER NOT NULL,
  target TEXT, device TEXT NOT NULL, base_jid INTEGER NOT NULL, moved_from TEXT,
  chash BLOB, bl_full BLOB, bl_delta BLOB, bl_base INTEGER, bl_depth INTEGER NOT NULL,
  nonce TEXT NOT NULL, created REAL NOT NULL,
  PRIMARY KEY (ns_id, jid));
CREATE INDEX IF NOT EXISTS entries_path ON entries (ns_id, path, jid);
CREATE TABLE IF NOT EXISTS current (
  ns_id INTEGER NOT NULL, path TEXT NOT NULL, jid INTEGER NOT NULL,
  live INTEGER NOT NULL, fold TEXT NOT NULL,
  PRIMARY KEY (ns_id, path));
CREATE INDEX IF NOT EXISTS current_jid ON current (ns_id, jid);
CREATE INDEX IF NOT EXISTS current_fold ON current (ns_id, fold) WHERE live = 1;
CREATE TABLE IF NOT EXISTS chunks (
  id BLOB PRIMARY KEY, pack TEXT NOT NULL, offset INTEGER NOT NULL,
  length INTEGER NOT NULL, codec INTEGER NOT NULL, raw_size INTEGER NOT NULL,
  created REAL NOT NULL);
CREATE INDEX IF NOT EXISTS chunks_pack ON chunks (pack);
CREATE TABLE IF NOT EXISTS ns_chunks (
  ns_id INTEGER NOT NULL, chunk_id BLOB NOT NULL, committed INTEGER NOT NULL,
  touched REAL NOT NULL, PRIMARY KEY (ns_id, chunk_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ns_chunks_chunk ON ns_chunks (chunk_id);
CREATE INDEX IF NOT EXISTS ns_chunks_stale ON ns_chunks (touched) WHERE committed = 0;
CREATE TABLE IF NOT EXISTS leases (
  name TEXT PRIMARY KEY, holder TEXT NOT NULL, until REAL NOT NULL);
CREATE TABLE IF NOT EXISTS retired (pack TEXT PRIMARY KEY, since REAL NOT NULL);
"""


def _add_column(db: sqlite3.Connection, table: str, column: str, decl: str) -> None:
    """``ALTER TABLE ... ADD COLUMN``, unless the column is there already."""
    if column not in {r[1] for r in db.execute(f"PRAGMA table_info({table})")}:
        db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")


def _v2_token_expiry(db: sqlite3.Connection) -> None:
    _add_column(db, "tokens", "expires", "REAL")  # unix seconds; NULL: never


def _v3_gc_state(db: sqlite3.Connection) -> None:
    # What garbage collection keeps between rounds (was in the server's memory).
    db.execute(
        "CREATE TABLE IF NOT EXISTS leases ("
        "name TEXT PRIMARY KEY, holder TEXT NOT NULL, until REAL NOT NULL)"
    )
    db.execute("CREATE TABLE IF NOT EXISTS retired (pack TEXT PRIMARY KEY, since REAL NOT NULL)")


# Migrations by the version they lead to, applied in order: ``_MIGRATIONS[v]``
# turns a version ``v - 1`` database into a version ``v`` one. Each step must
# be idempotent (a no-op on a database that already has its change).
_MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {
    2: _v2_token_expiry,
    3: _v3_gc_state,
}
assert sorted(_MIGRATIONS) == list(range(2, SCHEMA_VERSION + 1))


def migrate(db: sqlite3.Connection, path: Path) -> None:
    """Bring the database on ``db`` to ``SCHEMA_VERSION`` in one transaction, or
    refuse a newer one. The version is read again inside the write transaction,
    so two processes that open an old database at once migrate it once."""

    def version() -> int:
        v = int(db.execute("PRAGMA user_version").fetchone()[0])
        if v > SCHEMA_VERSION:
            raise StoreError(
                f"{path} has schema version {v}; this linesync knows "
                f"{SCHEMA_VERSION}. Upgrade linesync."
            )
        return v

    if version() == SCHEMA_VERSION:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        found = version()
        if found == 0:  # a new database: the current schema at once
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    db.execute(stmt)
        else:
            for target in range(found + 1, SCHEMA_VERSION + 1):
                _MIGRATIONS[target](db)
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


class SqliteAdmin:
    """The connection (used from one dedicated thread) and the admin operations."""

    def __init__(self, path: Path, executor: Executor | None = None) -> None:
        """``executor``: where the connection's work runs (one thread unless a
        test runs it inline, for a deterministic simulation)."""
        self.path = path
        self._pool = executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._db: sqlite3.Connection | None = None

    # -- plumbing ----------------------------------------------------------

    @classmethod
    async def open(cls, path: Path, executor: Executor | None = None) -> Self:
        store = cls(path, executor)
        await store._run(store._open)
        return store

    def _open(self) -> None:
        made = [d for d in (self.path.parent, *self.path.parent.parents) if not d.exists()]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # SQLite makes its own files' names durable, not the data directory's: a
        # power cut could take the directory, and every commit in it, away.
        for d in {self.path.parent, *made}:
            fsync_dir(d.parent)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA busy_timeout=30000")
        db.execute("PRAGMA foreign_keys=ON")
        try:
            migrate(db, self.path)
        except BaseException:
            db.close()
            raise
        self._db = db

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, fn, *args)

    @property
    def db(self) -> sqlite3.Connection:
        assert self._db is not None, "store is closed"
        return self._db

    def _tx(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` inside a write transaction."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            out = fn(*args)
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")
        return out

    async def close(self) -> None:
        def _close() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await self._run(_close)
        self._pool.shutdown(wait=True)

    # -- admin -------------------------------------------------------------

    def _user_id(self, name: str) -> int:
        r = self.db.execute("SELECT id FROM users WHERE name=?", (name,)).fetchone()
        if r is None:
            raise StoreError(f"no user named {name!r}")
        return int(r[0])

    def _ns_id(self, name: str) -> int:
        r = self.db.execute("SELECT id FROM namespaces WHERE name=?", (name,)).fetchone()
        if r is None:
            raise StoreError(f"no namespace named {name!r}")
        return int(r[0])

    def _create_ns(self, name: str, owner_id: int) -> int:
        if self.db.execute("SELECT 1 FROM namespaces WHERE name=?", (name,)).fetchone():
            raise StoreError(f"a namespace named {name!r} already exists")
        cur = self.db.execute(
            "INSERT INTO namespaces (name, owner_id, journal, created) VALUES (?,?,?,?)",
            (name, owner_id, secrets.token_hex(8), time.time()),
        )
        ns_id = int(cur.lastrowid or 0)
        self.db.execute(
            "INSERT INTO members (ns_id, user_id, role) VALUES (?,?,'rw')", (ns_id, owner_id)
        )
        return ns_id

    async def create_user(self, name: str) -> int:
        def go() -> int:
            if self.db.execute("SELECT 1 FROM users WHERE name=?", (name,)).fetchone():
                raise StoreError(f"a user named {name!r} already exists")
            cur = self.db.execute(
                "INSERT INTO users (name, created) VALUES (?,?)", (name, time.time())
            )
            uid = int(cur.lastrowid or 0)
            self._create_ns(name, uid)
            return uid

        return await self._run(self._tx, go)

    async def create_token(
        self, user: str, device: str, role: TokenRole, expires: float | None = None
    ) -> str:
        if expires is not None and not math.isfinite(expires):
            raise StoreError(f"a token's expiry must be a finite time, not {expires!r}")
        token = new_token()

        def go() -> None:
            self.db.execute(
                "INSERT INTO tokens (user_id, device, hash, role, created, expires) "
                "VALUES (?,?,?,?,?,?)",
                (self._user_id(user), device, hash_token(token), role, time.time(), expires),
            )

        await self._run(self._tx, go)
        return token

    async def revoke_tokens(self, user: str, device: str | None = None) -> int:
        def go() -> int:
            q = "UPDATE tokens SET revoked=? WHERE user_id=? AND revoked IS NULL"
            args: list[Any] = [time.time(), self._user_id(user)]
            if device is not None:
                q += " AND device=?"
                args.append(device)
            return self.db.execute(q, args).rowcount

        return await self._run(self._tx, go)

    async def list_tokens(self, user: str | None = None) -> list[TokenRecord]:
        def go() -> list[TokenRecord]:
            q = (
                "SELECT t.id, u.name, t.device, t.role, t.created, t.revoked, t.expires "
                "FROM tokens t JOIN users u ON u.id=t.user_id"
            )
            args: tuple[Any, ...] = ()
            if user is not None:
                q += " WHERE u.name=?"
                args = (user,)
            return [TokenRecord(*r) for r in self.db.execute(q + " ORDER BY t.id", args)]

        return await self._run(go)

    async def list_users(self) -> list[str]:
        def go() -> list[str]:
            return [r[0] for r in self.db.execute("SELECT name FROM users ORDER BY name")]

        return await self._run(go)

    async def create_namespace(self, name: str, owner: str) -> int:
        return await self._run(self._tx, lambda: self._create_ns(name, self._user_id(owner)))

    async def share(self, namespace: str, user: str, role: Role | None) -> None:
        def go() -> None:
            ns_id, uid = self._ns_id(namespace), self._user_id(user)
            if role is None:
                self.db.execute("DELETE FROM members WHERE ns_id=? AND user_id=?", (ns_id, uid))
            else:
                self.db.execute(
                    "INSERT INTO members (ns_id, user_id, role) VALUES (?,?,?) "
                    "ON CONFLICT (ns_id, user_id) DO UPDATE SET role=excluded.role",
                    (ns_id, uid, role),
                )

        await self._run(self._tx, go)

    async def list_namespaces(self) -> list[NamespaceRecord]:
        return await self._run(self._records, None)

    async def namespace_record(self, ns_id: int) -> NamespaceRecord | None:
        found = await self._run(self._records, ns_id)
        return found[0] if found else None

    def _records(self, only: int | None) -> list[NamespaceRecord]:
        out: list[NamespaceRecord] = []
        for ns_id, name, head, owner in self.db.execute(
            "SELECT n.id, n.name, n.head, u.name FROM namespaces n "
            "JOIN users u ON u.id=n.owner_id WHERE ? IS NULL OR n.id=? ORDER BY n.id",
            (only, only),
        ).fetchall():
            members = {
                u: r
                for u, r in self.db.execute(
                    "SELECT u.name, m.role FROM members m JOIN users u ON u.id=m.user_id "
                    "WHERE m.ns_id=? ORDER BY u.name",
                    (ns_id,),
                )
            }
            out.append(NamespaceRecord(ns_id, name, owner, head, members))
        return out

    async def reset_namespace(self, namespace: str) -> None:
        """Erase a namespace's journal and mint a new journal id (cursors die)."""

        def go() -> None:
            ns_id = self._ns_id(namespace)
            for table in ("entries", "current", "ns_chunks"):
                self.db.execute(f"DELETE FROM {table} WHERE ns_id=?", (ns_id,))
            self.db.execute(
                "UPDATE namespaces SET head=0, journal=? WHERE id=?", (secrets.token_hex(8), ns_id)
            )

        await self._run(self._tx, go)

    # -- auth --------------------------------------------------------------

    async def authenticate(self, token: str) -> TokenInfo | None:
        digest = hash_token(token)

        def go() -> TokenInfo | None:
            r = self.db.execute(
                "SELECT t.id, t.user_id, u.name, t.device, t.role FROM tokens t "
                "JOIN users u ON u.id=t.user_id WHERE t.hash=? AND t.revoked IS NULL "
                "AND (t.expires IS NULL OR t.expires > ?)",
                (digest, time.time()),
            ).fetchone()
            return TokenInfo(r[0], r[1], r[2], r[3], r[4]) if r else None

        return await self._run(go)

    def _namespaces(self, user_id: int, ns_id: int | None) -> list[Namespace]:
        q = (
            "SELECT n.id, n.name, n.journal, n.head, m.role FROM namespaces n "
            "JOIN members m ON m.ns_id=n.id WHERE m.user_id=?"
        )
        args: tuple[Any, ...] = (user_id,)
        if ns_id is not None:
            q += " AND n.id=?"
            args += (ns_id,)
        return [Namespace(*r) for r in self.db.execute(q + " ORDER BY n.id", args)]

    async def namespace(self, ns_id: int, user_id: int) -> Namespace | None:
        found = await self._run(self._namespaces, user_id, ns_id)
        return found[0] if found else None

    async def namespaces_of(self, user_id: int) -> list[Namespace]:
        return await self._run(self._namespaces, user_id, None)
