"""Start the server: open the stores, mint the first token, run uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import uvicorn

from linesync.server.app import create_app
from linesync.server.config import ServerConfig
from linesync.server.stores.packs import DiskPackStore
from linesync.server.stores.sqlite import SqliteStore

FIRST_TOKEN_FILE = "first-token"
LOCK_FILE = "server.lock"


class DataDirBusy(Exception):
    """Another process holds the data directory."""


@contextlib.contextmanager
def exclusive(data_dir: Path) -> Iterator[None]:
    """Hold the data directory's lock: one server (or offline GC) at a time."""
    data_dir.mkdir(parents=True, exist_ok=True)
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
async def open_stores(config: ServerConfig) -> AsyncIterator[tuple[SqliteStore, DiskPackStore]]:
    config.data_dir.mkdir(parents=True, exist_ok=True)
    meta = await SqliteStore.open(config.meta_path)
    packs = DiskPackStore(config.packs_dir, pack_size_limit=config.pack_size_limit)
    try:
        yield meta, packs
    finally:
        await packs.close()
        await meta.close()


async def first_start(meta: SqliteStore, data_dir: Path) -> str | None:
    """On an empty server, create user "admin" with a read-write token, keep a copy
    of it readable only by this user in the data directory, and return it."""
    if await meta.list_users():
        return None
    await meta.create_user("admin")
    token = await meta.create_token("admin", "admin", "rw")
    path = data_dir / FIRST_TOKEN_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted connections only
    # then, and without it every kept-alive request waits ~40 ms for delayed ACKs.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


async def serve(
    config: ServerConfig, announce: Callable[[str, str | None], None], log_level: str = "warning"
) -> None:
    sock = bind(config.host, config.port)
    host, port = sock.getsockname()[:2]
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    with exclusive(config.data_dir):
        await _serve(config, sock, url, announce, log_level)


async def _serve(
    config: ServerConfig,
    sock: socket.socket,
    url: str,
    announce: Callable[[str, str | None], None],
    log_level: str,
) -> None:
    async with open_stores(config) as (meta, packs):
        token = await first_start(meta, config.data_dir)
        app = create_app(config, meta, packs)
        uv = uvicorn.Config(
            app,
            log_level=log_level,
            access_log=False,
            server_header=False,
            date_header=False,
            timeout_graceful_shutdown=3,
            lifespan="on",
        )
        server = uvicorn.Server(uv)
        announce(url, token)
        await server.serve(sockets=[sock])


def run(config: ServerConfig, announce: Callable[[str, str | None], None], log_level: str) -> None:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(config, announce, log_level))
