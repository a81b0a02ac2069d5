"""Contract suite for `MetadataStore`: every implementation must pass all of it.

To add an implementation (e.g. PostgreSQL), write a `Backend` for it — `open()`
returns a new store instance on the backend's storage, so calling it again is
a restart, or a second server process on the same data — and add it to
`BACKENDS`. The store methods are async; each test runs its body with
`asyncio.run` (no pytest plugin needed).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pytest

from linesync.core import blocklist as bl
from linesync.core.ids import ChunkId, chunk_id, pack_ids, unpack_ids
from linesync.protocol.errors import Code, LinesyncError
from linesync.protocol.schemas import CommitOp, Content, Kind
from linesync.server.commit import Limits
from linesync.server.model import ChunkLoc
from linesync.server.stores.base import MetadataStore, StoreError
from linesync.server.stores.common import hash_token
from linesync.server.stores.postgres import PostgresStore
from linesync.server.stores.sqlite import SqliteStore
from linesync.server.stores.sqlite_admin import _MIGRATIONS, SCHEMA_VERSION


class Backend(Protocol):
    async def open(self) -> MetadataStore:
        """A new store instance on this backend's storage."""
        ...


@dataclass
class SqliteBackend:
    path: Path

    async def open(self) -> MetadataStore:
        return await SqliteStore.open(self.path)


@dataclass
class PostgresBackend:
    url: str

    async def open(self) -> MetadataStore:
        return await PostgresStore.open(self.url, max_size=4)


BACKENDS: dict[str, Callable[[pytest.FixtureRequest], Backend]] = {
    "sqlite": lambda req: SqliteBackend(req.getfixturevalue("tmp_path") / "meta.sqlite3"),
    "postgres": lambda req: PostgresBackend(req.getfixturevalue("pg_url")),
}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest) -> Backend:
    return BACKENDS[request.param](request)


def run(backend: Backend, body: Callable[[MetadataStore], Awaitable[None]]) -> None:
    """Open a store, run ``body`` on it, close it."""

    async def go() -> None:
        store = await backend.open()
        try:
            await body(store)
        finally:
            await store.close()

    asyncio.run(go())


# -- helpers -------------------------------------------------------------------

LIMITS = Limits()
C = [chunk_id(b"chunk %d" % i) for i in range(400)]


def size(cid: ChunkId) -> int:
    return 100 + C.index(cid) if cid in C else 7


def loc(cid: ChunkId, pack: str = "pack-1", offset: int = 0) -> ChunkLoc:
    return ChunkLoc(
        chunk_id=cid, pack=pack, offset=offset, length=size(cid) // 2, codec=1, raw_size=size(cid)
    )


def file(path: str, ids: Sequence[ChunkId], base: int = 0) -> CommitOp:
    return CommitOp(
        path=path,
        kind=Kind.FILE,
        base_jid=base,
        size=sum(map(size, ids)),
        mtime_ns=123,
        content=Content(ids=pack_ids(ids)),
    )


def mkdir(path: str, base: int = 0) -> CommitOp:
    return CommitOp(path=path, kind=Kind.DIRECTORY, base_jid=base)


def rm(path: str, base: int) -> CommitOp:
    return CommitOp(path=path, kind=Kind.TOMBSTONE, base_jid=base)


async def user(store: MetadataStore, name: str) -> tuple[int, int]:
    """Create a user; return its id and its home namespace's id."""
    uid = await store.create_user(name)
    (home,) = await store.namespaces_of(uid)
    return uid, home.id


async def upload(store: MetadataStore, ns: int, ids: Sequence[ChunkId]) -> None:
    await store.add_chunks(ns, [loc(c, offset=i) for i, c in enumerate(dict.fromkeys(ids))])


async def commit_ok(
    store: MetadataStore, ns: int, ops: Sequence[CommitOp], device: str = "dev1"
) -> list[int]:
    """Upload what the ops need, commit them, insist on "ok"; return the JIDs."""
    for op in ops:
        if op.content is not None and op.content.ids is not None:
            await upload(store, ns, unpack_ids(op.content.ids))
    out = await store.commit(ns, ops, device, LIMITS)
    assert [r.status for r in out.results] == ["ok"] * len(ops), out.results
    return [r.jid or 0 for r in out.results]


# -- users and tokens ----------------------------------------------------------


def test_users_and_tokens(backend: Backend) -> None:
    async def body(s: MetadataStore) -> None:
        alice = await s.create_user("alice")
        bob = await s.create_user("bob")
        assert alice != bob
        assert await s.list_users() == ["alice", "bob"]

        laptop = await s.create_token("alice", "laptop", "rw")
        phone = await s.create_token("alice", "phone", "ro")
        assert laptop != phone
        info = await s.authenticate(laptop)
        assert info is not None
        assert (info.user_id, info.user, info.device, info.role) == (alice, "alice", "laptop", "rw")
        info = await s.authenticate(phone)
        assert info is not None and (info.device, info.role) == ("phone", "ro")
        assert await s.authenticate("lst_not-a-token") is None
        assert await s.authenticate("") is None

        listed = await s.list_tokens("alice")
        assert [(t.user, t.device, t.role) for t in listed] == [
            ("alice", "laptop", "rw"),
            ("alice", "phone", "ro"),
        ]
        assert not any(laptop in repr(t) or phone in repr(t) for t in listed)  # never the secret

        assert await s.revoke_tokens("alice", "phone") == 1
        assert await s.authenticate(phone) is None
        assert await s.authenticate(laptop) is not None
        assert await s.revoke_tokens("alice", "phone") == 0
        bobs = await s.create_token("bob", "laptop", "rw")
        assert await s.revoke_tokens("alice") == 1
        assert await s.authenticate(laptop) is None
        assert await s.authenticate(bobs) is not None

    run(backend, body)


def test_token_expiry(backend: Backend) -> None:
    """A token whose expiry is at or before now is refused like a revoked one."""

    async def body(s: MetadataStore) -> None:
        alice = await s.create_user("alice")
        now = time.time()
        past = await s.create_token("alice", "old", "rw", expires=now - 1)
        long_past = await s.create_token("alice", "older", "ro", expires=0.0)
        future = await s.create_token("alice", "laptop", "rw", expires=now + 3600)
        never = await s.create_token("alice", "phone", "ro", expires=None)
        default = await s.create_token("alice", "tablet", "rw")
        assert await s.authenticate(past) is None
        assert await s.authenticate(long_past) is None
        info = await s.authenticate(future)
        assert info is not None
        assert (info.user_id, info.user, info.device, info.role) == (alice, "alice", "laptop", "rw")
        info = await s.authenticate(never)
        assert info is not None and (info.device, info.role) == ("phone", "ro")
        assert await s.authenticate(default) is not None

        listed = {t.device: t for t in await s.list_tokens("alice")}
        assert listed["old"].expires == pytest.approx(now - 1)
        assert listed["older"].expires == 0.0
        assert listed["laptop"].expires == pytest.approx(now + 3600)
        assert listed["phone"].expires is None and listed["tablet"].expires is None
        assert all(t.revoked is None for t in listed.values())  # expired is not revoked

        # Revoking still works on a token that has not expired yet.
        assert await s.revoke_tokens("alice", "laptop") == 1
        assert await s.authenticate(future) is None
        assert await s.authenticate(never) is not None

    run(backend, body)


def test_token_expires_while_in_use(backend: Backend) -> None:
    """The expiry is compared with the time of each authentication, not of creation."""

    async def body(s: MetadataStore) -> None:
        await s.create_user("alice")
        expires = time.time() + 0.5
        soon = await s.create_token("alice", "laptop", "rw", expires=expires)
        other = await s.create_token("alice", "phone", "rw")
        assert await s.authenticate(soon) is not None
        deadline = time.monotonic() + 10
        while await s.authenticate(soon) is not None:
            assert time.monotonic() < deadline, "the token never expired"
            await asyncio.sleep(0.05)
        assert time.time() >= expires  # not refused early
        assert await s.authenticate(other) is not None

    run(backend, body)


@pytest.mark.parametrize(
    "action",
    [
        pytest.param(lambda s: s.create_user("alice"), id="duplicate-user"),
        pytest.param(lambda s: s.create_token("nobody", "d", "rw"), id="token-for-unknown-user"),
        pytest.param(
            lambda s: s.create_token("nobody", "d", "rw", time.time() + 60),
            id="expiring-token-for-unknown-user",
        ),
        pytest.param(
            lambda s: s.create_token("alice", "d", "rw", float("nan")), id="token-expiry-nan"
        ),
        pytest.param(
            lambda s: s.create_token("alice", "d", "rw", float("inf")), id="token-expiry-inf"
        ),
        pytest.param(lambda s: s.revoke_tokens("nobody"), id="revoke-for-unknown-user"),
        pytest.param(lambda s: s.create_namespace("team", "nobody"), id="ns-for-unknown-owner"),
        pytest.param(lambda s: s.create_namespace("alice", "alice"), id="duplicate-namespace"),
        pytest.param(lambda s: s.share("nowhere", "alice", "rw"), id="share-unknown-namespace"),
        pytest.param(lambda s: s.share("alice", "nobody", "rw"), id="share-with-unknown-user"),
        pytest.param(lambda s: s.reset_namespace("nowhere"), id="reset-unknown-namespace"),
    ],
)
def test_admin_errors_are_store_errors(
    backend: Backend, action: Callable[[MetadataStore], Awaitable[object]]
) -> None:
    async def body(s: MetadataStore) -> None:
        await s.create_user("alice")
        with pytest.raises(StoreError):
            await action(s)
        assert await s.list_users() == ["alice"]
        assert [n.name for n in await s.list_namespaces()] == ["alice"]
        assert await s.list_tokens() == []

    run(backend, body)


# -- namespaces ----------------------------------------------------------------


def test_namespaces_and_membership(backend: Backend) -> None:
    async def body(s: MetadataStore) -> None:
        alice, alice_home = await user(s, "alice")
        bob, bob_home = await user(s, "bob")
        assert alice_home != bob_home
        home = await s.namespace(alice_home, alice)
        assert home is not None
        assert (home.name, home.role, home.head) == ("alice", "rw", 0)
        assert home.journal
        assert await s.namespace(alice_home, bob) is None
        assert await s.namespace(bob_home, alice) is None
        assert await s.namespace(999_999, alice) is None

        team = await s.create_namespace("team", "alice")
        assert [n.id for n in await s.namespaces_of(alice)] == [alice_home, team]
        assert [n.id for n in await s.namespaces_of(bob)] == [bob_home]
        assert await s.namespace(team, bob) is None

        await s.share("team", "bob", "ro")
        ns = await s.namespace(team, bob)
        assert ns is not None and (ns.name, ns.role) == ("team", "ro")
        assert [(n.name, n.role) for n in await s.namespaces_of(bob)] == [
            ("bob", "rw"),
            ("team", "ro"),
        ]
        await s.share("team", "bob", "rw")
        ns = await s.namespace(team, bob)
        assert ns is not None and ns.role == "rw"
        listed = {n.name: n for n in await s.list_namespaces()}
        assert listed["team"].owner == "alice"
        assert listed["team"].members == {"alice": "rw", "bob": "rw"}

        await s.share("team", "bob", None)
        assert await s.namespace(team, bob) is None
        assert [n.id for n in await s.namespaces_of(bob)] == [bob_home]
        ns = await s.namespace(team, alice)
        assert ns is not None and ns.role == "rw"

    run(backend, body)


# -- the journal ---------------------------------------------------------------


def test_commit_assigns_gapless_jids_and_moves_the_head(backend: Backend) -> None:
    async def body(s: MetadataStore) -> None:
        alice, ns = await user(s, "alice")
        _, other = await user(s, "bob")
        assert (await s.head(ns)).jid == 0
        assert await commit_ok(s, ns, [mkdir("d"), file("d/a", C[:3]), file("b", [])]) == [1, 2, 3]
        assert await commit_ok(s, ns, [file("d/a", C[3:5], base=2)]) == [4]
        # a batch where nothing is written leaves the head alone
        out = await s.commit(ns, [rm("never", 0), file("b", C[:1])], "dev1", LIMITS)
        assert [(r.status, r.reason) for r in out.results] == [
            ("ok", None),
            ("conflict", "changed"),
        ]
        assert out.head == 4
        # a refused batch writes nothing, and the next commit takes the next JID
        with pytest.raises(LinesyncError) as info:
            await s.commit(ns, [mkdir("x"), CommitOp(path="y", kind=Kind.FILE)], "dev1", LIMITS)
        assert info.value.code is Code.BAD_REQUEST
        assert (await s.head(ns)).jid == 4
        assert await s.entry(ns, 5) is None
        assert await commit_ok(s, ns, [mkdir("x")]) == [5]
        head = await s.head(ns)
        assert head.jid == 5
        assert head.nonce == await s.nonce(ns, 5)
        assert [n.head for n in await s.namespaces_of(alice)] == [5]
        # other namespaces have their own journal
        assert await commit_ok(s, other, [mkdir("d")]) == [1]
        assert (await s.head(other)).journal != head.journal
        # a directory move writes consecutive JIDs
        out = await s.commit(
            ns,
            [CommitOp(path="e", kind=Kind.DIRECTORY, move_from="d", move_base=1)],
            "dev1",
            LIMITS,
        )
        assert [(r.status, r.jid) for r in out.results] == [("ok", 6)]
        assert out.head == 9  # e, e/a, then tombstones of d/a and d
        kinds = [(r.jid, r.path, r.kind) for r in [await s.entry(ns, j) for j in range(6, 10)] if r]
        assert kinds == [
            (6, "e", Kind.DIRECTORY),
            (7, "e/a", Kind.FILE),
            (8, "d/a", Kind.TOMBSTONE),
            (9, "d", Kind.TOMBSTONE),
        ]
        assert await s.blocklist(ns, 7) == C[3:5]

    run(backend, body)


def test_commit_reports_missing_chunks_per_namespace(backend: Backend) -> None:
    async def body(s: MetadataStore) -> None:
        _, a = await user(s, "alice")
        _, b = await user(s, "bob")
        await upload(s, b, C[:3])
        op = file("f", C[:3])
        out = await s.commit(a, [op], "dev1", LIMITS)
        (r,) = out.results
        assert r.status == "missing" and r.missing is not None
        assert unpack_ids(r.missing) == C[:3]
        assert out.head == 0
        await upload(s, a, C[1:2])
        (r,) = (await s.commit(a, [op], "dev1", LIMITS)).results
        assert r.missing is not None and unpack_ids(r.missing) == [C[0], C[2]]
        await upload(s, a, C[:3])
        (r,) = (await s.commit(a, [op], "dev1", LIMITS)).results
        assert (r.status, r.jid) == ("ok", 1)

    run(backend, body)


def test_commit_checks_sizes_against_the_chunk_index(backend: Backend) -> None:
    async def body(s: MetadataStore) -> None:
        _, ns = await user(s, "alice")
        await upload(s, ns, C[:2])
        bad = CommitOp(
            path="f",
            kind=Kind.FILE,
            size=size(C[0]) + size(C[1]) + 1,
            content=Content(ids=pack_ids(C[:2])),
        )
        with pytest.raises(LinesyncError) as info:
            await s.commit(ns, [bad], "dev1", LIMITS)
        assert info.value.code is Code.SIZE_MISMATCH
        assert (await s.head(ns)).jid == 0

    run(backend, body)


async def _journal(s: MetadataStore, ns: int) -> None:
    """f=1, g=2, h=3, f edited=4, g deleted=5."""
    assert await commit_ok(s, ns, [file("f", C[:2]), file("g", C[2:3]), file("h", [])]) == [1, 2, 3]
    assert await commit_ok(s, ns, [file("f", C[5:7], base=1)], device="dev2") == [4]
    assert await commit_ok(s, ns, [rm("g", 2)]) == [5]


def test_changes_paginate_and_dedup_by_path(backend: Backend) -> None:
    async def body(s: MetadataStore) -> None:
        _, ns = await user(s, "alice")
        await _journal(s, ns)
        rows, head = await s.changes(ns, 0, 100)
        assert head == 5
        assert [(r.jid, r.path, r.kind) for r in rows] == [
            (3, "h", Kind.FILE),
            (4, "f", Kind.FILE),
            (5, "g", Kind.TOMBSTONE),
        ]
        f = rows[1]
        assert (f.device, f.base_jid, f.size, f.mtime_ns) == (
            "dev2",
            1,
            size(C[5]) + size(C[6]),
            123,
        )
        assert f.chash == bl.content_hash(C[5:7])
        # page by page, continuing after the last JID seen
        pages, after = [], 0
        while True:
            page, _ = await s.changes(ns, after, 1)
            if not page:
                break
            pages.append([r.jid for r in page])
            after = page[-1].jid
        assert pages == [[3], [4], [5]]
        assert [r.jid for r in (await s.changes(ns, 3, 100))[0]] == [4, 5]
        assert (await s.changes(ns, 5, 100))[0] == []
        assert (await s.changes(ns, 1, 2))[0][0].jid == 3

    run(backend, body)


def test_entry_version_at_and_history(backend: Backend) -> None:
    async def body(s: MetadataStore) -> None:
        _, ns = await user(s, "alice")
        await _journal(s, ns)
        e = await s.entry(ns, 4)
        assert e is not None and (e.path, e.kind, e.base_jid, e.device) == (
            "f",
            Kind.FILE,
            1,
            "dev2",
        )
        assert await s.entry(ns, 0) is None
        assert await s.entry(ns, 6) is None

        def jid(row: object) -> int | None:
            return getattr(row, "jid", None)

        assert jid(await s.version_at(ns, "f", 0)) is None
        assert jid(await s.version_at(ns, "f", 1)) == 1
        assert jid(await s.version_at(ns, "f", 3)) == 1
        assert jid(await s.version_at(ns, "f", 4)) == 4
        assert jid(await s.version_at(ns, "f", 100)) == 4
        assert jid(await s.version_at(ns, "g", 4)) == 2
        gone = await s.version_at(ns, "g", 5)
        assert gone is not None and gone.kind is Kind.TOMBSTONE
        assert await s.version_at(ns, "nope", 5) is None

        assert [r.jid for r in await s.history(ns, "f", 2**62, 10)] == [4, 1]
        assert [r.jid for r in await s.history(ns, "f", 4, 10)] == [1]
        assert [r.jid for r in await s.history(ns, "f", 1, 10)] == []
        assert [r.jid for r in await s.history(ns, "f", 2**62, 1)] == [4]
        assert [r.jid for r in await s.history(ns, "g", 2**62, 10)] == [5, 2]
        assert await s.history(ns, "nope", 2**62, 10) == []

        assert await s.blocklist(ns, 1) == C[:2]
        assert await s.blocklist(ns, 3) == []
        assert await s.blocklist(ns, 4) == C[5:7]
        assert await s.blocklist(ns, 5) is None  # a tombstone has no content
        assert await s.blocklist(ns, 99) is None

    run(backend, body)


def test_blocklist_resolves_through_long_delta_chains_and_after_reopening(
    backend: Backend,
) -> None:
    versions: dict[int, list[ChunkId]] = {}
    home: list[int] = []

    async def body(s: MetadataStore) -> None:
        _, ns = await user(s, "alice")
        home.append(ns)
        ids = list(C[:40])
        (jid,) = await commit_ok(s, ns, [file("big", ids)])
        versions[jid] = list(ids)
        for i in range(100):
            ids[(7 * i) % 40] = C[40 + i]
            if i % 2:  # as a delta against the previous version
                pos = (7 * i) % 40
                op = CommitOp(
                    path="big",
                    kind=Kind.FILE,
                    base_jid=jid,
                    size=sum(map(size, ids)),
                    content=Content(base=jid, edits=[(pos, 1, pack_ids([ids[pos]]))]),
                )
                await upload(s, ns, [ids[pos]])
                out = await s.commit(ns, [op], "dev1", LIMITS)
                assert [r.status for r in out.results] == ["ok"], out.results
                jid = out.results[0].jid or 0
            else:  # with full ids
                (jid,) = await commit_ok(s, ns, [file("big", ids, base=jid)])
            versions[jid] = list(ids)
        assert sorted(versions) == list(range(1, 102))
        for j, expected in versions.items():
            assert await s.blocklist(ns, j) == expected, j

    async def again(s: MetadataStore) -> None:
        for j in sorted(versions, reverse=True):
            assert await s.blocklist(home[0], j) == versions[j], j

    run(backend, body)
    run(backend, again)


# -- chunks --------------------------------------------------------------------


def test_chunks_are_held_per_namespace(backend: Backend) -> None:
    async def body(s: MetadataStore) -> None:
        _, a = await user(s, "alice")
        _, b = await user(s, "bob")
        x, y = loc(C[0], "pack-1", 0), loc(C[1], "pack-2", 4096)
        await s.add_chunks(a, [x, y])
        assert await s.missing(a, [C[0], C[1], C[2]]) == {C[2]}
        assert await s.missing(b, [C[0], C[1], C[2]]) == {C[0], C[1], C[2]}
        assert await s.locate(a, [C[0], C[1], C[2]]) == {C[0]: x, C[1]: y}
        assert await s.locate(b, [C[0], C[1]]) == {}
        assert await s.locate_stored([C[0], C[1], C[2]]) == {C[0]: x, C[1]: y}
        # b uploads the same bytes (and the server wrote them again, so that
        # timing tells nothing): the newest copy is the one indexed, for both.
        z = loc(C[0], "pack-9", 1)
        await s.add_chunks(b, [z])
        assert await s.missing(b, [C[0], C[1]]) == {C[1]}
        assert await s.locate(b, [C[0]]) == {C[0]: z}
        assert await s.locate(a, [C[0]]) == {C[0]: z}
        assert await s.missing(a, []) == set()
        # many ids at once
        await upload(s, a, C)
        assert await s.missing(a, C) == set()
        assert len(await s.locate(a, C)) == len(C)

    run(backend, body)


async def _age(seconds: float = 0.05) -> None:
    await asyncio.sleep(seconds)


def test_gc_drops_stale_uploads_and_unheld_chunks(backend: Backend) -> None:
    async def body(s: MetadataStore) -> None:
        _, a = await user(s, "alice")
        _, b = await user(s, "bob")
        stale, committed, shared, both_stale = C[0], C[1], C[2], C[3]
        await upload(s, a, [stale, committed, shared, both_stale])
        await upload(s, b, [both_stale])
        await commit_ok(s, a, [file("f", [committed])])
        await commit_ok(s, b, [file("g", [shared])])  # b uploads and commits it
        # nothing is old enough yet
        stats, dead = await s.gc(3600)
        assert (stats.stale_refs, stats.chunks_deleted, dead) == (0, 0, [])
        await _age()
        stats, dead = await s.gc(0)
        # a's refs to stale, shared and both_stale go; b's ref to both_stale goes
        assert stats.stale_refs == 4
        assert sorted(d.chunk_id for d in dead) == sorted([stale, both_stale])
        assert stats.chunks_deleted == 2
        assert stats.bytes_freed == loc(stale).length + loc(both_stale).length
        assert set(await s.locate_stored([stale, committed, shared, both_stale])) == {
            committed,
            shared,
        }
        assert await s.missing(a, [stale, committed, shared]) == {stale, shared}
        assert await s.missing(b, [shared, both_stale]) == {both_stale}
        assert await s.blocklist(a, 1) == [committed]
        # a second round finds nothing
        stats, dead = await s.gc(0)
        assert (stats.stale_refs, stats.chunks_deleted, dead) == (0, 0, [])

    run(backend, body)


def test_gc_keeps_chunks_of_old_versions(backend: Backend) -> None:
    async def body(s: MetadataStore) -> None:
        _, ns = await user(s, "alice")
        await commit_ok(s, ns, [file("f", C[:2])])
        await commit_ok(s, ns, [file("f", C[2:3], base=1)])
        await commit_ok(s, ns, [rm("f", 2)])
        await _age()
        stats, dead = await s.gc(0)
        assert dead == [] and stats.chunks_deleted == 0
        assert await s.missing(ns, C[:3]) == set()
        assert set(await s.locate(ns, C[:3])) == set(C[:3])

    run(backend, body)


def test_uploading_again_restarts_the_grace(backend: Backend) -> None:
    async def body(s: MetadataStore) -> None:
        _, ns = await user(s, "alice")
        await upload(s, ns, C[:1])
        await _age(0.2)
        await upload(s, ns, C[:1])  # the client retried: the grace starts again
        stats, _ = await s.gc(0.1)
        assert stats.stale_refs == 0
        assert await s.missing(ns, C[:1]) == set()

    run(backend, body)


def test_gc_racing_commits_from_another_instance_loses_nothing(backend: Backend) -> None:
    """One instance collects with a grace of 20 ms, over and over, while another
    uploads and commits: a commit that lost its uploads to GC says "missing"
    (and the client uploads again), never refers to a chunk that is gone."""

    async def go() -> None:
        server, collector = await backend.open(), await backend.open()
        stop = asyncio.Event()
        rounds = 0

        async def collect() -> None:
            nonlocal rounds
            while not stop.is_set() and rounds < 2000:
                await collector.gc(0.02)
                rounds += 1
                await asyncio.sleep(0)

        try:
            _, ns = await user(server, "alice")
            gc_task = asyncio.create_task(collect())
            missing = 0
            for i in range(40):
                ids = C[4 * i : 4 * i + 4]
                seen = rounds  # a GC round between any two commits, however busy the machine
                deadline = time.monotonic() + 10
                while rounds == seen and time.monotonic() < deadline:
                    await asyncio.sleep(0.001)
                for _ in range(50):
                    await upload(server, ns, ids)
                    out = await server.commit(ns, [file(f"f{i}", ids)], "dev1", LIMITS)
                    if out.results[0].status == "ok":
                        break
                    assert out.results[0].status == "missing", out.results
                    missing += 1
                else:
                    raise AssertionError(f"f{i} never committed")
            stop.set()
            await gc_task
            assert rounds >= 40, "GC did not run alongside the commits"
            print(f"{rounds} GC rounds, {missing} commits found their uploads gone")
            assert await server.check_entries() == []
            assert await collector.check_entries() == []
            assert (await server.head(ns)).jid == 40
            for jid in range(1, 41):
                ids = await collector.blocklist(ns, jid)
                assert ids is not None and set(await collector.locate(ns, ids)) == set(ids)
        finally:
            stop.set()
            await collector.close()
            await server.close()

    asyncio.run(go())


def test_concurrent_commits_from_several_instances_keep_jids_gapless(backend: Backend) -> None:
    """Four instances (server processes) commit to one namespace at once: every
    JID is used once, in order, and of four creations of one path exactly one
    wins, the others conflict with it."""

    async def go() -> None:
        stores = [await backend.open() for _ in range(4)]
        try:
            _, ns = await user(stores[0], "alice")
            for s in stores:
                await upload(s, ns, C[:40])

            async def writer(k: int) -> list[int]:
                jids: list[int] = []
                for i in range(10):
                    out = await stores[k].commit(
                        ns, [file(f"w{k}-{i}", C[k * 10 + i : k * 10 + i + 1])], f"d{k}", LIMITS
                    )
                    assert [r.status for r in out.results] == ["ok"], out.results
                    jids.append(out.results[0].jid or 0)
                return jids

            done = await asyncio.gather(*(writer(k) for k in range(4)))
            every = sorted(j for jids in done for j in jids)
            assert every == list(range(1, 41))
            for jids in done:
                assert jids == sorted(jids)
            same = await asyncio.gather(
                *(
                    s.commit(ns, [file("same", C[:1])], f"d{k}", LIMITS)
                    for k, s in enumerate(stores)
                )
            )
            statuses = sorted(o.results[0].status for o in same)
            assert statuses == ["conflict", "conflict", "conflict", "ok"], statuses
            (winner,) = [o.results[0] for o in same if o.results[0].status == "ok"]
            for o in same:
                r = o.results[0]
                if r.status == "conflict":
                    assert r.reason == "changed" and r.current is not None
                    assert r.current.jid == winner.jid == 41
            assert await stores[1].check_entries() == []
        finally:
            for s in stores:
                await s.close()

    asyncio.run(go())


def test_chunks_in_packs(backend: Backend) -> None:
    async def body(s: MetadataStore) -> None:
        _, ns = await user(s, "alice")
        await s.add_chunks(ns, [loc(C[0], "pa", 50), loc(C[1], "pb", 10), loc(C[2], "pa", 5)])
        got = await s.chunks_in(["pa", "pc"])
        assert [(c.chunk_id, c.pack, c.offset) for c in got] == [
            (C[2], "pa", 5),
            (C[0], "pa", 50),
        ]
        assert await s.chunks_in([]) == []

    run(backend, body)


def test_a_lease_has_one_holder_until_it_runs_out(backend: Backend) -> None:
    async def go() -> None:
        a, b = await backend.open(), await backend.open()
        try:
            assert await a.lease("gc", "a", 0.3)
            assert not await b.lease("gc", "b", 60)
            assert await a.lease("gc", "a", 0.3)  # the holder renews
            await asyncio.sleep(0.4)
            assert await b.lease("gc", "b", 60)  # ran out: another takes it
            assert not await a.lease("gc", "a", 60)
            assert await a.lease("other", "a", 60)  # leases by name
        finally:
            await b.close()
            await a.close()

    asyncio.run(go())


def test_retired_packs_are_kept_for_the_next_collector(backend: Backend) -> None:
    async def go() -> None:
        a = await backend.open()
        try:
            before = time.time()
            await a.set_retired(["p1", "p2"], [])
            first = await a.retired()
            await asyncio.sleep(0.05)
            await a.set_retired(["p2", "p3"], ["p1"])
        finally:
            await a.close()
        b = await backend.open()
        try:
            got = await b.retired()
            assert sorted(got) == ["p2", "p3"]
            assert got["p2"] == first["p2"] >= before  # retired again: keeps its time
            assert got["p3"] > got["p2"]
        finally:
            await b.close()

    asyncio.run(go())


# -- reset ---------------------------------------------------------------------


def test_reset_namespace_empties_the_journal_under_a_new_id(backend: Backend) -> None:
    async def body(s: MetadataStore) -> None:
        alice, ns = await user(s, "alice")
        _, other = await user(s, "bob")
        await _journal(s, ns)
        await commit_ok(s, other, [file("o", C[:1])])
        before = await s.head(ns)
        assert await s.blocklist(ns, 1) == C[:2]  # (now cached, if the store caches)
        await s.reset_namespace("alice")
        after = await s.head(ns)
        assert after.jid == 0 and after.journal != before.journal
        home = await s.namespace(ns, alice)
        assert home is not None and (home.head, home.journal) == (0, after.journal)
        assert await s.changes(ns, 0, 100) == ([], 0)
        assert await s.entry(ns, 1) is None
        assert await s.blocklist(ns, 1) is None
        assert await s.history(ns, "f", 2**62, 10) == []
        assert await s.missing(ns, C[:3]) == set(C[:3])
        # the new journal starts at 1, with the new content
        assert await commit_ok(s, ns, [file("new", C[10:12])]) == [1]
        assert await s.blocklist(ns, 1) == C[10:12]
        # other namespaces are untouched
        assert (await s.head(other)).jid == 1
        assert await s.blocklist(other, 1) == C[:1]

    run(backend, body)


def test_reset_by_another_instance_is_seen(backend: Backend) -> None:
    """An admin command resets a namespace while a server is running on the same data."""

    async def go() -> None:
        server = await backend.open()
        admin = await backend.open()
        try:
            _, ns = await user(server, "alice")
            await commit_ok(server, ns, [file("f", C[:2])])
            assert await server.blocklist(ns, 1) == C[:2]
            await admin.reset_namespace("alice")
            assert (await server.head(ns)).jid == 0
            assert await commit_ok(server, ns, [file("g", C[20:21])]) == [1]
            assert await server.blocklist(ns, 1) == C[20:21]
            # a delta against the new version 1 must apply to the new content
            op = CommitOp(
                path="g",
                kind=Kind.FILE,
                base_jid=1,
                size=size(C[20]) + size(C[21]),
                content=Content(base=1, edits=[(1, 0, pack_ids([C[21]]))]),
            )
            await upload(server, ns, [C[21]])
            out = await server.commit(ns, [op], "dev1", LIMITS)
            assert [r.status for r in out.results] == ["ok"]
            assert await admin.blocklist(ns, 2) == [C[20], C[21]]
            assert await server.blocklist(ns, 2) == [C[20], C[21]]
            row = await admin.entry(ns, 2)
            assert row is not None and row.chash == bl.content_hash([C[20], C[21]])
        finally:
            await admin.close()
            await server.close()

    asyncio.run(go())


# -- durability ----------------------------------------------------------------


def test_reopen_keeps_everything(backend: Backend) -> None:
    saved: dict[str, object] = {}

    async def first(s: MetadataStore) -> None:
        alice, ns = await user(s, "alice")
        bob, _ = await user(s, "bob")
        team = await s.create_namespace("team", "alice")
        await s.share("team", "bob", "ro")
        saved.update(alice=alice, bob=bob, ns=ns, team=team)
        saved["token"] = await s.create_token("alice", "laptop", "rw")
        saved["revoked"] = await s.create_token("bob", "phone", "ro")
        await s.revoke_tokens("bob", "phone")
        saved["expiring"] = await s.create_token("bob", "laptop", "rw", time.time() + 3600)
        saved["expired"] = await s.create_token("bob", "tablet", "rw", time.time() - 1)
        saved["tokens"] = await s.list_tokens()
        await _journal(s, ns)
        await upload(s, team, C[30:32])  # held, not committed
        saved["head"] = await s.head(ns)
        saved["changes"] = await s.changes(ns, 0, 100)
        saved["history"] = await s.history(ns, "f", 2**62, 10)
        saved["listed"] = await s.list_namespaces()

    async def second(s: MetadataStore) -> None:
        alice, bob, ns, team = (saved[k] for k in ("alice", "bob", "ns", "team"))
        assert isinstance(alice, int) and isinstance(bob, int)
        assert isinstance(ns, int) and isinstance(team, int)
        assert await s.list_users() == ["alice", "bob"]
        token, revoked = saved["token"], saved["revoked"]
        assert isinstance(token, str) and isinstance(revoked, str)
        info = await s.authenticate(token)
        assert info is not None and (info.user_id, info.device) == (alice, "laptop")
        assert await s.authenticate(revoked) is None
        expiring, expired = saved["expiring"], saved["expired"]
        assert isinstance(expiring, str) and isinstance(expired, str)
        info = await s.authenticate(expiring)
        assert info is not None and (info.user_id, info.device) == (bob, "laptop")
        assert await s.authenticate(expired) is None
        assert await s.list_tokens() == saved["tokens"]
        t = await s.namespace(team, bob)
        assert t is not None and t.role == "ro"
        assert await s.list_namespaces() == saved["listed"]
        assert await s.head(ns) == saved["head"]
        assert await s.changes(ns, 0, 100) == saved["changes"]
        assert await s.history(ns, "f", 2**62, 10) == saved["history"]
        assert await s.blocklist(ns, 4) == C[5:7]
        assert await s.missing(team, C[30:33]) == {C[32]}
        assert await s.locate(team, C[30:31]) == {C[30]: loc(C[30], offset=0)}
        # and the journal continues where it stopped
        assert await commit_ok(s, ns, [mkdir("later")]) == [6]

    run(backend, first)
    run(backend, second)


# -- SQLite schema migrations --------------------------------------------------
# Not part of the contract: how the SQLite store upgrades a database file that
# an older linesync wrote.

# The schema of linesync's first metadata database (``user_version`` 1),
# exactly as that release created it. Never edit it: it is history.
V1_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
  id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (
  id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id),
  device TEXT NOT NULL, hash BLOB NOT NULL UNIQUE, role TEXT NOT NULL,
  created REAL NOT NULL, revoked REAL);
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
"""

V1_LAPTOP = "lst_v1-laptop-token-of-alice-000000000"
V1_PHONE = "lst_v1-phone-token-of-alice-0000000000"  # revoked


def make_v1_database(path: Path) -> None:
    """A version-1 database file: user alice, her home namespace with one
    directory entry, a read-write token for "laptop" and a revoked one for "phone"."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("BEGIN")
        for stmt in V1_SCHEMA.split(";"):
            if stmt.strip():
                db.execute(stmt)
        db.execute("INSERT INTO users (id, name, created) VALUES (1, 'alice', 1.0)")
        db.execute(
            "INSERT INTO namespaces (id, name, owner_id, journal, head, created) "
            "VALUES (1, 'alice', 1, '00112233aabbccdd', 1, 1.0)"
        )
        db.execute("INSERT INTO members (ns_id, user_id, role) VALUES (1, 1, 'rw')")
        db.execute(
            "INSERT INTO entries (ns_id, jid, path, kind, size, mtime_ns, exec, device, "
            "base_jid, bl_depth, nonce, created) "
            "VALUES (1, 1, 'notes', 'directory', 0, 0, 0, 'laptop', 0, 0, 'feedbeef', 1.0)"
        )
        db.execute("INSERT INTO current VALUES (1, 'notes', 1, 1, 'notes')")
        db.execute(
            "INSERT INTO tokens (user_id, device, hash, role, created, revoked) "
            "VALUES (1, 'laptop', ?, 'rw', 1.0, NULL), (1, 'phone', ?, 'ro', 1.0, 2.0)",
            (hash_token(V1_LAPTOP), hash_token(V1_PHONE)),
        )
        db.execute("PRAGMA user_version=1")
        db.execute("COMMIT")
    finally:
        db.close()


def _columns(path: Path, table: str) -> list[tuple[object, ...]]:
    db = sqlite3.connect(path)
    try:
        return [tuple(r) for r in db.execute(f"PRAGMA table_info({table})")]
    finally:
        db.close()


def _layout(path: Path) -> dict[str, object]:
    """Every table's columns and every index's table: what a schema is made of."""
    db = sqlite3.connect(path)
    try:
        out: dict[str, object] = {"user_version": db.execute("PRAGMA user_version").fetchone()[0]}
        for kind, name, table in db.execute(
            "SELECT type, name, tbl_name FROM sqlite_master ORDER BY type, name"
        ):
            if kind == "table":
                out[name] = [tuple(r) for r in db.execute(f"PRAGMA table_info({name})")]
            else:
                out[name] = (kind, table)
        return out
    finally:
        db.close()


def test_sqlite_migrates_a_version_1_database(tmp_path: Path) -> None:
    path = tmp_path / "meta.sqlite3"
    make_v1_database(path)
    assert "expires" not in [c[1] for c in _columns(path, "tokens")]

    async def first() -> None:
        s = await SqliteStore.open(path)
        try:
            info = await s.authenticate(V1_LAPTOP)
            assert info is not None
            assert (info.user_id, info.user, info.device, info.role) == (1, "alice", "laptop", "rw")
            assert await s.authenticate(V1_PHONE) is None  # still revoked
            listed = await s.list_tokens()
            assert [(t.device, t.revoked, t.expires) for t in listed] == [
                ("laptop", None, None),
                ("phone", 2.0, None),
            ]
            # The old data is all there, and the new column works.
            (home,) = await s.namespaces_of(1)
            assert (home.name, home.head, home.journal) == ("alice", 1, "00112233aabbccdd")
            assert [r.path for r in (await s.changes(home.id, 0, 10))[0]] == ["notes"]
            expired = await s.create_token("alice", "tablet", "rw", time.time() - 1)
            expiring = await s.create_token("alice", "desk", "rw", time.time() + 3600)
            assert await s.authenticate(expired) is None
            assert await s.authenticate(expiring) is not None
            assert await commit_ok(s, home.id, [mkdir("later")]) == [2]
        finally:
            await s.close()

    asyncio.run(first())
    assert _layout(path)["user_version"] == SCHEMA_VERSION  # 3 (2 added expiry)
    assert ("expires", "REAL") in [(c[1], c[2]) for c in _columns(path, "tokens")]

    # A migrated database has the same layout as a new one.
    fresh = tmp_path / "fresh.sqlite3"
    asyncio.run(_open_close(fresh))
    assert _layout(path) == _layout(fresh)

    # Opening it again changes nothing, and the old token keeps working.
    async def again() -> None:
        s = await SqliteStore.open(path)
        try:
            assert await s.authenticate(V1_LAPTOP) is not None
            assert len(await s.list_tokens()) == 4
        finally:
            await s.close()

    before = _layout(path)
    asyncio.run(again())
    assert _layout(path) == before


def test_sqlite_migrates_a_version_2_database(tmp_path: Path) -> None:
    """The previous release's database (schema 2): it gains the GC state's
    tables and keeps everything, and GC can use them at once."""
    path = tmp_path / "meta.sqlite3"
    make_v1_database(path)
    db = sqlite3.connect(path, isolation_level=None)
    try:
        _MIGRATIONS[2](db)
        db.execute("PRAGMA user_version=2")
    finally:
        db.close()
    assert "retired" not in _layout(path)

    async def go() -> None:
        s = await SqliteStore.open(path)
        try:
            assert await s.authenticate(V1_LAPTOP) is not None
            assert await s.lease("gc", "me", 60)
            assert await s.retired() == {}
            await s.set_retired(["p-00000001-00000000"], [])
            assert list(await s.retired()) == ["p-00000001-00000000"]
        finally:
            await s.close()

    asyncio.run(go())
    fresh = tmp_path / "fresh.sqlite3"
    asyncio.run(_open_close(fresh))
    assert _layout(path) == _layout(fresh)
    assert _layout(path)["user_version"] == SCHEMA_VERSION == 3


async def _open_close(path: Path) -> None:
    s = await SqliteStore.open(path)
    await s.close()


def test_sqlite_migration_steps_are_idempotent(tmp_path: Path) -> None:
    """Every step is a no-op on a database that already has its change."""
    path = tmp_path / "meta.sqlite3"
    make_v1_database(path)
    db = sqlite3.connect(path, isolation_level=None)
    try:
        for target in sorted(_MIGRATIONS):
            _MIGRATIONS[target](db)
            once = [tuple(r) for r in db.execute("SELECT sql FROM sqlite_master ORDER BY name")]
            _MIGRATIONS[target](db)
            assert [
                tuple(r) for r in db.execute("SELECT sql FROM sqlite_master ORDER BY name")
            ] == once
    finally:
        db.close()


def test_sqlite_migration_by_several_openers_at_once(tmp_path: Path) -> None:
    """A server and admin commands that open an old database at the same time
    (each on its own connection and thread): one migrates it, the others find
    it done."""
    path = tmp_path / "meta.sqlite3"
    make_v1_database(path)

    async def go() -> None:
        stores = await asyncio.gather(*(SqliteStore.open(path) for _ in range(4)))
        try:
            for s in stores:
                assert await s.authenticate(V1_LAPTOP) is not None
        finally:
            for s in stores:
                await s.close()

    asyncio.run(go())
    assert [c[1] for c in _columns(path, "tokens")].count("expires") == 1
    assert _layout(path)["user_version"] == SCHEMA_VERSION


def test_sqlite_refuses_a_newer_database(tmp_path: Path) -> None:
    path = tmp_path / "meta.sqlite3"
    make_v1_database(path)
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.close()
    before = _layout(path)
    with pytest.raises(StoreError, match="Upgrade linesync"):
        asyncio.run(_open_close(path))
    assert _layout(path) == before
