"""Shared machinery of the end-to-end scenarios (see /work/shared/SCENARIOS.md).

One real server process per test module; every test makes its own users and
namespaces, so tests never see each other's files. Each client is a real folder
under ``tmp_path`` with its own device token, synced with the library API.

- ``settle(*clients)`` syncs each client in turn until a whole pass changes
  nothing (bounded);
- ``tree(folder)`` is what a folder holds, ``.linesync/`` left out;
- ``World.assert_kept(...)`` checks that no saved version was lost: each one is
  on disk somewhere (at its path or in a conflict copy) or in the server's
  history of its path;
- ``ThreadProxy`` counts the bytes between one client and the server.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import stat as st
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from linesync.client.api import Client
from linesync.client.engine import SyncResult
from linesync.client.remote import Remote
from linesync.client.transfer import split
from linesync.core.ids import unpack_ids
from linesync.protocol.schemas import Entry, Kind
from tests.support.api import admin, new_token, ns_id, unique
from tests.support.proxy import ThreadProxy
from tests.support.server import ServerProc

# Files bigger than this are compared by digest in ``tree`` (the 200 MB scenario).
BIG = 32 * 2**20


# -- the tree of a folder ----------------------------------------------------------


@dataclass(frozen=True)
class Big:
    """A large file's bytes, by size and digest (keeps two 200 MB trees out of memory)."""

    size: int
    sha256: str


Node = tuple[Any, ...]


def _file_bytes(p: Path) -> bytes | Big:
    size = p.stat().st_size
    if size <= BIG:
        return p.read_bytes()
    h = hashlib.sha256()
    with open(p, "rb") as f:
        while block := f.read(8 * 2**20):
            h.update(block)
    return Big(size, h.hexdigest())


def tree(folder: Path) -> dict[str, Node]:
    """{relative path: ("file", bytes, exec bit) | ("dir",) | ("link", target)}.

    Paths are NFC-normalized (as linesync paths are), so a folder that keeps an
    NFD name on disk compares equal to one that holds the NFC name; two names
    that normalize alike in one folder are an error here (one must have been
    renamed to a clash copy). Symlinks are never followed. ``.linesync/`` at the
    root is skipped."""
    out: dict[str, Node] = {}

    def walk(disk: Path, prefix: str) -> None:
        with os.scandir(disk) as it:
            items = sorted(it, key=lambda e: e.name)
        for item in items:
            if not prefix and item.name == ".linesync":
                continue
            name = unicodedata.normalize("NFC", item.name)
            rel = f"{prefix}/{name}" if prefix else name
            assert rel not in out, f"{folder}: two names for {rel!r} on disk"
            s = item.stat(follow_symlinks=False)
            if st.S_ISLNK(s.st_mode):
                out[rel] = ("link", os.readlink(item.path))
            elif st.S_ISDIR(s.st_mode):
                out[rel] = ("dir",)
                walk(Path(item.path), rel)
            elif st.S_ISREG(s.st_mode):
                out[rel] = ("file", _file_bytes(Path(item.path)), bool(s.st_mode & 0o100))
            else:
                out[rel] = ("other",)

    walk(folder, "")
    return out


def files(t: dict[str, Node]) -> dict[str, bytes | Big]:
    """Only the regular files of a tree: {path: bytes}."""
    return {p: n[1] for p, n in t.items() if n[0] == "file"}


def conflict_copies(t: dict[str, Node]) -> list[str]:
    return sorted(p for p in t if "(conflict from " in p)


def clash_copies(t: dict[str, Node]) -> list[str]:
    return sorted(p for p in t if "(name clash from " in p or "(case conflict from " in p)


# -- syncing -------------------------------------------------------------------------


def did_something(r: SyncResult) -> bool:
    return bool(
        r.uploaded
        or r.downloaded
        or r.moved
        or r.merged
        or r.deleted_local
        or r.deleted_remote
        or r.conflicts
    )


def settle(*clients: Client, rounds: int = 4) -> list[SyncResult]:
    """Sync each client in turn until one whole pass changes nothing and every
    client converged; at most ``rounds`` passes. Every result, in order."""
    results: list[SyncResult] = []
    last: list[SyncResult] = []
    for _ in range(rounds):
        last = [c.sync_once() for c in clients]
        results.extend(last)
        if all(r.converged and not did_something(r) for r in last):
            return results
    raise AssertionError(f"clients did not settle in {rounds} passes; last pass: {last}")


def assert_same_trees(*clients: Client) -> dict[str, Node]:
    """Every folder holds the same tree; that tree."""
    first = tree(clients[0].folder)
    for c in clients[1:]:
        other = tree(c.folder)
        if other != first:
            only_a = sorted(set(first) - set(other))
            only_b = sorted(set(other) - set(first))
            differ = sorted(p for p in set(first) & set(other) if first[p] != other[p])
            raise AssertionError(
                f"{clients[0].folder.name} and {c.folder.name} differ: only in the first "
                f"{only_a}, only in the second {only_b}, different {differ}"
            )
    return first


# -- a byte-counting proxy on its own event loop ------------------------------------------


# -- users, namespaces, clients ---------------------------------------------------------


@dataclass
class World:
    """Fresh users, namespaces and client folders on the module's server."""

    srv: ServerProc
    root: Path
    proxies: list[ThreadProxy] = field(default_factory=list)

    def user(self, prefix: str = "u") -> str:
        name = unique(prefix)
        admin(self.srv, "user", "add", name)
        return name

    def token(self, user: str, device: str, read_only: bool = False) -> str:
        return new_token(self.srv, user, device, read_only)

    def namespace(self, owner: str, prefix: str = "team") -> str:
        name = unique(prefix)
        admin(self.srv, "namespace", "create", name, "--owner", owner)
        return name

    def ns_id(self, name: str) -> int:
        return ns_id(self.srv, name)

    def proxy(self) -> ThreadProxy:
        p = ThreadProxy(self.srv.url)
        self.proxies.append(p)
        return p

    def client(
        self,
        user: str,
        device: str,
        *,
        namespace: str | None = None,
        read_only_token: bool = False,
        via: ThreadProxy | None = None,
        folder: str | None = None,
    ) -> Client:
        """A new folder synced with ``namespace`` (default: the user's home) by
        a new device token of ``user``; through ``via`` when given."""
        tok = self.token(user, device, read_only_token)
        url = via.url if via is not None else self.srv.url
        path = self.root / (folder or f"{user}-{device}")
        return Client.init(path, server=url, token=tok, namespace=namespace)

    def pair(self, *devices: str) -> list[Client]:
        """Clients of one fresh user's home namespace, one per device
        (default: laptop and desktop)."""
        user = self.user()
        return [self.client(user, d) for d in devices or ("laptop", "desktop")]

    def close(self) -> None:
        for p in self.proxies:
            p.close()

    # -- the server's side ----------------------------------------------------------

    def history(self, client: Client, path: str) -> list[Entry]:
        """Every version of ``path`` on the server, newest first, file entries
        with their full content (as ``linesync log`` sees them)."""

        async def go() -> list[Entry]:
            async with Remote(self.srv.url, client.config.token) as r:
                ns = client.config.namespace
                hist = await r.history(ns, path, limit=1000)
                return [
                    await r.entry(ns, e.jid) if e.kind is Kind.FILE else e for e in hist.entries
                ]

        return asyncio.run(go())

    def head(self, client: Client) -> int:
        async def go() -> int:
            async with Remote(self.srv.url, client.config.token) as r:
                return (await r.head(client.config.namespace)).jid

        return asyncio.run(go())

    def in_history(self, client: Client, path: str, data: bytes) -> bool:
        ids, _ = split(data)
        for e in self.history(client, path):
            content = e.content if e.kind is Kind.FILE else None
            if content is not None and content.ids is not None and unpack_ids(content.ids) == ids:
                return True
        return False

    def server_lacks(self, client: Client, data: bytes) -> bool:
        """The client's namespace holds none of the chunks of ``data``."""
        ids, _ = split(data)

        async def go() -> bool:
            async with Remote(self.srv.url, client.config.token) as r:
                resp = await r.missing(client.config.namespace, ids)
                return set(unpack_ids(resp.missing)) == set(ids)

        return asyncio.run(go())

    def assert_kept(self, clients: list[Client], path: str, *versions: bytes) -> None:
        """No saved version is lost: each is a file somewhere in one of the folders
        (at ``path`` or in a conflict copy) or a version of ``path`` on the server."""
        on_disk: set[bytes] = set()
        for c in clients:
            for data in files(tree(c.folder)).values():
                if isinstance(data, bytes):
                    on_disk.add(data)
        for v in versions:
            if v in on_disk:
                continue
            assert self.in_history(clients[0], path, v), (
                f"a saved version of {path} is lost: {v[:80]!r}... is neither on disk "
                "nor in the server's history"
            )


# -- small file helpers ------------------------------------------------------------------


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)
    return path


def lines(n: int, tag: str = "") -> list[str]:
    return [f"{tag}line {i:03d} of a recipe, with some words in it\n" for i in range(n)]
