"""Contract suite, folder reads: ``children``, ``under``, ``find`` and
``namespace_record``, on every metadata store, against a model of the tree.

Names are drawn from ones that sort around "/" ("a-b", "a.txt" before it,
"a0" after it, non-ASCII), so that a skip scan which jumps a child folder's
subtree by the wrong bound shows."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from linesync.core import paths
from linesync.protocol.schemas import Kind
from linesync.server.model import Row
from linesync.server.stores.base import MetadataStore
from tests.contract.test_metastore import (
    BACKENDS,
    Backend,
    C,
    commit_ok,
    file,
    mkdir,
    rm,
    run,
    user,
)


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest) -> Backend:
    return BACKENDS[request.param](request)


NAMES = ["a", "a b", "a-b", "a.txt", "a0", "ab", "b", "é", "文", "z~"]
_users = itertools.count()


def build(leaves: list[str]) -> tuple[list[str], list[str]]:
    """The folders (every proper ancestor) and files (the other leaves) of a tree."""
    folders = sorted({a for p in leaves for a in paths.ancestors(p) if a})
    files = sorted(set(leaves) - set(folders))
    return folders, files


async def make_tree(s: MetadataStore, ns: int, leaves: list[str], gone: set[str]) -> dict[str, Row]:
    """Commit the tree, then delete the files in ``gone`` and every folder left
    empty by that; the current row of every path."""
    folders, files = build(leaves)
    ops = [mkdir(f) for f in folders] + [file(f, [C[i % 50]]) for i, f in enumerate(files)]
    jids = dict(zip(folders + files, await commit_ok(s, ns, ops), strict=True))
    dead = {f for f in files if f in gone}
    for d in sorted(folders, key=lambda p: -p.count("/")):
        inside = [p for p in folders + files if paths.is_under(p, d) and p != d]
        if inside and all(p in dead for p in inside):
            dead.add(d)
    deletions = sorted(dead, key=lambda p: (-p.count("/"), p))
    if deletions:
        for p, j in zip(deletions, await commit_ok(s, ns, [rm(p, jids[p]) for p in deletions]),
                        strict=True):  # fmt: skip
            jids[p] = j
    return {p: Row(jid=jids[p], path=p, kind=Kind.TOMBSTONE if p in dead else
                   (Kind.DIRECTORY if p in folders else Kind.FILE)) for p in jids}  # fmt: skip


async def pages(read: object, limit: int) -> list[Row]:
    """Every row of a paged read (``read(after, limit)``), a page at a time."""
    out: list[Row] = []
    after = ""
    for _ in range(1000):
        page = await read(after, limit)  # type: ignore[operator]
        assert len(page) <= limit
        out += page
        if len(page) < limit:
            return out
        after = page[-1].path
    raise AssertionError("no end")


leaves_st = st.lists(
    st.lists(st.sampled_from(NAMES), min_size=1, max_size=3).map("/".join),
    min_size=1,
    max_size=25,
    unique=True,
)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(leaves=leaves_st, gone_mask=st.lists(st.booleans(), max_size=25),
       limit=st.integers(1, 4))  # fmt: skip
def test_children_under_find_match_the_tree(
    backend: Backend, leaves: list[str], gone_mask: list[bool], limit: int
) -> None:
    folders, files = build(leaves)
    gone = {f for f, g in zip(files, gone_mask, strict=False) if g}

    async def body(s: MetadataStore) -> None:
        _, ns = await user(s, f"u{next(_users)}")
        tree = await make_tree(s, ns, leaves, gone)
        for folder in ["", *folders, "nope", "a/nope"]:
            for deleted in (False, True):
                want = sorted(p for p, r in tree.items() if paths.parent(p) == folder
                              and (deleted or r.kind is not Kind.TOMBSTONE))  # fmt: skip
                got = await pages(
                    lambda a, n, f=folder, d=deleted: s.children(ns, f, a, n, d), limit
                )
                assert [r.path for r in got] == want, (folder, deleted)
                assert all(r.jid == tree[r.path].jid and r.kind is tree[r.path].kind for r in got)
            for deleted in (False, True):
                below = sorted(
                    p for p, r in tree.items() if p != folder
                    and (deleted or r.kind is not Kind.TOMBSTONE)
                    and (folder == "" or paths.is_under(p, folder)))  # fmt: skip
                got = await pages(lambda a, n, f=folder, d=deleted: s.under(ns, f, a, n, d), limit)
                assert [r.path for r in got] == below, (folder, deleted)
                assert all(r.jid == tree[r.path].jid for r in got)
        for text in ["a", "/a", ".txt", "文", "nothing"]:
            want = sorted(p for p, r in tree.items() if r.kind is Kind.FILE and text in p)
            got = await pages(lambda a, n, t=text: s.find(ns, t, a, n), limit)
            assert [r.path for r in got] == want, text

    run(backend, body)


def test_children_skip_deep_and_wide_folders(backend: Backend) -> None:
    """A folder with one deep, wide subfolder between its children: the page
    holds the children, in byte order, with after and limit honoured."""

    async def body(s: MetadataStore) -> None:
        _, ns = await user(s, "alice")
        ops = [mkdir("top"), mkdir("top/big"), mkdir("top/big/deep")]
        ops += [file(f"top/big/deep/{i:03}", [C[i % 10]]) for i in range(120)]
        ops += [file(f"top/{n}", [C[1]]) for n in ("a", "big-", "big.txt", "big0", "c")]
        await commit_ok(s, ns, ops)
        names = ["top/a", "top/big", "top/big-", "top/big.txt", "top/big0", "top/c"]
        assert [r.path for r in await s.children(ns, "top", "", 100)] == sorted(names)
        assert [r.path for r in await s.children(ns, "top", "top/big", 2)] == [
            "top/big-", "top/big.txt"]  # fmt: skip
        assert [r.path for r in await s.children(ns, "", "", 10)] == ["top"]
        assert await s.children(ns, "top", "", 0) == []
        assert len(await s.under(ns, "top/big", "", 1000)) == 121
        got = [r.path for r in await s.under(ns, "top", "top/big/deep/118", 3)]
        assert got == ["top/big/deep/119", "top/big0", "top/c"]
        # Wider than a read of the skip scan, with a subfolder in the middle.
        flat = [mkdir("flat"), mkdir("flat/m")]
        flat += [file(f"flat/m/{i:03}", [C[2]]) for i in range(70)]
        flat += [file(f"flat/{c}{i:03}", [C[3]]) for c in "ax" for i in range(75)]
        await commit_ok(s, ns, flat)
        want = sorted(["flat/m", *(f"flat/{c}{i:03}" for c in "ax" for i in range(75))])
        assert [r.path for r in await s.children(ns, "flat", "", 1000)] == want
        assert [r.path for r in await pages(lambda a, n: s.children(ns, "flat", a, n), 70)] == want
        _, other = await user(s, "bob")
        assert await s.children(other, "top", "", 10) == []  # namespaces stay apart
        assert await s.find(other, "top", "", 10) == []

    run(backend, body)


def test_namespace_record(backend: Backend) -> None:
    async def body(s: MetadataStore) -> None:
        _, ns = await user(s, "alice")
        await user(s, "bob")
        await s.share("alice", "bob", "ro")
        rec = await s.namespace_record(ns)
        assert rec is not None
        assert (rec.id, rec.name, rec.owner, rec.members) == (
            ns,
            "alice",
            "alice",
            {"alice": "rw", "bob": "ro"},
        )
        assert rec == next(r for r in await s.list_namespaces() if r.id == ns)
        assert await s.namespace_record(ns + 1000) is None

    run(backend, body)
