"""The HTTP API v1, endpoint by endpoint, against a real server process.

One server per module (read-mostly); every test makes its own user, so tests
never see each other's namespaces.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

import linesync
from linesync.core import blocklist as bl
from linesync.core.ids import chunk_id, pack_ids, unpack_ids
from linesync.protocol import codec, inline
from linesync.protocol.errors import Code, LinesyncError
from linesync.protocol.schemas import CommitOp, Content, Entry, InlineChunk, Kind
from linesync.server.routes import ROUTES
from tests.support.api import (
    Api,
    Remote,
    User,
    admin,
    dir_op,
    file_op,
    frame_bytes,
    ids_of,
    missing,
    new_token,
    ns_path,
    parse_metrics,
    put_file,
    raw_frames,
    split,
    text,
    tomb_op,
)
from tests.support.server import ServerProc

run = asyncio.run
_CURSOR = re.compile(r"^[0-9a-f]{16}\.(0|[1-9][0-9]*)\.([0-9a-f]{8}|0)$")


async def head_jid(r: Remote, ns: int) -> int:
    return (await r.head(ns)).jid


async def one(r: Remote, ns: int, op: CommitOp, chunks: list[InlineChunk] | None = None) -> Any:
    (res,) = await r.commit(ns, [op], chunks or ())
    return res


async def ok(r: Remote, ns: int, *ops: CommitOp) -> list[int]:
    results = await r.commit(ns, list(ops))
    assert [x.status for x in results] == ["ok"] * len(ops), results
    return [x.jid for x in results]


async def unchanged(r: Remote, ns: int, head: int, *paths: str) -> None:
    """Nothing was committed: the head did not move and no path has new history."""
    assert await head_jid(r, ns) == head
    for p in paths:
        assert [e.jid for e in (await r.history(ns, p)).entries if e.jid > head] == []


def as_inline(data: bytes, bases: list[bytes] | None = None) -> InlineChunk:
    """``data`` as an inline chunk, against the concatenation of ``bases`` if given."""
    bases = bases or []
    return inline.encode(data, ids_of(bases), b"".join(bases) if bases else None)


def delta_op(path: str, base_jid: int, old: bytes, new: bytes) -> tuple[CommitOp, list[bytes]]:
    """A delta commit of ``new`` against version ``base_jid`` holding ``old``, and
    the chunks it adds (as (new chunk, old chunk it replaces) pairs flattened)."""
    old_ids, new_parts = ids_of(split(old)), split(new)
    new_ids = ids_of(new_parts)
    delta = bl.diff(old_ids, new_ids)
    op = CommitOp(
        path=path,
        kind=Kind.FILE,
        base_jid=base_jid,
        size=len(new),
        mtime_ns=2,
        content=Content(
            base=base_jid, edits=[(e.start, e.delete, pack_ids(e.insert)) for e in delta]
        ),
    )
    by_id = dict(zip(new_ids, new_parts, strict=True))
    return op, [by_id[c] for c in bl.inserted(delta)]


# -- service endpoints ---------------------------------------------------------


def test_healthz(srv: ServerProc) -> None:
    async def go() -> None:
        async with Api(srv.url) as api:
            resp = (await api.get("/healthz", token=None)).expect(200)
            assert resp.headers["content-type"].startswith("application/json")
            assert resp.json() == {"status": "ok", "version": linesync.__version__, "protocol": [1]}

    run(go())


def test_metrics_counters_move(srv: ServerProc, user: User) -> None:
    scraper = admin(srv, "token", "create", user.name, "--device", "prom", "--metrics")

    async def go() -> None:
        async with Api(srv.url, scraper) as api, Remote(srv.url, user.token) as r:
            first = await api.get("/metrics")
            first.expect(200)
            assert first.headers["content-type"].startswith("text/plain")
            before = parse_metrics(first.body.decode())
            for _ in range(3):
                await r.me()
            await ok(r, user.ns, dir_op("m"))
            await r.list_changes(user.ns, None)
            after = parse_metrics((await api.get("/metrics")).expect(200).body.decode())
        key = 'linesync_requests_total{route="me",status="200"}'
        assert after[key] == before.get(key, 0) + 3
        key = 'linesync_commit_paths_total{status="ok"}'
        assert after[key] == before.get(key, 0) + 1
        count = 'linesync_request_seconds_count{route="me"}'
        assert after[count] == before.get(count, 0) + 3
        inf = 'linesync_request_seconds_bucket{le="+Inf",route="me"}'
        assert after[inf] == after[count]
        out = 'linesync_response_bytes_total{route="me"}'
        assert after[out] > before.get(out, 0) + 3 * len('{"user":""}')
        body_in = 'linesync_request_bytes_total{route="commit"}'
        assert after[body_in] > before.get(body_in, 0)
        # The list started from the journal's start, at least one entry behind its head.
        lag = 'linesync_journal_lag_entries_bucket{le="0.0"}'
        assert (
            after["linesync_journal_lag_entries_count"]
            == before.get("linesync_journal_lag_entries_count", 0) + 1
        )
        assert after[lag] == before.get(lag, 0)
        assert 'linesync_cache_hits_total{cache="blocklists"}' in after
        assert after["linesync_long_polls_waiting"] == 0

    run(go())


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref":
                yield v
            else:
                yield from _refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from _refs(v)


def test_openapi_document(srv: ServerProc) -> None:
    async def go() -> dict[str, Any]:
        async with Api(srv.url) as api:
            resp = (await api.get("/v1/openapi.json", token=None)).expect(200)
            assert resp.headers["content-type"].startswith("application/json")
            doc: dict[str, Any] = resp.json()
            return doc

    doc = run(go())
    assert re.fullmatch(r"3\.1\.\d+", doc["openapi"])
    assert doc["info"]["title"] and doc["info"]["version"] == linesync.__version__
    assert doc["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}
    # Every $ref resolves inside the document.
    for ref in set(_refs(doc)):
        assert ref.startswith("#/"), ref
        node: Any = doc
        for part in ref[2:].split("/"):
            assert part in node, f"unresolved $ref {ref}"
            node = node[part]
    # Every operation is well formed; path templates declare their parameters.
    methods = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
    for path, item in doc["paths"].items():
        assert path.startswith("/")
        for method, op in item.items():
            assert method in methods, (path, method)
            assert "200" in op["responses"], (path, method)
            for resp in op["responses"].values():
                assert isinstance(resp["description"], str)
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == set(re.findall(r"\{(\w+)\}", path)), (path, method)
            for p in op.get("parameters", []):
                assert p["in"] in ("path", "query", "header", "cookie")
                if p["in"] == "path":
                    assert p["required"] is True
    # ... and every route the server serves is in it, with its method.
    for method, route, name, _ in ROUTES:
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route)
        assert path in doc["paths"], f"route {name} ({method} {path}) is not in the document"
        assert method.lower() in doc["paths"][path], (method, path)


# -- me, head, list ------------------------------------------------------------


def test_me(srv: ServerProc, user: User) -> None:
    ro = new_token(srv, user.name, "phone", True)

    async def go() -> None:
        async with Remote(srv.url, user.token) as r:
            me = await r.me()
            assert (me.user, me.device, me.token_role) == (user.name, "laptop", "rw")
            assert [(n.id, n.name, n.role, n.head) for n in me.namespaces] == [
                (user.ns, user.name, "rw", 0)
            ]
            assert me.namespaces[0].cursor == (await r.head(user.ns)).cursor
            await ok(r, user.ns, dir_op("x"))
            me = await r.me()
            assert me.namespaces[0].head == 1
            assert me.namespaces[0].cursor == (await r.head(user.ns)).cursor
        async with Remote(srv.url, ro) as r:
            me = await r.me()
            assert (me.device, me.token_role) == ("phone", "ro")

    run(go())


def test_head_and_empty_list(srv: ServerProc, user: User) -> None:
    async def go() -> None:
        async with Remote(srv.url, user.token) as r:
            h = await r.head(user.ns)
            assert h.jid == 0 and _CURSOR.match(h.cursor) and h.cursor.endswith(".0.0")
            lst = await r.list_changes(user.ns)
            assert (lst.entries, lst.more, lst.cursor) == ([], False, h.cursor)
            lst = await r.list_changes(user.ns, h.cursor)
            assert (lst.entries, lst.more, lst.cursor) == ([], False, h.cursor)
            (jid,) = await ok(r, user.ns, dir_op("d"))
            h2 = await r.head(user.ns)
            assert h2.jid == jid == 1 and _CURSOR.match(h2.cursor)
            assert h2.cursor.split(".")[0] == h.cursor.split(".")[0]  # same journal
            assert h2.cursor.split(".")[1] == "1"
            assert (await r.list_changes(user.ns)).cursor == h2.cursor

    run(go())


def test_list_after_commits(srv: ServerProc, user: User) -> None:
    async def go() -> None:
        ns = user.ns
        async with Remote(srv.url, user.token) as r:
            data = text(100, "list")
            await ok(r, ns, dir_op("docs"))
            fj = await put_file(r, ns, "docs/a.md", data)
            (lj,) = await ok(r, ns, CommitOp(path="link", kind=Kind.SYMLINK, target="docs/a.md"))
            lst = await r.list_changes(ns)
            assert not lst.more
            assert [(e.jid, e.path, e.kind) for e in lst.entries] == [
                (1, "docs", Kind.DIRECTORY),
                (fj, "docs/a.md", Kind.FILE),
                (lj, "link", Kind.SYMLINK),
            ]
            f = lst.entries[1]
            assert (f.size, f.mtime_ns, f.device) == (len(data), 1, "laptop")
            assert f.content is not None and unpack_ids(f.content.ids or "") == ids_of(split(data))
            assert lst.entries[2].target == "docs/a.md"
            assert lst.cursor == (await r.head(ns)).cursor
            # From the cursor: nothing new.
            again = await r.list_changes(ns, lst.cursor)
            assert again.entries == [] and again.cursor == lst.cursor

    run(go())


def test_list_pagination(srv: ServerProc, user: User) -> None:
    async def go() -> None:
        ns = user.ns
        async with Remote(srv.url, user.token) as r:
            jids = await ok(r, ns, *[dir_op(f"d{i}") for i in range(5)])
            assert jids == [1, 2, 3, 4, 5]
            seen: list[int] = []
            cursor: str | None = None
            pages = 0
            while True:
                page = await r.list_changes(ns, cursor, limit=1)
                pages += 1
                assert len(page.entries) <= 1
                seen += [e.jid for e in page.entries]
                assert page.cursor != cursor or not page.entries
                cursor = page.cursor
                if not page.more:
                    break
                assert page.entries, "a page that says 'more' has entries"
                assert pages < 20
            assert seen == jids
            assert cursor == (await r.head(ns)).cursor
            # A page of 2: more=true while entries remain.
            page = await r.list_changes(ns, None, limit=2)
            assert [e.jid for e in page.entries] == [1, 2] and page.more
            page = await r.list_changes(ns, page.cursor, limit=1000)
            assert [e.jid for e in page.entries] == [3, 4, 5] and not page.more

    run(go())


def test_list_shows_latest_version_once(srv: ServerProc, user: User) -> None:
    async def go() -> None:
        ns = user.ns
        async with Remote(srv.url, user.token) as r:
            v1 = text(1000, "v1")
            j1 = await put_file(r, ns, "n.md", v1)
            cursor = (await r.list_changes(ns)).cursor
            v2 = v1.replace(b"v1 line 000500", b"v2 line 000500")
            j2 = await put_file(r, ns, "n.md", v2, base_jid=j1)
            v3 = v2.replace(b"v1 line 000900", b"v3 line 000900")
            j3 = await put_file(r, ns, "n.md", v3, base_jid=j2)
            (other,) = await ok(r, ns, dir_op("zz"))
            lst = await r.list_changes(ns, cursor)
            assert [(e.jid, e.path) for e in lst.entries] == [(j3, "n.md"), (other, "zz")]
            e = lst.entries[0]
            assert e.size == len(v3) and e.base_jid == j2
            # Sent as a delta against the version the cursor had (j1).
            assert e.content is not None and e.content.base == j1
            got = bl.apply(
                ids_of(split(v1)),
                [bl.Edit(s, d, tuple(unpack_ids(i))) for s, d, i in e.content.edits or []],
            )
            assert got == ids_of(split(v3))
            # With inline=..., the chunks the delta adds come along, each compact
            # against the chunk it replaces, and decode with what the client holds.
            lst = await r.list_changes(ns, cursor, inline=65536)
            old = {chunk_id(p): p for p in split(v1)}
            new = {chunk_id(p): p for p in split(v3)}
            added = bl.inserted(
                [bl.Edit(s, d, tuple(unpack_ids(i))) for s, d, i in e.content.edits or []]
            )
            assert lst.chunks and all(c.codec == "zstd-dict" for c in lst.chunks)
            assert sum(len(c.data) for c in lst.chunks) < 400
            # The delta's span also re-inserts chunks of v1 (unchanged between the
            # two edits): the client holds those, so they do not come along.
            fresh = {c: new[c] for c in added if c not in old}
            assert len(fresh) == 2 and len(fresh) < len(set(added))
            assert inline.decode(lst.chunks, old.get) == fresh

    run(go())


def test_long_poll_returns_at_once_with_news(srv: ServerProc, user: User) -> None:
    async def go() -> None:
        async with Remote(srv.url, user.token) as r:
            cursor = (await r.head(user.ns)).cursor
            (jid,) = await ok(r, user.ns, dir_op("x"))
            started = time.monotonic()
            lst = await r.list_changes(user.ns, cursor, wait=5)
            assert time.monotonic() - started < 1.5
            assert [e.jid for e in lst.entries] == [jid]

    run(go())


def test_long_poll_woken_by_commit(srv: ServerProc, user: User) -> None:
    other = new_token(srv, user.name, "phone")

    async def go() -> None:
        ns = user.ns
        async with Remote(srv.url, user.token) as r, Remote(srv.url, other) as w:
            cursor = (await r.head(ns)).cursor

            async def poll() -> tuple[list[int], float]:
                started = time.monotonic()
                lst = await r.list_changes(ns, cursor, wait=20)
                return [e.jid for e in lst.entries], time.monotonic() - started

            task = asyncio.create_task(poll())
            await asyncio.sleep(0.4)
            assert not task.done(), "the long-poll answered without news"
            (jid,) = await ok(w, ns, dir_op("news"))
            got, elapsed = await asyncio.wait_for(task, 10)
            assert got == [jid]
            assert 0.3 < elapsed < 3.0

    run(go())


def test_long_poll_sleeps_through_its_own_sessions_commits(srv: ServerProc, user: User) -> None:
    """A long-poll is not woken by a commit of its own session (whose answer
    carried the news); another device's commit wakes it, with both entries;
    with nothing else, it answers at its deadline with no entries and the
    cursor it was given (a watcher's first poll, from the journal's start
    during its first upload, used to bring that whole upload back)."""
    other = new_token(srv, user.name, "phone")

    async def go() -> None:
        ns = user.ns
        async with Remote(srv.url, user.token) as r, Remote(srv.url, other) as w:
            cursor = (await r.head(ns)).cursor

            answered: list[str] = []

            async def poll(wait: int) -> tuple[list[int], float]:
                started = time.monotonic()
                lst = await r.list_changes(ns, cursor, wait=wait)
                answered.append(lst.cursor)
                return [e.jid for e in lst.entries], time.monotonic() - started

            task = asyncio.create_task(poll(20))
            await asyncio.sleep(0.4)
            (mine,) = await ok(r, ns, dir_op("mine"))  # names the session: a poll waits
            await asyncio.sleep(0.6)
            assert not task.done(), "woken by its own session's commit"
            (theirs,) = await ok(w, ns, dir_op("theirs"))
            got, elapsed = await asyncio.wait_for(task, 10)
            assert got == [mine, theirs]
            assert elapsed < 3.0

            cursor = (await r.head(ns)).cursor
            task = asyncio.create_task(poll(2))
            await asyncio.sleep(0.3)
            await ok(r, ns, dir_op("again"))
            got, elapsed = await asyncio.wait_for(task, 10)
            assert got == [] and 1.5 < elapsed < 4.0  # at the deadline
            assert answered[-1] == cursor
            # A plain list still lists them.
            assert [e.path for e in (await r.list_changes(ns, cursor)).entries] == ["again"]

    run(go())


def test_another_device_naming_a_session_still_wakes_its_long_poll(
    srv: ServerProc, user: User
) -> None:
    """The session is bound to the token's device: a member who learns another
    device's session cannot delay its news by naming that session."""
    other = new_token(srv, user.name, "phone")

    async def go() -> None:
        ns = user.ns
        async with Remote(srv.url, user.token) as r, Remote(srv.url, other) as w:
            cursor = (await r.head(ns)).cursor
            w.session_id = r.session_id
            w._polls = 1  # its commits name the session, as during a long-poll
            started = time.monotonic()
            task = asyncio.create_task(r.list_changes(ns, cursor, wait=20))
            await asyncio.sleep(0.4)
            (jid,) = await ok(w, ns, dir_op("sneaky"))
            lst = await asyncio.wait_for(task, 10)
            assert [e.jid for e in lst.entries] == [jid]
            assert time.monotonic() - started < 3.0

    run(go())


def test_a_bad_session_is_refused(srv: ServerProc, user: User) -> None:
    async def go() -> None:
        async with Remote(srv.url, user.token) as r:
            r.session_id = "not a/session"
            with pytest.raises(LinesyncError) as exc:
                await r.list_changes(user.ns, None, wait=1)
            assert exc.value.code is Code.BAD_REQUEST and "session" in exc.value.message

    run(go())


def test_long_poll_times_out_empty(srv: ServerProc, user: User) -> None:
    async def go() -> None:
        async with Remote(srv.url, user.token) as r:
            await ok(r, user.ns, dir_op("x"))
            cursor = (await r.head(user.ns)).cursor
            started = time.monotonic()
            lst = await r.list_changes(user.ns, cursor, wait=1)
            elapsed = time.monotonic() - started
            assert lst.entries == [] and not lst.more and lst.cursor == cursor
            assert 0.9 <= elapsed < 2.5

    run(go())


# -- commit: kinds of entry -----------------------------------------------------


def test_commit_file_missing_upload_ok(srv: ServerProc, user: User) -> None:
    async def go() -> None:
        ns = user.ns
        data = text(400, "big")
        parts = split(data)
        ids = ids_of(parts)
        assert len(set(ids)) > 3
        op = file_op("a.md", data)
        async with Remote(srv.url, user.token) as r:
            res = await one(r, ns, op)
            assert res.status == "missing" and res.jid is None
            assert unpack_ids(res.missing) == list(dict.fromkeys(ids))
            await unchanged(r, ns, 0, "a.md")
            assert await missing(r, ns, ids) == ids
            up = await r.upload(ns, raw_frames(parts))
            assert up.stored == len(parts) and up.bytes > 0
            assert await missing(r, ns, ids) == []
            res = await one(r, ns, op)
            assert (res.status, res.jid) == ("ok", 1)
            entry = await r.entry(ns, 1)
            assert (entry.path, entry.kind, entry.size) == ("a.md", Kind.FILE, len(data))
            assert entry.content is not None and unpack_ids(entry.content.ids or "") == ids
            frames = await r.fetch(ns, ids)
            assert [f.chunk_id for f in frames] == ids
            assert b"".join(frame_bytes(f) for f in frames) == data

    run(go())


def test_commit_edit_delta_with_inline_zstd_dict(srv: ServerProc, user: User) -> None:
    async def go() -> None:
        ns = user.ns
        old = text(300, "edit")
        async with Remote(srv.url, user.token) as r:
            j1 = await put_file(r, ns, "e.md", old)
            new = old.replace(b"edit line 000150 of", b"EDITED LINE 000150 of")
            op, added = delta_op("e.md", j1, old, new)
            assert op.content is not None and op.content.edits and added
            old_parts = {chunk_id(p): p for p in split(old)}
            delta = [bl.Edit(s, d, tuple(unpack_ids(i))) for s, d, i in op.content.edits]
            by_id = {chunk_id(a): a for a in added}
            chunks = [
                as_inline(by_id[cid], [old_parts[b] for b in bases])
                for cid, bases in inline.replaced_bases(ids_of(split(old)), delta)
            ]
            assert all(c.codec == "zstd-dict" and len(c.data) < 200 for c in chunks), chunks
            added_ids = [chunk_id(a) for a in added]
            assert await missing(r, ns, added_ids) == added_ids
            res = await one(r, ns, op, chunks)
            assert (res.status, res.jid) == ("ok", j1 + 1), res
            entry = await r.entry(ns, res.jid)
            assert entry.base_jid == j1 and entry.size == len(new)
            assert entry.content is not None
            assert unpack_ids(entry.content.ids or "") == ids_of(split(new))
            assert await missing(r, ns, added_ids) == []
            frames = await r.fetch(ns, added_ids)
            assert [frame_bytes(f) for f in frames] == added

    run(go())


def test_empty_file_is_a_file(srv: ServerProc, user: User) -> None:
    async def go() -> None:
        ns = user.ns
        async with Remote(srv.url, user.token) as r:
            op = CommitOp(path="empty.txt", kind=Kind.FILE, size=0, content=Content(ids=""))
            (jid,) = await ok(r, ns, op)
            entry = await r.entry(ns, jid)
            assert (entry.kind, entry.size) == (Kind.FILE, 0)
            assert entry.content is not None and entry.content.ids == ""
            (listed,) = (await r.list_changes(ns)).entries
            assert listed.kind is Kind.FILE and listed.content is not None
            assert listed.content.ids == ""
            # It is live: a tombstone of it is a new entry, and a same-name dir collides.
            res = await one(r, ns, dir_op("EMPTY.txt"))
            assert (res.status, res.reason) == ("conflict", "case_collision")
            (tj,) = await ok(r, ns, tomb_op("empty.txt", jid))
            assert tj == jid + 1

    run(go())


def test_directory_symlink_tombstone(srv: ServerProc, user: User) -> None:
    async def go() -> None:
        ns = user.ns
        async with Remote(srv.url, user.token) as r:
            (dj,) = await ok(r, ns, CommitOp(path="dir", kind=Kind.DIRECTORY, mtime_ns=7))
            link = CommitOp(path="dir/l", kind=Kind.SYMLINK, target="../elsewhere", mtime_ns=8)
            (lj,) = await ok(r, ns, link)
            d, s = await r.entry(ns, dj), await r.entry(ns, lj)
            assert (d.kind, d.mtime_ns, d.content) == (Kind.DIRECTORY, 7, None)
            assert (s.kind, s.target, s.content) == (Kind.SYMLINK, "../elsewhere", None)
            (tj,) = await ok(r, ns, tomb_op("dir/l", lj))
            t = await r.entry(ns, tj)
            assert (t.kind, t.path, t.base_jid, t.size) == (Kind.TOMBSTONE, "dir/l", lj, 0)
            hist = await r.history(ns, "dir/l")
            assert [(e.jid, e.kind) for e in hist.entries] == [
                (tj, Kind.TOMBSTONE),
                (lj, Kind.SYMLINK),
            ]
            # The folder is empty now: it can be deleted too.
            (tdj,) = await ok(r, ns, tomb_op("dir", dj))
            lst = await r.list_changes(ns)
            assert {(e.path, e.kind) for e in lst.entries} == {
                ("dir", Kind.TOMBSTONE),
                ("dir/l", Kind.TOMBSTONE),
            }
            assert tdj == tj + 1

    run(go())


def test_move_file(srv: ServerProc, user: User) -> None:
    async def go() -> None:
        ns = user.ns
        data = text(200, "mv")
        ids = ids_of(split(data))
        async with Remote(srv.url, user.token) as r:
            await ok(r, ns, dir_op("a"), dir_op("b"))
            fj = await put_file(r, ns, "a/x.md", data)
            cursor = (await r.head(ns)).cursor
            op = CommitOp(
                path="b/y.md",
                kind=Kind.FILE,
                size=len(data),
                mtime_ns=1,
                move_from="a/x.md",
                move_base=fj,
            )
            res = await one(r, ns, op)
            assert (res.status, res.jid) == ("ok", fj + 1), res  # no chunk asked for
            lst = await r.list_changes(ns, cursor)
            assert [(e.jid, e.path, e.kind, e.moved_from, e.base_jid) for e in lst.entries] == [
                (fj + 1, "b/y.md", Kind.FILE, "a/x.md", 0),
                (fj + 2, "a/x.md", Kind.TOMBSTONE, None, fj),
            ]
            moved = await r.entry(ns, fj + 1)
            assert moved.size == len(data)
            assert moved.content is not None and unpack_ids(moved.content.ids or "") == ids
            assert await head_jid(r, ns) == fj + 2

    run(go())


def test_move_directory_with_children(srv: ServerProc, user: User) -> None:
    async def go() -> None:
        ns = user.ns
        a, b = text(50, "child a"), text(60, "child b")
        async with Remote(srv.url, user.token) as r:
            await ok(r, ns, dir_op("d"), dir_op("d/sub"))
            aj = await put_file(r, ns, "d/a.md", a)
            bj = await put_file(r, ns, "d/sub/b.md", b)
            link = CommitOp(path="d/sub/l", kind=Kind.SYMLINK, target="b.md")
            await ok(r, ns, link)
            head = await head_jid(r, ns)
            cursor = (await r.head(ns)).cursor
            op = CommitOp(path="e", kind=Kind.DIRECTORY, move_from="d", move_base=1)
            res = await one(r, ns, op)
            assert (res.status, res.jid) == ("ok", head + 1), res
            lst = await r.list_changes(ns, cursor)
            live = {e.path: e for e in lst.entries if e.kind is not Kind.TOMBSTONE}
            gone = {e.path: e for e in lst.entries if e.kind is Kind.TOMBSTONE}
            assert set(live) == {"e", "e/a.md", "e/sub", "e/sub/b.md", "e/sub/l"}
            assert set(gone) == {"d", "d/a.md", "d/sub", "d/sub/b.md", "d/sub/l"}
            for path, e in live.items():
                assert e.moved_from == "d" + path[1:], e
            assert live["e"].jid == head + 1
            assert live["e/sub/l"].target == "b.md"
            assert live["e/a.md"].size == len(a) and live["e/sub/b.md"].size == len(b)
            for path, data, old in (("e/a.md", a, aj), ("e/sub/b.md", b, bj)):
                entry = await r.entry(ns, live[path].jid)
                assert entry.content is not None
                assert unpack_ids(entry.content.ids or "") == ids_of(split(data))
                assert gone["d" + path[1:]].base_jid == old
            assert sorted(e.jid for e in lst.entries) == list(range(head + 1, head + 11))
            assert await head_jid(r, ns) == head + 10

    run(go())


def test_restore_old_version(srv: ServerProc, user: User) -> None:
    async def go() -> None:
        ns = user.ns
        v1 = text(100, "restore")
        v2 = v1 + b"one more line\n"
        async with Remote(srv.url, user.token) as r:
            j1 = await put_file(r, ns, "r.md", v1)
            j2 = await put_file(r, ns, "r.md", v2, base_jid=j1)
            res = await r.restore(ns, "r.md", j1, j2)
            assert (res.status, res.jid) == ("ok", j2 + 1), res
            entry = await r.entry(ns, j2 + 1)
            assert (entry.size, entry.base_jid, entry.kind) == (len(v1), j2, Kind.FILE)
            assert entry.content is not None
            assert unpack_ids(entry.content.ids or "") == ids_of(split(v1))
            hist = await r.history(ns, "r.md")
            assert [e.jid for e in hist.entries] == [j2 + 1, j2, j1]
            # Another path's version is refused, unless a copy is asked for.
            with pytest.raises(LinesyncError) as err:
                await r.restore(ns, "r-old.md", j1, 0)
            assert err.value.code is Code.BAD_REQUEST and "'r.md'" in err.value.message
            res = await r.restore(ns, "r-old.md", j1, 0, copy=True)
            assert res.status == "ok"
            # A stale base conflicts.
            res = await r.restore(ns, "r.md", j1, j1)
            assert (res.status, res.reason) == ("conflict", "changed")
            assert res.current is not None and res.current.jid == j2 + 1

    run(go())


def test_idempotent_retry(srv: ServerProc, user: User) -> None:
    phone = new_token(srv, user.name, "phone")

    async def go() -> None:
        ns = user.ns
        data = text(80, "retry")
        async with Remote(srv.url, user.token) as r:
            await r.upload(ns, raw_frames(split(data)))
            op = file_op("f.md", data)
            first = await one(r, ns, op)
            second = await one(r, ns, op)
            assert (first.status, second.status) == ("ok", "ok")
            assert first.jid == second.jid == 1
            assert await head_jid(r, ns) == 1
            assert [e.jid for e in (await r.history(ns, "f.md")).entries] == [1]
            # A retried deletion, and a retried batch of two.
            t = tomb_op("f.md", 1)
            assert (await one(r, ns, t)).jid == (await one(r, ns, t)).jid == 2
            batch = [dir_op("x"), dir_op("x/y")]
            assert await ok(r, ns, *batch) == await ok(r, ns, *batch) == [3, 4]
            assert await head_jid(r, ns) == 4
            # The same op from another device is not a retry: it conflicts.
            async with Remote(srv.url, phone) as p:
                res = await one(p, ns, dir_op("x"))
                assert (res.status, res.reason) == ("conflict", "changed")
            assert await head_jid(r, ns) == 4

    run(go())


def test_idempotent_retry_of_move(srv: ServerProc, user: User) -> None:
    """A move whose answer was lost and is sent again is "ok" with the same JID."""

    async def go() -> None:
        ns = user.ns
        async with Remote(srv.url, user.token) as r:
            fj = await put_file(r, ns, "m1.md", b"hello\n")
            op = CommitOp(path="m2.md", kind=Kind.FILE, size=6, move_from="m1.md", move_base=fj)
            first = await one(r, ns, op)
            second = await one(r, ns, op)
            assert (first.status, first.jid) == ("ok", fj + 1)
            assert (second.status, second.jid) == ("ok", fj + 1), second
            assert await head_jid(r, ns) == fj + 2

    run(go())


# -- chunks ---------------------------------------------------------------------


def test_chunks_missing_upload_and_get(srv: ServerProc, user: User) -> None:
    async def go() -> None:
        ns = user.ns
        old = text(12, "base")
        new = old.replace(b"base line 000006", b"BASE LINE 000006")
        (old_part,), (new_part,) = split(old), split(new)
        oid, nid = chunk_id(old_part), chunk_id(new_part)
        async with Remote(srv.url, user.token) as r:
            assert await missing(r, ns, [oid, nid, oid]) == [oid, nid, oid]
            up = await r.upload(ns, raw_frames([old_part, new_part]))
            assert (up.stored, up.bytes > 0) == (2, True)
            assert await missing(r, ns, [oid, nid]) == []
            # Without bases: the chunk itself.
            (plain,) = await r.fetch(ns, [nid])
            assert plain.chunk_id == nid and plain.base is None
            assert plain.codec in (codec.Codec.RAW, codec.Codec.ZSTD)
            assert frame_bytes(plain) == new_part
            # With a base the client holds: a zstd-dict delta that decodes with it.
            (delta,) = await r.fetch(ns, [nid], [oid])
            assert (delta.chunk_id, delta.codec, delta.base) == (nid, codec.Codec.ZSTD_DICT, (oid,))
            assert len(delta.payload) < len(plain.payload) // 2
            assert frame_bytes(delta, old_part) == new_part
            # An all-zero base means none; several ids come back in order.
            frames = await r.fetch(ns, [nid, oid], [None, None])
            assert [f.chunk_id for f in frames] == [nid, oid]
            assert [frame_bytes(f) for f in frames] == [new_part, old_part]

    run(go())


def test_upload_zstd_dict_frame(srv: ServerProc, user: User) -> None:
    async def go() -> None:
        ns = user.ns
        old = text(12, "zd")
        new = old.replace(b"zd line 000010", b"ZD LINE 000010")
        (old_part,), (new_part,) = split(old), split(new)
        async with Remote(srv.url, user.token) as r:
            await r.upload(ns, raw_frames([old_part]))
            kind, payload = codec.encode(new_part, old_part)
            assert kind is codec.Codec.ZSTD_DICT
            from linesync.protocol.framing import Frame

            frame = Frame(chunk_id(new_part), kind, (chunk_id(old_part),), payload)
            up = await r.upload(ns, [frame])
            assert up.stored == 1
            (back,) = await r.fetch(ns, [chunk_id(new_part)])
            assert frame_bytes(back) == new_part

    run(go())


def test_entry_and_history(srv: ServerProc, user: User) -> None:
    async def go() -> None:
        ns = user.ns
        async with Remote(srv.url, user.token) as r, Api(srv.url, user.token) as api:
            versions = [text(40, f"h{i}") for i in range(5)]
            jids = []
            base = 0
            for i, v in enumerate(versions):
                base = await put_file(r, ns, "h.md", v, base_jid=base)
                jids.append(base)
                if i == 2:
                    await ok(r, ns, dir_op("noise"))
            for jid, v in zip(jids, versions, strict=True):
                e = await r.entry(ns, jid)
                assert e.path == "h.md" and e.content is not None and e.content.ids is not None
                assert unpack_ids(e.content.ids) == ids_of(split(v))
            hist = await r.history(ns, "h.md")
            assert [e.jid for e in hist.entries] == jids[::-1]
            assert all(e.content is None for e in hist.entries)
            assert [e.base_jid for e in hist.entries] == [*jids[::-1][1:], 0]
            hist = await r.history(ns, "h.md", before=jids[3])
            assert [e.jid for e in hist.entries] == jids[:3][::-1]
            hist = await r.history(ns, "h.md", before=jids[3], limit=2)
            assert [e.jid for e in hist.entries] == [jids[2], jids[1]]
            hist = await r.history(ns, "h.md", limit=1)
            assert [e.jid for e in hist.entries] == [jids[-1]]
            assert (await r.history(ns, "nothing-here")).entries == []
            head = await head_jid(r, ns)
            for jid in (0, head + 1, 2**62 + 5):
                (await api.get(ns_path(ns, f"entries/{jid}"))).expect(404, "not_found")
            (await api.get(ns_path(ns, "history"))).expect(400, "bad_request")
            (await api.get(ns_path(ns, "history"), params={"path": "h.md", "limit": "0"})).expect(
                400, "bad_request"
            )

    run(go())


# -- conflicts and refusals ----------------------------------------------------


def test_conflict_changed(srv: ServerProc, user: User) -> None:
    async def go() -> None:
        ns = user.ns
        async with Remote(srv.url, user.token) as r:
            j1 = await put_file(r, ns, "c.md", b"one\n")
            j2 = await put_file(r, ns, "c.md", b"two\n", base_jid=j1)
            await r.upload(ns, raw_frames([b"three\n"]))
            res = await one(r, ns, file_op("c.md", b"three\n", base_jid=j1))
            assert (res.status, res.reason, res.jid) == ("conflict", "changed", None)
            assert isinstance(res.current, Entry)
            assert (res.current.jid, res.current.path, res.current.size) == (j2, "c.md", 4)
            # base_jid 0 on an existing path is stale too.
            res = await one(r, ns, file_op("c.md", b"three\n", base_jid=0))
            assert (res.reason, res.current.jid) == ("changed", j2)
            await unchanged(r, ns, j2, "c.md")

    run(go())


def test_conflict_parent(srv: ServerProc, user: User) -> None:
    async def go() -> None:
        ns = user.ns
        async with Remote(srv.url, user.token) as r:
            await r.upload(ns, raw_frames([b"x\n"]))
            res = await one(r, ns, file_op("nodir/f.md", b"x\n"))
            assert (res.status, res.reason, res.current) == ("conflict", "parent", None)
            fj = await put_file(r, ns, "plain", b"x\n")
            res = await one(r, ns, dir_op("plain/sub"))
            assert (res.status, res.reason) == ("conflict", "parent")
            assert res.current is not None and res.current.jid == fj
            await unchanged(r, ns, fj, "nodir/f.md", "plain/sub")

    run(go())


def test_conflict_not_empty(srv: ServerProc, user: User) -> None:
    async def go() -> None:
        ns = user.ns
        async with Remote(srv.url, user.token) as r:
            dj, cj = await ok(r, ns, dir_op("full"), dir_op("full/child"))
            res = await one(r, ns, tomb_op("full", dj))
            assert (res.status, res.reason) == ("conflict", "not_empty")
            assert res.current is not None and res.current.path == "full/child"
            res = await one(
                r, ns, CommitOp(path="full", kind=Kind.SYMLINK, target="x", base_jid=dj)
            )
            assert (res.status, res.reason) == ("conflict", "not_empty")
            await unchanged(r, ns, cj, "full")

    run(go())


def test_conflict_case_collision(srv: ServerProc, user: User) -> None:
    async def go() -> None:
        ns = user.ns
        async with Remote(srv.url, user.token) as r:
            rj = await put_file(r, ns, "Recipe.md", b"soup\n")
            await r.upload(ns, raw_frames([b"stew\n"]))
            res = await one(r, ns, file_op("recipe.md", b"stew\n"))
            assert (res.status, res.reason) == ("conflict", "case_collision")
            assert res.current is not None and (res.current.jid, res.current.path) == (
                rj,
                "Recipe.md",
            )
            res = await one(r, ns, dir_op("RECIPE.MD"))
            assert res.reason == "case_collision"
            await unchanged(r, ns, rj, "recipe.md", "RECIPE.MD")
            # Once Recipe.md is gone, recipe.md may exist.
            await ok(r, ns, tomb_op("Recipe.md", rj))
            assert (await one(r, ns, file_op("recipe.md", b"stew\n"))).status == "ok"

    run(go())


def test_conflict_source_changed(srv: ServerProc, user: User) -> None:
    async def go() -> None:
        ns = user.ns
        async with Remote(srv.url, user.token) as r:
            j1 = await put_file(r, ns, "s.md", b"v1\n")
            j2 = await put_file(r, ns, "s.md", b"v2\n", base_jid=j1)
            op = CommitOp(path="t.md", kind=Kind.FILE, size=3, move_from="s.md", move_base=j1)
            res = await one(r, ns, op)
            assert (res.status, res.reason) == ("conflict", "source_changed")
            assert res.current is not None and res.current.jid == j2
            await unchanged(r, ns, j2, "s.md", "t.md")
            # A source that was deleted meanwhile.
            (tj,) = await ok(r, ns, tomb_op("s.md", j2))
            op = CommitOp(path="t.md", kind=Kind.FILE, size=3, move_from="s.md", move_base=j2)
            res = await one(r, ns, op)
            assert (res.status, res.reason) == ("conflict", "source_changed")
            assert res.current is not None and res.current.kind is Kind.TOMBSTONE
            await unchanged(r, ns, tj, "s.md", "t.md")

    run(go())


def test_move_from_path_that_never_existed(srv: ServerProc, user: User) -> None:
    """A move whose source does not exist is a conflict, never a file without content."""

    async def go() -> None:
        ns = user.ns
        async with Remote(srv.url, user.token) as r, Api(srv.url, user.token) as api:
            for op in (
                CommitOp(path="b.md", kind=Kind.FILE, size=0, move_from="nope.md", move_base=0),
                CommitOp(path="l", kind=Kind.SYMLINK, move_from="nope-link", move_base=0),
                CommitOp(path="dd", kind=Kind.DIRECTORY, move_from="nope-dir", move_base=0),
            ):
                res = await one(r, ns, op)
                assert (res.status, res.reason, res.current) == ("conflict", "source_changed", None)
            await unchanged(r, ns, 0, "b.md", "l", "dd")
            (await api.get(ns_path(ns, "list"))).expect(200)

    run(go())


def test_size_mismatch(srv: ServerProc, user: User) -> None:
    async def go() -> None:
        ns = user.ns
        data = text(50, "size")
        async with Remote(srv.url, user.token) as r, Api(srv.url, user.token) as api:
            await r.upload(ns, raw_frames(split(data)))
            body = {
                "ops": [
                    {
                        "path": "s.md",
                        "kind": "file",
                        "size": len(data) + 1,
                        "content": {"ids": pack_ids(ids_of(split(data)))},
                    }
                ]
            }
            (await api.post(ns_path(ns, "commit"), json_body=body)).expect(422, "size_mismatch")
            await unchanged(r, ns, 0, "s.md")
            # A delta edit with a wrong size is refused the same way.
            j1 = await put_file(r, ns, "s.md", data)
            new = data + b"tail\n"
            op, added = delta_op("s.md", j1, data, new)
            await r.upload(ns, raw_frames(added))
            wrong = {
                "ops": [
                    {
                        "path": "s.md",
                        "kind": "file",
                        "base_jid": j1,
                        "size": len(new) - 1,
                        "content": {"base": j1, "edits": op.content.edits},  # type: ignore[union-attr]
                    }
                ]
            }
            (await api.post(ns_path(ns, "commit"), json_body=wrong)).expect(422, "size_mismatch")
            await unchanged(r, ns, j1, "s.md")

    run(go())


def test_bad_delta(srv: ServerProc, user: User) -> None:
    async def go() -> None:
        ns = user.ns
        data = text(50, "delta")
        n = len(split(data))
        async with Remote(srv.url, user.token) as r, Api(srv.url, user.token) as api:
            j1 = await put_file(r, ns, "d.md", data)
            (dj,) = await ok(r, ns, dir_op("folder"))

            def body(base: int, edits: list[Any]) -> dict[str, Any]:
                return {
                    "ops": [
                        {
                            "path": "d.md",
                            "kind": "file",
                            "base_jid": j1,
                            "size": len(data),
                            "content": {"base": base, "edits": edits},
                        }
                    ]
                }

            for b in (
                body(j1, [[n, 1, ""]]),  # runs past the base
                body(j1, [[1, 0, ""], [0, 1, ""]]),  # unsorted
                body(j1, [[0, 0, "AAAA"]]),  # ids that are not 32 bytes each
                body(dj, []),  # the base is a directory
                body(999, []),  # no such version
            ):
                (await api.post(ns_path(ns, "commit"), json_body=b)).expect(422, "bad_delta")
            await unchanged(r, ns, dj, "d.md")

    run(go())


def test_reset_forgets_old_versions(srv: ServerProc, user: User) -> None:
    """After a reset, a JID that held a file before is not a delta base any more."""

    async def go() -> None:
        ns = user.ns
        data = text(50, "before reset")
        async with Remote(srv.url, user.token) as r, Api(srv.url, user.token) as api:
            assert await put_file(r, ns, "f.md", data) == 1
            await asyncio.to_thread(admin, srv, "namespace", "reset", user.name, "--yes")
            assert await head_jid(r, ns) == 0
            (dj,) = await ok(r, ns, dir_op("d"))
            assert dj == 1
            body = {
                "ops": [
                    {"path": "x.md", "kind": "file", "size": 0, "content": {"base": 1, "edits": []}}
                ]
            }
            (await api.post(ns_path(ns, "commit"), json_body=body)).expect(422, "bad_delta")
            await unchanged(r, ns, 1, "x.md")
            # The old chunks are no longer this namespace's.
            assert await missing(r, ns, ids_of(split(data))) == ids_of(split(data))

    run(go())


def test_cursor_errors(srv: ServerProc, user: User) -> None:
    async def go() -> None:
        ns = user.ns
        async with Remote(srv.url, user.token) as r, Api(srv.url, user.token) as api:
            await ok(r, ns, dir_op("a"), dir_op("b"))
            good = (await r.head(ns)).cursor
            journal, jid, nonce = good.split(".")

            async def listed(cursor: str) -> Any:
                return await api.get(ns_path(ns, "list"), params={"cursor": cursor})

            for bad in (
                "garbage",
                "0.0.0",
                f"{journal}.2",
                f"{journal}.-1.{nonce}",
                f"{journal}.02.{nonce}",
                f"{journal.upper()}.2.{nonce}",
                f"{journal}.2.{nonce}.x",
                f"{journal}.2.{nonce[:-1]}",
                f" {good}",
            ):
                (await listed(bad)).expect(400, "bad_cursor")
            (await listed(good)).expect(200)
            # Same journal and JID, wrong nonce: the server was restored from a backup.
            wrong = f"{journal}.{jid}.{'0' * 8 if nonce != '0' * 8 else '1' * 8}"
            (await listed(wrong)).expect(410, "cursor_invalid")
            (await listed(f"{journal}.1.{nonce}")).expect(410, "cursor_invalid")
            # Ahead of the journal.
            (await listed(f"{journal}.9.{nonce}")).expect(410, "cursor_invalid")
            # Another journal id.
            other = "0123456789abcdef" if journal != "0123456789abcdef" else "fedcba9876543210"
            (await listed(f"{other}.{jid}.{nonce}")).expect(410, "cursor_invalid")
            # After a reset, the old cursor fails loudly; a fresh list works.
            await asyncio.to_thread(admin, srv, "namespace", "reset", user.name, "--yes")
            (await listed(good)).expect(410, "cursor_invalid")
            (await listed(f"{journal}.0.0")).expect(410, "cursor_invalid")
            fresh = await r.list_changes(ns)
            assert fresh.entries == [] and fresh.cursor.split(".")[0] != journal
            with pytest.raises(LinesyncError) as err:
                await r.list_changes(ns, good)
            assert err.value.code is Code.CURSOR_INVALID

    run(go())


def test_list_parameters_are_checked(srv: ServerProc, user: User) -> None:
    async def go() -> None:
        ns = user.ns
        async with Api(srv.url, user.token) as api:
            for params in (
                {"limit": "0"},
                {"limit": "-1"},
                {"limit": "1001"},
                {"limit": "x"},
                {"wait": "61"},
                {"wait": "1.5"},
                {"inline": "999999999"},
            ):
                (await api.get(ns_path(ns, "list"), params=params)).expect(400, "bad_request")

    run(go())


def test_keep_alive_is_not_delayed(srv: ServerProc) -> None:
    """Requests on a kept-alive connection answer as fast as on a fresh one: a
    client that syncs many small files makes many sequential requests."""

    async def go() -> list[float]:
        times = []
        conn = aiohttp.TCPConnector(limit=1)
        async with aiohttp.ClientSession(connector=conn) as session:
            for _ in range(12):
                started = time.perf_counter()
                async with session.get(srv.url + "/healthz") as resp:
                    await resp.read()
                    assert resp.status == 200
                times.append(time.perf_counter() - started)
        return times

    times = sorted(run(go())[1:])
    assert times[len(times) // 2] < 0.02, f"median {times[len(times) // 2] * 1000:.0f} ms"
