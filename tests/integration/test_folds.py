"""Folded folder moves through the HTTP API (PROTOCOL §4.16): a list with
``fold=1`` gives a folder move as its own entry, which unfolds (from the
client's view before it) to exactly the entries a list without folding gives;
a move whose entries are not all in the page, or whose source was written over
since, is listed entry by entry; later changes are listed as ever. From the
outside: pages full of folder moves cost a bounded number of journal reads. A file
or symlink move folds too: its source's tombstone is the entry after it."""

from __future__ import annotations

import asyncio

from linesync.core.ids import pack_ids
from linesync.protocol import folding
from linesync.protocol.schemas import CommitOp, Content, Entry, Kind
from tests.support.api import Remote, User, dir_op, put_file, text, tomb_op, upload
from tests.support.resources import Meter, pid_of
from tests.support.server import ServerProc

run = asyncio.run


async def _ok(r: Remote, ns: int, *ops: CommitOp) -> list[int]:
    results = await r.commit(ns, list(ops))
    assert [x.status for x in results] == ["ok"] * len(ops), results
    return [x.jid or 0 for x in results]


def _mv(src: str, dst: str, jid: int) -> CommitOp:
    return CommitOp(path=dst, kind=Kind.DIRECTORY, move_from=src, move_base=jid)


async def _tree(r: Remote, ns: int, root: str) -> int:
    """A folder of 4 files, a subfolder and a symlink (and a file deleted): its JID."""
    (top, _) = await _ok(r, ns, dir_op(root), dir_op(f"{root}/sub"))
    for name in ("a.md", "b c.md", "é.md", "sub/d.md"):
        await put_file(r, ns, f"{root}/{name}", text(20, name))
    await _ok(r, ns, CommitOp(path=f"{root}/sub/l", kind=Kind.SYMLINK, target="d.md"))
    jid = await put_file(r, ns, f"{root}/gone.md", b"x\n")
    await _ok(r, ns, tomb_op(f"{root}/gone.md", jid))
    return top


async def _view(r: Remote, ns: int) -> tuple[str, dict[str, Entry]]:
    """Everything listed (no folding): the cursor, and the live entries by path."""
    lst = await r.list_changes(ns)
    assert not lst.more
    return lst.cursor, {e.path: e for e in lst.entries if e.kind is not Kind.TOMBSTONE}


def _key(e: Entry) -> tuple[object, ...]:
    return (e.jid, e.path, e.kind, e.size, e.target, e.moved_from)


def test_a_folded_move_unfolds_to_what_a_plain_list_gives(srv: ServerProc, user: User) -> None:
    async def go() -> None:
        ns = user.ns
        async with Remote(srv.url, user.token) as r:
            top = await _tree(r, ns, "d")
            cursor, held = await _view(r, ns)
            src = held.pop("d")
            d = await _ok(r, ns, _mv("d", "e", top))
            folded = await r.list_changes(ns, cursor, fold=True)
            plain = await r.list_changes(ns, cursor)
            (move,) = folded.entries
            assert (move.jid, move.path, move.moved_from) == (d[0], "e", "d")
            assert move.implied == len(plain.entries) - 1 == 2 * 6 + 1  # 6 things below d
            assert folded.cursor == plain.cursor and not folded.more
            # ...which the client writes itself from its view of "d".
            things = sorted((p, e.jid, e) for p, e in held.items() if p.startswith("d/"))
            got = folding.unfold(
                move.jid, "d", "e", move.implied, move.digest or "", src.jid, things
            )
            assert got is not None
            want = [_key(e) for e in plain.entries[1:]]
            mine = [
                (i.jid, i.path, i.node.kind if i.node else Kind.TOMBSTONE,
                 i.node.size if i.node else 0, i.node.target if i.node else None, i.moved_from)
                for i in got
            ]  # fmt: skip
            assert mine == want
            # A plain list never folds (clients that do not know of it).
            assert all(e.implied == 0 and e.digest is None for e in plain.entries)

    run(go())


def test_changes_after_a_move_are_listed_with_its_fold(srv: ServerProc, user: User) -> None:
    async def go() -> None:
        ns = user.ns
        async with Remote(srv.url, user.token) as r:
            top = await _tree(r, ns, "d")
            cursor, _ = await _view(r, ns)
            (d,) = await _ok(r, ns, _mv("d", "e", top))
            moved = await r.list_changes(ns, cursor)
            a = next(e for e in moved.entries if e.path == "e/a.md")
            link = next(e for e in moved.entries if e.path == "e/sub/l")
            edit = await put_file(r, ns, "e/a.md", text(21, "edited"), base_jid=a.jid)
            (gone,) = await _ok(r, ns, tomb_op("e/sub/l", link.jid))
            folded = await r.list_changes(ns, cursor, fold=True)
            assert [(e.jid, e.path, e.implied) for e in folded.entries] == [
                (d, "e", 13),
                (edit, "e/a.md", 0),
                (gone, "e/sub/l", 0),
            ]
            assert folded.entries[1].content is not None  # its bytes, as ever

    run(go())


def test_moves_that_cannot_fold_are_listed_entry_by_entry(srv: ServerProc, user: User) -> None:
    async def go() -> None:
        ns = user.ns
        async with Remote(srv.url, user.token) as r:
            # The source folder made again since: its tombstone is written over.
            top = await _tree(r, ns, "d")
            cursor, _ = await _view(r, ns)
            await _ok(r, ns, _mv("d", "e", top))
            (dir_again,) = await _ok(r, ns, dir_op("d", base_jid=(await r.head(ns)).jid))
            lst = await r.list_changes(ns, cursor, fold=True)
            # (The last thing moved is a file move whose source's tombstone
            # follows it: that one folds, PROTOCOL §4.16.)
            assert [e.implied for e in lst.entries if e.kind is Kind.DIRECTORY] == [0] * 3
            assert len(lst.entries) + sum(e.implied for e in lst.entries) == 14
            assert lst.entries[-1].jid == dir_again
            # A page that ends before the move's last entry.
            top = await _tree(r, ns, "f")
            cursor, _ = await _view(r, ns)
            await _ok(r, ns, _mv("f", "g", top))
            lst = await r.list_changes(ns, cursor, fold=True, limit=5)
            assert lst.more and [e.implied for e in lst.entries] == [0] * 5
            # A cursor in the middle of the move: its entry is not in the page.
            mid = await r.list_changes(ns, lst.cursor, fold=True)
            assert [e.implied for e in mid.entries if e.kind is Kind.DIRECTORY] == []
            assert len(mid.entries) + sum(e.implied for e in mid.entries) == 14 - 5

    run(go())


def test_folds_cost_bounded_work(srv: ServerProc, user: User) -> None:
    """From the outside, an attacker with a valid token makes folding as dear
    as it can be: a folder of 400 things moved, then every thing at its new
    path deleted, so the server reads 801 journal rows to fold a move of which
    the page holds 402 (reads stay under twice the page's rows: the old
    paths' tombstones cannot be written over without the source folder's);
    and 40 more folder moves in the same page, of which at most FOLD_MOVES
    are tried. Listing it all 10 times costs well under twice a plain list's
    CPU."""

    async def go() -> None:
        ns = user.ns
        async with Remote(srv.url, user.token) as r:
            (big,) = await _ok(r, ns, dir_op("big"))
            link = [
                CommitOp(path=f"big/l{i:03d}", kind=Kind.SYMLINK, target="x") for i in range(400)
            ]
            await _ok(r, ns, *link)
            start = (await r.head(ns)).cursor
            (move,) = await _ok(r, ns, _mv("big", "moved", big))
            plain = await r.list_changes(ns, start)
            assert not plain.more
            latest = {e.path: e.jid for e in plain.entries}
            await _ok(r, ns, *(tomb_op(p, j) for p, j in latest.items() if p.startswith("moved/")))
            for k in range(40):
                (sk, _) = await _ok(r, ns, dir_op(f"s{k}"), dir_op(f"s{k}/x"))
                await _ok(r, ns, _mv(f"s{k}", f"t{k}", sk))
            first = await r.list_changes(ns, start, fold=True)
            assert first.entries[0].jid == move and first.entries[0].implied == 801
            watch = {}
            for fold in (False, True):
                with Meter(pid_of(srv)) as m:
                    for _ in range(10):
                        cursor, pages = start, 0
                        while pages < 20:
                            lst = await r.list_changes(ns, cursor, fold=fold)
                            cursor, pages = lst.cursor, pages + 1
                            if not lst.more:
                                break
                watch[fold] = m.usage.cpu
            assert watch[True] < 2 * watch[False] + 0.3, watch

    run(go())


def test_a_folded_file_move_leaves_out_its_tombstone_and_content(
    srv: ServerProc, user: User
) -> None:
    async def go() -> None:
        ns = user.ns
        data = text(30, "moved")
        async with Remote(srv.url, user.token) as r:
            src = await put_file(r, ns, "a.md", data)
            edited = await put_file(r, ns, "c.md", data)
            cursor = (await r.head(ns)).cursor
            mv = CommitOp(
                path="b.md", kind=Kind.FILE, size=len(data), move_from="a.md", move_base=src
            )
            (moved,) = await _ok(r, ns, mv)
            new = data + b"edited while moving\n"  # a move and an edit at once
            ids = await upload(r, ns, new)
            edit_mv = CommitOp(path="e.md", kind=Kind.FILE, size=len(new), move_from="c.md",
                               move_base=edited, content=Content(ids=pack_ids(ids)))  # fmt: skip
            (both,) = await _ok(r, ns, edit_mv)
            plain = await r.list_changes(ns, cursor)
            folded = await r.list_changes(ns, cursor, fold=True)
            assert [(e.path, e.kind) for e in plain.entries][:2] == [
                ("b.md", Kind.FILE),
                ("a.md", Kind.TOMBSTONE),
            ]
            assert plain.entries[0].content is not None  # (an empty delta against a.md)
            first = folded.entries[0]
            assert (first.jid, first.path, first.implied, first.digest) == (moved, "b.md", 1, None)
            assert first.content is None  # the bytes of a.md, which the client holds
            assert "a.md" not in [e.path for e in folded.entries]
            last = next(e for e in folded.entries if e.path == "e.md")
            assert last.jid == both and last.implied == 1
            assert last.content is not None  # not the bytes the client holds
            assert "c.md" not in [e.path for e in folded.entries]
            # Folded or not, the same cursor, and every other entry the same.
            assert folded.cursor == plain.cursor
            rest = [e for e in plain.entries if e.path not in ("a.md", "c.md")]
            assert [e.jid for e in folded.entries] == [e.jid for e in rest]

    run(go())
