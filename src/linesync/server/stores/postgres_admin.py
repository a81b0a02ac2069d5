"""PostgreSQL metadata store, part one: the connection pool, the schema and
its migrations, and the admin and auth operations (users, tokens,
namespaces). The journal and the chunk index are in ``postgres.py``.

Many server processes may share one database. Everything a commit decides is
decided under the namespace row's lock (``SELECT ... FOR UPDATE``), so JIDs
stay gapless per namespace whichever process commits.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Self, TypeAlias

import asyncpg

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

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    # A connection of its own, or one borrowed from the pool.
    Conn: TypeAlias = asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]

SCHEMA_VERSION = 1

# Paths, fold keys and move sources compare byte-wise (COLLATE "C"), as in
# SQLite: a folder's subtree is the range [path + "/", path + "0").
_SCHEMA = """
CREATE TABLE users (
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name TEXT NOT NULL UNIQUE,
  created DOUBLE PRECISION NOT NULL);
CREATE TABLE tokens (
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  user_id BIGINT NOT NULL REFERENCES users(id), device TEXT NOT NULL,
  hash BYTEA NOT NULL UNIQUE, role TEXT NOT NULL, created DOUBLE PRECISION NOT NULL,
  revoked DOUBLE PRECISION, expires DOUBLE PRECISION);
CREATE TABLE namespaces (
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name TEXT NOT NULL UNIQUE,
  owner_id BIGINT NOT NULL REFERENCES users(id), journal TEXT NOT NULL,
  head BIGINT NOT NULL DEFAULT 0, created DOUBLE PRECISION NOT NULL);
CREATE TABLE members (
  ns_id BIGINT NOT NULL REFERENCES namespaces(id), user_id BIGINT NOT NULL REFERENCES users(id),
  role TEXT NOT NULL, PRIMARY KEY (ns_id, user_id));
CREATE TABLE entries (
  ns_id BIGINT NOT NULL, jid BIGINT NOT NULL, path TEXT COLLATE "C" NOT NULL,
  kind TEXT NOT NULL, size BIGINT NOT NULL, mtime_ns BIGINT NOT NULL, exec BOOLEAN NOT NULL,
  target TEXT, device TEXT NOT NULL, base_jid BIGINT NOT NULL, moved_from TEXT COLLATE "C",
  chash BYTEA, bl_full BYTEA, bl_delta BYTEA, bl_base BIGINT, bl_depth INTEGER NOT NULL,
  nonce TEXT NOT NULL, created DOUBLE PRECISION NOT NULL,
  PRIMARY KEY (ns_id, jid));
CREATE INDEX entries_path ON entries (ns_id, path, jid);
CREATE TABLE current_entries (
  ns_id BIGINT NOT NULL, path TEXT COLLATE "C" NOT NULL, jid BIGINT NOT NULL,
  live BOOLEAN NOT NULL, fold TEXT COLLATE "C" NOT NULL,
  PRIMARY KEY (ns_id, path));
CREATE INDEX current_jid ON current_entries (ns_id, jid);
CREATE INDEX current_fold ON current_entries (ns_id, fold) WHERE live;
CREATE TABLE chunks (
  id BYTEA PRIMARY KEY, pack TEXT NOT NULL, pack_offset BIGINT NOT NULL,
  length BIGINT NOT NULL, codec SMALLINT NOT NULL, raw_size BIGINT NOT NULL,
  created DOUBLE PRECISION NOT NULL);
CREATE INDEX chunks_pack ON chunks (pack);
CREATE TABLE ns_chunks (
  ns_id BIGINT NOT NULL, chunk_id BYTEA NOT NULL, committed BOOLEAN NOT NULL,
  touched DOUBLE PRECISION NOT NULL, PRIMARY KEY (ns_id, chunk_id));
CREATE INDEX ns_chunks_chunk ON ns_chunks (chunk_id);
CREATE INDEX ns_chunks_stale ON ns_chunks (touched) WHERE NOT committed;
CREATE TABLE leases (
  name TEXT PRIMARY KEY, holder TEXT NOT NULL, until DOUBLE PRECISION NOT NULL);
CREATE TABLE retired (pack TEXT PRIMARY KEY, since DOUBLE PRECISION NOT NULL);
CREATE TABLE staged_packs (
  name TEXT PRIMARY KEY, data BYTEA NOT NULL, created DOUBLE PRECISION NOT NULL);
"""

# Migrations by the version they lead to (see sqlite_admin.py); none yet: the
# PostgreSQL store is new in this release, version 1 is its first schema.
_MIGRATIONS: dict[int, Callable[[Conn], Coroutine[Any, Any, None]]] = {}
assert sorted(_MIGRATIONS) == list(range(2, SCHEMA_VERSION + 1))

# pg_advisory_xact_lock key: one migration at a time across processes.
_MIGRATION_LOCK = 0x6C73_6D69  # "lsmi"


async def migrate(con: Conn, url: str) -> None:
    """Bring the database to ``SCHEMA_VERSION`` in one transaction, or refuse a
    newer one. Processes that start together migrate it once."""
    async with con.transaction():
        await con.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
        await con.execute("CREATE TABLE IF NOT EXISTS linesync_schema (version INTEGER NOT NULL)")
        found = await con.fetchval("SELECT version FROM linesync_schema")
        if found is not None and found > SCHEMA_VERSION:
            raise StoreError(
                f"{_safe(url)} has schema version {found}; this linesync knows "
                f"{SCHEMA_VERSION}. Upgrade linesync."
            )
        if found == SCHEMA_VERSION:
            return
        if found is None:
            await con.execute(_SCHEMA)
            await con.execute("INSERT INTO linesync_schema VALUES ($1)", SCHEMA_VERSION)
            return
        for target in range(found + 1, SCHEMA_VERSION + 1):
            await _MIGRATIONS[target](con)
        await con.execute("UPDATE linesync_schema SET version=$1", SCHEMA_VERSION)


def _safe(url: str) -> str:
    """The URL without its password, for messages."""
    head, at, tail = url.rpartition("@")
    if not at:
        return url
    scheme, _, cred = head.partition("://")
    return f"{scheme}://{cred.partition(':')[0]}@{tail}"


def _text(value: str, what: str) -> str:
    if "\x00" in value:
        raise StoreError(f"{what} contains NUL")
    return value


async def _keep(con: Conn) -> None:
    """A connection going back to the pool keeps its session as it is. asyncpg's
    default reset (unlock advisory locks, close cursors, UNLISTEN, RESET ALL)
    costs a round trip per request, and nothing here leaves such state on a
    pooled connection: advisory locks are per transaction, LISTEN has its own
    connection. (asyncpg still rolls back a transaction left open.)"""


class PostgresAdmin:
    """The pool and the admin operations."""

    def __init__(self, url: str, pool: asyncpg.Pool) -> None:
        self.url = url
        self.pool = pool

    @classmethod
    async def open(cls, url: str, *, min_size: int = 1, max_size: int = 10) -> Self:
        try:
            pool = await asyncpg.create_pool(
                url, min_size=min_size, max_size=max_size, command_timeout=60, reset=_keep
            )
        except (OSError, asyncpg.PostgresError, ValueError) as exc:
            raise StoreError(f"cannot connect to {_safe(url)}: {exc}") from exc
        try:
            async with pool.acquire() as con:
                await migrate(con, url)
        except BaseException:
            await pool.close()
            raise
        return cls(url, pool)

    async def close(self) -> None:
        await self.pool.close()

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[Conn]:
        async with self.pool.acquire() as con, con.transaction():
            yield con

    # -- admin -------------------------------------------------------------

    @staticmethod
    async def _user_id(con: Conn, name: str) -> int:
        uid = await con.fetchval("SELECT id FROM users WHERE name=$1", name)
        if uid is None:
            raise StoreError(f"no user named {name!r}")
        return int(uid)

    @staticmethod
    async def _ns_id(con: Conn, name: str) -> int:
        ns = await con.fetchval("SELECT id FROM namespaces WHERE name=$1", name)
        if ns is None:
            raise StoreError(f"no namespace named {name!r}")
        return int(ns)

    @staticmethod
    async def _create_ns(con: Conn, name: str, owner_id: int) -> int:
        _text(name, "a namespace name")
        ns_id = await con.fetchval(
            "INSERT INTO namespaces (name, owner_id, journal, created) VALUES ($1,$2,$3,$4) "
            "ON CONFLICT (name) DO NOTHING RETURNING id",
            name,
            owner_id,
            secrets.token_hex(8),
            time.time(),
        )
        if ns_id is None:
            raise StoreError(f"a namespace named {name!r} already exists")
        await con.execute(
            "INSERT INTO members (ns_id, user_id, role) VALUES ($1,$2,'rw')", ns_id, owner_id
        )
        return int(ns_id)

    async def create_user(self, name: str) -> int:
        _text(name, "a user name")
        async with self._tx() as con:
            uid = await con.fetchval(
                "INSERT INTO users (name, created) VALUES ($1,$2) "
                "ON CONFLICT (name) DO NOTHING RETURNING id",
                name,
                time.time(),
            )
            if uid is None:
                raise StoreError(f"a user named {name!r} already exists")
            await self._create_ns(con, name, uid)
            return int(uid)

    async def create_token(
        self, user: str, device: str, role: TokenRole, expires: float | None = None
    ) -> str:
        if expires is not None and not math.isfinite(expires):
            raise StoreError(f"a token's expiry must be a finite time, not {expires!r}")
        _text(device, "a device name")
        token = new_token()
        async with self._tx() as con:
            await con.execute(
                "INSERT INTO tokens (user_id, device, hash, role, created, expires) "
                "VALUES ($1,$2,$3,$4,$5,$6)",
                await self._user_id(con, user),
                device,
                hash_token(token),
                role,
                time.time(),
                expires,
            )
        return token

    async def revoke_tokens(self, user: str, device: str | None = None) -> int:
        async with self._tx() as con:
            uid = await self._user_id(con, user)
            status = await con.execute(
                "UPDATE tokens SET revoked=$1 WHERE user_id=$2 AND revoked IS NULL "
                "AND ($3::text IS NULL OR device=$3)",
                time.time(),
                uid,
                device,
            )
            return int(status.split()[-1])

    async def list_tokens(self, user: str | None = None) -> list[TokenRecord]:
        rows = await self.pool.fetch(
            "SELECT t.id, u.name, t.device, t.role, t.created, t.revoked, t.expires "
            "FROM tokens t JOIN users u ON u.id=t.user_id "
            "WHERE $1::text IS NULL OR u.name=$1 ORDER BY t.id",
            user,
        )
        return [TokenRecord(*r) for r in rows]

    async def list_users(self) -> list[str]:
        return [r[0] for r in await self.pool.fetch("SELECT name FROM users ORDER BY name")]

    async def create_namespace(self, name: str, owner: str) -> int:
        async with self._tx() as con:
            return await self._create_ns(con, name, await self._user_id(con, owner))

    async def share(self, namespace: str, user: str, role: Role | None) -> None:
        async with self._tx() as con:
            ns_id, uid = await self._ns_id(con, namespace), await self._user_id(con, user)
            if role is None:
                await con.execute("DELETE FROM members WHERE ns_id=$1 AND user_id=$2", ns_id, uid)
            else:
                await con.execute(
                    "INSERT INTO members (ns_id, user_id, role) VALUES ($1,$2,$3) "
                    "ON CONFLICT (ns_id, user_id) DO UPDATE SET role=excluded.role",
                    ns_id,
                    uid,
                    role,
                )

    async def list_namespaces(self) -> list[NamespaceRecord]:
        return await self._records(None)

    async def namespace_record(self, ns_id: int) -> NamespaceRecord | None:
        found = await self._records(ns_id)
        return found[0] if found else None

    async def _records(self, only: int | None) -> list[NamespaceRecord]:
        async with self.pool.acquire() as con, con.transaction(readonly=True):
            spaces = await con.fetch(
                "SELECT n.id, n.name, n.head, u.name FROM namespaces n "
                "JOIN users u ON u.id=n.owner_id WHERE $1::bigint IS NULL OR n.id=$1 ORDER BY n.id",
                only,
            )
            members: dict[int, dict[str, Role]] = {}
            for ns_id, name, role in await con.fetch(
                "SELECT m.ns_id, u.name, m.role FROM members m JOIN users u ON u.id=m.user_id "
                "WHERE $1::bigint IS NULL OR m.ns_id=$1 ORDER BY u.name",
                only,
            ):
                members.setdefault(ns_id, {})[name] = role
        return [
            NamespaceRecord(ns_id, name, owner, head, members.get(ns_id, {}))
            for ns_id, name, head, owner in spaces
        ]

    async def reset_namespace(self, namespace: str) -> None:
        """Erase a namespace's journal and mint a new journal id (cursors die)."""
        async with self._tx() as con:
            ns_id = await self._ns_id(con, namespace)
            await con.execute("SELECT 1 FROM namespaces WHERE id=$1 FOR UPDATE", ns_id)
            for table in ("entries", "current_entries", "ns_chunks"):
                await con.execute(f"DELETE FROM {table} WHERE ns_id=$1", ns_id)
            await con.execute(
                "UPDATE namespaces SET head=0, journal=$1 WHERE id=$2", secrets.token_hex(8), ns_id
            )

    # -- auth --------------------------------------------------------------

    async def authenticate(self, token: str) -> TokenInfo | None:
        r = await self.pool.fetchrow(
            "SELECT t.id, t.user_id, u.name, t.device, t.role FROM tokens t "
            "JOIN users u ON u.id=t.user_id WHERE t.hash=$1 AND t.revoked IS NULL "
            "AND (t.expires IS NULL OR t.expires > $2)",
            hash_token(token),
            time.time(),
        )
        return TokenInfo(r[0], r[1], r[2], r[3], r[4]) if r else None

    async def _namespaces(self, user_id: int, ns_id: int | None) -> list[Namespace]:
        rows = await self.pool.fetch(
            "SELECT n.id, n.name, n.journal, n.head, m.role FROM namespaces n "
            "JOIN members m ON m.ns_id=n.id WHERE m.user_id=$1 "
            "AND ($2::bigint IS NULL OR n.id=$2) ORDER BY n.id",
            user_id,
            ns_id,
        )
        return [Namespace(*r) for r in rows]

    async def namespace(self, ns_id: int, user_id: int) -> Namespace | None:
        found = await self._namespaces(user_id, ns_id)
        return found[0] if found else None

    async def namespaces_of(self, user_id: int) -> list[Namespace]:
        return await self._namespaces(user_id, None)
