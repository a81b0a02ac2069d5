"""Server processes on shared stores: PostgreSQL for metadata, S3 for chunks.

- :func:`shared_stores` makes a fresh database (``tests/support/pg.py``) and a
  fresh prefix in the session's S3 bucket (``tests/support/s3.py``); a server
  started with its ``args`` and ``env`` keeps everything there, so any number
  of processes can serve the same data.
- :class:`Deployment` (the ``deployment`` fixture): N server processes on one
  such pair, each with a data directory of its own (only the one that made
  the admin holds the first-start token), with the admin commands, ``linesync
  check`` and a direct line to the database (to look at it or cut connections
  on purpose).
- Databases are dropped on a thread of their own (a drop waits for a
  checkpoint); the session's end waits for the last of them.
- ``LINESYNC_TEST_STORES=postgres+s3`` (see :func:`stores_mode`) makes the
  fixtures that start servers for the hardening suite (``srv``, ``launch``)
  start them on fresh shared stores instead of the embedded SQLite file and
  pack files: ``make test`` runs tests/attack once each way.

With ``CI=true`` a missing PostgreSQL or weed fails the test (the fixtures of
pg.py and s3.py decide); elsewhere it is skipped.
"""

from __future__ import annotations

import asyncio
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from linesync.server.stores.postgres import CHANNEL
from tests.support.pg import create_database, drop_database
from tests.support.s3 import S3Server
from tests.support.server import ServerProc

STORES_VAR = "LINESYNC_TEST_STORES"
EMBEDDED = "embedded"
SHARED = "postgres+s3"
# What pg_stat_activity shows for a process's listening connection, until its
# first check (then "SELECT 1").
LISTEN_QUERY = f'LISTEN "{CHANNEL}"'


def stores_mode() -> str:
    """What ``LINESYNC_TEST_STORES`` asks for: ``embedded`` (unset: SQLite and pack
    files in the data directory) or ``postgres+s3``; anything else is a mistake."""
    mode = os.environ.get(STORES_VAR, "").strip() or EMBEDDED
    if mode not in (EMBEDDED, SHARED):
        raise pytest.UsageError(f"{STORES_VAR}={mode!r}: give {EMBEDDED!r} or {SHARED!r}")
    return mode


def shared_mode() -> bool:
    return stores_mode() == SHARED


embedded_only = pytest.mark.skipif(
    os.environ.get(STORES_VAR, "").strip() == SHARED,
    reason="about the embedded stores (the SQLite file and pack files in the data directory)",
)


@dataclass
class SharedStores:
    """A fresh PostgreSQL database and S3 prefix; ``close`` drops the database
    (the prefix goes with the session's S3 server)."""

    db: str
    chunks: str
    env: dict[str, str]

    @property
    def args(self) -> list[str]:
        """The server's and the admin commands' ``--db`` and ``--chunks``."""
        return ["--db", self.db, "--chunks", self.chunks]

    def server(self, data: Path, extra: list[str] | None = None) -> ServerProc:
        """A (not yet started) server process on these stores."""
        return ServerProc(data, extra=list(extra or []), stores=self.args, env=dict(self.env))

    def apply(self, proc: ServerProc) -> ServerProc:
        """Put ``proc`` (not yet started) on these stores."""
        proc.stores, proc.env = self.args, {**proc.env, **self.env}
        return proc

    def close(self) -> None:
        """Drop the database (on the dropper's thread: see :func:`drop_later`)."""
        drop_later(self.db)


class _Dropper:
    """Drops databases on a thread of its own. DROP DATABASE waits for a
    checkpoint (1-3 s on a busy machine), which no test needs to wait for;
    :func:`drops_done` (at the end of the session) waits for the rest."""

    def __init__(self) -> None:
        self.queue: queue.Queue[str] = queue.Queue()
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()
        self.failed: list[str] = []

    def drop(self, url: str) -> None:
        with self.lock:
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="drop-db", daemon=True)
                self.thread.start()
        self.queue.put(url)

    def _run(self) -> None:
        while True:
            url = self.queue.get()
            try:
                drop_database(url)
            except Exception as exc:  # reported by drops_done
                self.failed.append(f"{url}: {exc!r}")
            finally:
                self.queue.task_done()

    def wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.05)


_dropper = _Dropper()


def drop_later(url: str) -> None:
    """Drop the database at ``url`` soon, on another thread."""
    _dropper.drop(url)


def drops_done(timeout: float = 120.0) -> list[str]:
    """Wait (at most ``timeout`` s) until every database given to :func:`drop_later`
    is dropped; the drops that failed."""
    _dropper.wait(timeout)
    return list(_dropper.failed)


def shared_stores(s3: S3Server) -> SharedStores:
    db = create_database()
    creds = {"AWS_ACCESS_KEY_ID": s3.access_key_id, "AWS_SECRET_ACCESS_KEY": s3.secret_access_key}
    return SharedStores(db, s3.url(s3.new_prefix()), creds)


def stores_for(request: pytest.FixtureRequest) -> SharedStores | None:
    """The stores ``LINESYNC_TEST_STORES`` asks for a server of this test: None
    for the embedded ones (in the data directory), else fresh shared stores
    (the caller closes them after stopping the server)."""
    if not shared_mode():
        return None
    return shared_stores(request.getfixturevalue("s3_server"))


# -- the database, directly ------------------------------------------------------------


def sql(url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    """Run one statement on the database at ``url`` (a connection of its own);
    its rows. Safe to call from any thread that runs no event loop."""

    async def go() -> list[asyncpg.Record]:
        con = await asyncpg.connect(url, timeout=10)
        try:
            return list(await con.fetch(query, *args, timeout=30))
        finally:
            await con.close()

    return asyncio.run(go())


def terminate_backends(url: str, where: str = "true") -> list[int]:
    """``pg_terminate_backend`` every other connection to the database of ``url``
    that matches ``where`` (SQL over pg_stat_activity); the pids terminated."""
    name = url.rsplit("/", 1)[1].split("?")[0]
    rows = sql(
        url,
        "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity "
        f"WHERE datname = $1 AND pid <> pg_backend_pid() AND ({where})",
        name,
    )
    return [r[0] for r in rows if r[1]]


# -- a deployment of several processes ----------------------------------------------------


@dataclass
class Deployment:
    """Server processes sharing one database and one bucket prefix."""

    root: Path
    stores: SharedStores
    servers: list[ServerProc] = field(default_factory=list)

    def add(self, n: int = 1, extra: list[str] | None = None) -> list[ServerProc]:
        """Start ``n`` more processes, all at once (threads: processes starting
        together on a fresh database migrate it once, and one of them makes the
        admin); the new ones."""
        new = [
            self.stores.server(self.root / f"server{len(self.servers) + i}", extra)
            for i in range(n)
        ]
        self.servers.extend(new)
        errors: list[BaseException] = []

        def start(s: ServerProc) -> None:
            try:
                s.start()
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=start, args=(s,)) for s in new]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        if errors:
            raise errors[0]
        return new

    @property
    def token(self) -> str:
        """The admin's first-start token (in the data directory of the process
        that made the admin)."""
        found = [s.token for s in self.servers if s.token]
        assert len(found) == 1, f"{len(found)} first-start tokens"
        return found[0]

    def urls(self, *which: int) -> str:
        """The URLs of the processes ``which`` (default all), comma-separated."""
        picked = which or tuple(range(len(self.servers)))
        return ",".join(self.servers[i].url for i in picked)

    def admin(self, *args: str) -> str:
        """An admin command (``linesync ARGS --data DIR --db ... --chunks ...``,
        in this process); its stdout."""
        from tests.support.api import admin

        return admin(self.servers[0], *args)

    def new_token(self, user: str, device: str) -> str:
        from tests.support.api import new_token

        if user not in self.admin("user", "list").split():
            self.admin("user", "add", user)
        return new_token(self.servers[0], user, device)

    def check(self) -> subprocess.CompletedProcess[str]:
        """``linesync check`` on the shared stores, as a command (a process of its own)."""
        return subprocess.run(
            [sys.executable, "-m", "linesync", "check", "--data", str(self.root / "check"),
             *self.stores.args],
            capture_output=True,
            text=True,
            timeout=120,
            env=dict(os.environ, **self.stores.env),
        )  # fmt: skip

    def sql(self, query: str, *args: Any) -> list[asyncpg.Record]:
        return sql(self.stores.db, query, *args)

    def terminate(self, where: str = "true") -> list[int]:
        return terminate_backends(self.stores.db, where)

    def stop(self) -> None:
        for s in self.servers:
            s.stop()


@pytest.fixture
def deployment(s3_server: S3Server, tmp_path: Path) -> Iterator[Deployment]:
    """Two server processes on a fresh PostgreSQL database and S3 prefix (add
    more with ``deployment.add()``); stopped, and the database dropped, after."""
    stores = shared_stores(s3_server)
    dep = Deployment(tmp_path / "deploy", stores)
    try:
        dep.add(2)
        assert dep.token  # exactly one of the two made the admin
        yield dep
    finally:
        try:
            dep.stop()
        finally:
            stores.close()
