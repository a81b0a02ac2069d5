"""Stores chosen by URL: ``--db`` and ``--chunks``.

- metadata: none (the embedded SQLite file in the data directory),
  ``sqlite:///absolute/path``, or ``postgresql://user@host:port/database``
  (also ``postgres://``; the usual libpq parameters in the query string);
- chunks: none (append-only packs in the data directory), or an object store:
  ``s3://BUCKET?endpoint=...`` or ``file:///absolute/path`` (see
  ``objects.open_object_backend``).

Embedded stores live in the data directory and admit one server process at a
time (its lock); with PostgreSQL and an object store, any number may run.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from linesync.server.config import ServerConfig
from linesync.server.stores.base import MetadataStore, StoreError
from linesync.server.stores.packs import ChunkStore, DiskPackStore


def meta_kind(url: str | None) -> str:
    """ "sqlite" or "postgres"; StoreError for any other URL."""
    if url is None:
        return "sqlite"
    scheme = urlsplit(url).scheme.lower()
    if scheme == "sqlite":
        return "sqlite"
    if scheme in ("postgres", "postgresql"):
        return "postgres"
    raise StoreError(f"--db {url!r}: give postgresql://USER@HOST:PORT/DATABASE or sqlite:///PATH")


def sqlite_path(config: ServerConfig) -> Path:
    if config.db is None:
        return config.meta_path
    parts = urlsplit(config.db)
    if parts.netloc or not parts.path.startswith("/") or parts.query:
        raise StoreError(f"--db {config.db!r}: give sqlite:///ABSOLUTE/PATH")
    return Path(parts.path)


def shared(config: ServerConfig) -> bool:
    """May several server processes use these stores at once?"""
    return meta_kind(config.db) == "postgres" and config.chunks is not None


async def open_meta(config: ServerConfig) -> MetadataStore:
    if meta_kind(config.db) == "postgres":
        from linesync.server.stores.postgres import PostgresStore

        assert config.db is not None
        return await PostgresStore.open(config.db, max_size=config.db_pool_size)
    from linesync.server.stores.sqlite import SqliteStore

    return await SqliteStore.open(sqlite_path(config))


def open_chunks(config: ServerConfig) -> ChunkStore:
    if config.chunks is None:
        return DiskPackStore(config.packs_dir, pack_size_limit=config.pack_size_limit)
    from linesync.server.stores.objpacks import open_chunk_store

    try:
        objects = open_chunk_store(config.chunks)
    except ValueError as exc:
        raise StoreError(f"--chunks: {exc}") from None
    if meta_kind(config.db) != "postgres":
        return objects
    # Small appends wait in the database and go to the object store together.
    from linesync.server.stores.staged import PgStage, StagedChunkStore

    assert config.db is not None
    return StagedChunkStore(objects, PgStage(config.db))


def transient(exc: BaseException) -> bool:
    """Is ``exc`` a store that could not be reached or lost its connection
    (worth trying again), rather than a bug?"""
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    import asyncpg

    return isinstance(
        exc,
        asyncpg.PostgresConnectionError
        | asyncpg.InterfaceError
        | asyncpg.CannotConnectNowError
        | asyncpg.TooManyConnectionsError
        | asyncpg.AdminShutdownError
        | asyncpg.QueryCanceledError
        # (a connection cut in the middle of an operation can leave this behind)
        | asyncpg.InternalClientError,
    )
