"""Start the server: open the stores, mint the first token, run uvicorn.

The data directory is private: the directory 0700, its files 0600 (file names,
user and device names and token hashes are in there), whatever the umask of
the process that made them.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import math
import os
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

from linesync.server.config import ServerConfig
from linesync.server.stores.base import AdminStore, MetadataStore, StoreError
from linesync.server.stores.packs import ChunkStore, fsync_dir
from linesync.server.stores.urls import meta_kind, open_chunks, open_meta, shared, sqlite_path

FIRST_TOKEN_FILE = "first-token"
LOCK_FILE = "server.lock"


class DataDirBusy(Exception):
    """Another process holds the data directory."""


class CannotListen(Exception):
    """The address to serve on is taken or not ours."""


def make_private(data_dir: Path, meta_path: Path | None) -> None:
    """Create ``data_dir`` 0700 (and the database file 0600, before SQLite makes
    it: its -wal and -shm files take the database file's mode); take group and
    other bits off what an older version left there."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if meta_path is not None and not meta_path.exists():
        os.close(os.open(meta_path, os.O_WRONLY | os.O_CREAT, 0o600))
    for root, dirs, files in os.walk(data_dir):
        for name, mode in [(root, 0o700)] + [(os.path.join(root, f), 0o600) for f in files]:
            try:
                st = os.lstat(name)
                if not os.path.islink(name) and st.st_mode & 0o077:
                    os.chmod(name, st.st_mode & mode & 0o7777)
            except OSError:
                continue
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(root, d))]


@contextlib.contextmanager
def exclusive(data_dir: Path) -> Iterator[None]:
    """Hold the data directory's lock: one server (or offline GC) at a time."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataDirBusy(f"{data_dir} is in use by a running linesync server") from None
        yield
    finally:
        os.close(fd)


@contextlib.asynccontextmanager
async def open_stores(config: ServerConfig) -> AsyncIterator[tuple[MetadataStore, ChunkStore]]:
    """The stores ``config`` names (stores/urls.py), closed on the way out."""
    embedded_db = meta_kind(config.db) == "sqlite"
    make_private(config.data_dir, sqlite_path(config) if embedded_db else None)
    meta = await open_meta(config)
    try:
        packs = open_chunks(config)
    except BaseException:
        await meta.close()
        raise
    try:
        yield meta, packs
    finally:
        await packs.close()
        await meta.close()


async def first_start(meta: AdminStore, data_dir: Path) -> str | None:
    """On an empty server, create user "admin" with a read-write token, keep a copy
    of it readable only by this user in the data directory, and return it."""
    if await meta.list_users():
        return None
    try:
        await meta.create_user("admin")
    except StoreError:
        return None  # another server process sharing the database was first
    token = await meta.create_token("admin", "admin", "rw")
    path = data_dir / FIRST_TOKEN_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
        f.flush()
        os.fsync(f.fileno())
    fsync_dir(data_dir)
    return token


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted connections only
    # then, and without it every kept-alive request waits ~40 ms for delayed ACKs.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        why = {
            errno.EADDRINUSE: "the address is in use (is another server running there? "
            "choose another port with --port)",
            errno.EADDRNOTAVAIL: "this machine has no such address (see --host)",
            errno.EACCES: "permission denied (ports below 1024 need privileges)",
        }.get(exc.errno or 0, exc.strerror or str(exc))
        raise CannotListen(f"cannot listen on {host}:{port}: {why}") from None
    from linesync.server.listener import LISTEN_BACKLOG

    sock.listen(LISTEN_BACKLOG)
    sock.set_inheritable(True)
    return sock


async def serve(
    config: ServerConfig, announce: Callable[[str, str | None], None], log_level: str = "warning"
) -> None:
    os.umask(0o077)  # whatever the server makes is its own
    sock = bind(config.host, config.port)
    host, port = sock.getsockname()[:2]
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    # Embedded stores admit one process; shared ones (PostgreSQL and an object
    # store) any number.
    with contextlib.nullcontext() if shared(config) else exclusive(config.data_dir):
        await _serve(config, sock, url, announce, log_level)


async def _serve(
    config: ServerConfig,
    sock: socket.socket,
    url: str,
    announce: Callable[[str, str | None], None],
    log_level: str,
) -> None:
    # The app and the HTTP server, here: the admin commands that open the
    # stores only (``open_stores``, ``exclusive``) do not pay for importing them.
    import uvicorn

    from linesync.server.app import create_app
    from linesync.server.listener import (
        ACCEPT_BATCH,
        ConnectionGuard,
        Server,
        default_max_connections,
        protocol_for,
        raise_open_file_limit,
    )

    async with open_stores(config) as (meta, packs):
        token = await first_start(meta, config.data_dir)
        app = create_app(config, meta, packs)
        cap = config.max_connections or default_max_connections()
        raise_open_file_limit()
        guard = ConnectionGuard(cap, config.header_timeout)
        uv = uvicorn.Config(
            app,
            http=protocol_for(guard),
            log_level=log_level,
            access_log=False,
            server_header=False,
            date_header=False,
            timeout_graceful_shutdown=3,
            backlog=ACCEPT_BATCH,
            timeout_keep_alive=math.ceil(config.keepalive_timeout),  # whole seconds
            lifespan="on",
            proxy_headers=bool(config.forwarded_allow_ips),
            forwarded_allow_ips=config.forwarded_allow_ips or None,
        )
        server = Server(uv, on_stop=app.state.ctx.notifier.close)
        announce(url, token)
        await server.serve(sockets=[sock])


def run(config: ServerConfig, announce: Callable[[str, str | None], None], log_level: str) -> None:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(config, announce, log_level))
