"""Scenarios, section "Access": read-only members, revoked tokens, and users
who must not see each other's files."""

from __future__ import annotations

import asyncio
import contextlib
import io
import random

import pytest

from linesync.cli.main import main as cli_main
from linesync.client.api import Client
from linesync.client.remote import Remote
from linesync.client.transfer import split
from linesync.core.ids import chunk_id, pack_ids, unpack_ids
from linesync.protocol.errors import Code, LinesyncError
from linesync.protocol.schemas import CommitOp, Content, Kind
from tests.scenarios.helpers import (
    World,
    assert_same_trees,
    files,
    lines,
    settle,
    tree,
    write,
)
from tests.support.api import admin

KIB = 1024


def join(ls: list[str]) -> bytes:
    return "".join(ls).encode()


async def _refused(coro: object) -> LinesyncError:
    try:
        await coro  # type: ignore[misc]
    except LinesyncError as exc:
        return exc
    raise AssertionError("the server accepted it")


# -- read-only members ----------------------------------------------------------------------


def test_read_only_member_downloads_every_write_is_refused_local_edits_are_kept(
    world: World,
) -> None:
    owner, member = world.user("owner"), world.user("member")
    ns = world.namespace(owner)
    admin(world.srv, "namespace", "share", ns, member, "--read-only")
    a = world.client(owner, "laptop", namespace=ns)
    r = world.client(member, "tablet", namespace=ns)
    assert r.config.read_only and not a.config.read_only

    base = lines(30)
    write(a.folder / "menu.md", join(base))
    write(a.folder / "shopping.txt", "eggs\nmilk\n")
    write(a.folder / "photos" / "cat.bin", random.Random(1).randbytes(50 * KIB))
    settle(a, r)
    assert_same_trees(a, r)
    head = world.head(a)
    owner_tree = tree(a.folder)

    # The member changes things locally: an edit, a new file, a delete, a rename,
    # a new folder, an exec bit.
    mine = list(base)
    mine[3] = "line 003, the member's own note\n"
    write(r.folder / "menu.md", join(mine))
    write(r.folder / "member-only.txt", "my private additions\n")
    (r.folder / "shopping.txt").unlink()
    (r.folder / "photos" / "cat.bin").rename(r.folder / "photos" / "kitten.bin")
    (r.folder / "member folder").mkdir()
    res = r.sync_once()
    assert res.converged, res
    assert res.kept_locally, res
    assert world.head(a) == head, "a read-only member changed the server"
    settle(a)
    assert tree(a.folder) == owner_tree, "the owner's folder changed"
    member_tree = tree(r.folder)
    assert member_tree["menu.md"][1] == join(mine)
    assert member_tree["member-only.txt"][1] == b"my private additions\n"
    assert "member folder" in member_tree and "photos/kitten.bin" in member_tree

    # The owner goes on editing: another line of the same file, and another file.
    theirs = list(base)
    theirs[20] = "line 020, the owner's change\n"
    write(a.folder / "menu.md", join(theirs))
    write(a.folder / "new-from-owner.txt", "hello member\n")
    settle(a, r)
    head = world.head(a)
    mt = tree(r.folder)
    assert mt["new-from-owner.txt"][1] == b"hello member\n"
    on_disk = b"".join(d for d in files(mt).values() if isinstance(d, bytes))
    assert b"line 003, the member's own note" in on_disk, "the member's edit was lost"
    assert b"line 020, the owner's change" in mt["menu.md"][1]
    assert mt["member-only.txt"][1] == b"my private additions\n"

    # Both edit the same line: the member's version stays on the member's disk.
    write(a.folder / "menu.md", join(base[:5] + ["owner's line 5\n"] + base[6:]))
    member_v = mt["menu.md"][1].replace(b"line 005 of", b"member's line 5 of")
    assert member_v != mt["menu.md"][1]
    write(r.folder / "menu.md", member_v)
    settle(a, r)
    mt = tree(r.folder)
    assert member_v in set(files(mt).values()), "the member's local edit was lost"
    assert b"owner's line 5" in mt["menu.md"][1]
    assert b"member's line 5" not in tree(a.folder)["menu.md"][1]
    assert world.head(a) == head + 1  # only the owner's edit
    head = world.head(a)

    # The owner deletes a file the member edited: the member keeps the edit.
    write(r.folder / "new-from-owner.txt", "hello member, and my reply\n")
    (a.folder / "new-from-owner.txt").unlink()
    settle(a, r)
    assert world.head(a) == head + 1  # only the owner's delete
    head = world.head(a)
    assert tree(r.folder)["new-from-owner.txt"][1] == b"hello member, and my reply\n"
    assert "new-from-owner.txt" not in tree(a.folder)

    # Every write is refused by the server itself.
    async def writes() -> list[LinesyncError]:
        data = b"sneaky\n"
        ids, chunks = split(data)
        async with Remote(world.srv.url, r.config.token) as rem:
            n = r.config.namespace
            op = CommitOp(path="sneaky.txt", kind=Kind.FILE, size=len(data), mtime_ns=1,
                          content=Content(ids=pack_ids(ids)))  # fmt: skip
            from linesync.protocol import codec
            from linesync.protocol.framing import Frame

            kind, payload = codec.encode(data)
            return [
                await _refused(rem.commit(n, [op])),
                await _refused(rem.commit(n, [CommitOp(path="d", kind=Kind.DIRECTORY)])),
                await _refused(rem.upload(n, [Frame(ids[0], kind, None, payload)])),
                await _refused(rem.restore(n, "menu.md", 1, head)),
            ]

    for err in asyncio.run(writes()):
        assert err.code is Code.FORBIDDEN, err
        assert "read-only" in err.message
    assert world.head(a) == head


def test_read_only_token_downloads_and_never_writes(world: World) -> None:
    user = world.user()
    a = world.client(user, "laptop")
    r = world.client(user, "kiosk", read_only_token=True)
    assert r.config.read_only
    write(a.folder / "board.md", "today: soup\n")
    settle(a, r)
    head = world.head(a)
    write(r.folder / "board.md", "today: pizza (kiosk)\n")
    write(r.folder / "kiosk.txt", "kiosk note\n")
    res = r.sync_once()
    assert res.converged and sorted(res.kept_locally) == ["board.md", "kiosk.txt"], res
    assert world.head(a) == head
    settle(a)
    assert tree(a.folder) == {"board.md": ("file", b"today: soup\n", False)}
    assert tree(r.folder)["board.md"][1] == b"today: pizza (kiosk)\n"


# -- revoked tokens -------------------------------------------------------------------------


def test_revoked_token_stops_working_at_once(world: World) -> None:
    user = world.user()
    a = world.client(user, "laptop")
    b = world.client(user, "stolen-phone")
    for i in range(12):
        write(a.folder / f"n{i}.txt", f"note {i}\n")
    settle(a, b)
    admin(world.srv, "token", "revoke", user, "--device", "stolen-phone")

    # Right away: every call with the revoked token is refused.
    with pytest.raises(LinesyncError) as info:
        b.sync_once()
    assert info.value.code is Code.UNAUTHENTICATED
    assert "revoked" in info.value.message

    # The other device goes on; its deletes and edits never reach the revoked one,
    # and the failed sync deleted nothing on the revoked device.
    (a.folder / "n0.txt").unlink()
    write(a.folder / "n1.txt", "changed after the revocation\n")
    settle(a)
    write(b.folder / "n2.txt", "edited on the revoked device\n")
    before = tree(b.folder)
    with pytest.raises(LinesyncError):
        b.sync_once()
    assert tree(b.folder) == before, "a failed sync changed the folder"
    assert len(world.history(a, "n2.txt")) == 1, "the revoked device committed"

    # The command line says so clearly and exits non-zero.
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = cli_main(["sync", str(b.folder)])
    assert rc != 0
    assert "revoked" in err.getvalue(), err.getvalue()
    assert tree(b.folder) == before


def test_revoked_token_gets_nothing_from_a_waiting_long_poll(world: World) -> None:
    """A long-poll that was waiting when the token was revoked does not hand the
    revoked device the changes committed afterwards."""
    user = world.user()
    a = world.client(user, "laptop")
    b = world.client(user, "stolen-phone")
    write(a.folder / "old.txt", "before\n")
    settle(a, b)

    async def go() -> list[str]:
        async with Remote(world.srv.url, b.config.token) as rem:
            n = b.config.namespace
            cursor = (await rem.head(n)).cursor
            poll = asyncio.create_task(rem.list_changes(n, cursor, wait=15))
            await asyncio.sleep(0.3)
            await asyncio.to_thread(
                admin, world.srv, "token", "revoke", user, "--device", "stolen-phone"
            )
            write(a.folder / "secret-after-revoke.txt", "not for the thief\n")
            await asyncio.to_thread(a.sync_once)
            try:
                resp = await poll
            except LinesyncError:
                return []
            return [e.path for e in resp.entries]

    leaked = asyncio.run(go())
    assert "secret-after-revoke.txt" not in leaked, "a revoked token received new changes"


# -- other users -----------------------------------------------------------------------------


def test_another_user_can_neither_read_nor_detect_your_files(world: World) -> None:
    alice, mallory = world.user("alice"), world.user("mallory")
    a = world.client(alice, "laptop")
    m = world.client(mallory, "laptop")
    secret = b"alice's diary: " + random.Random(8).randbytes(20 * KIB)
    write(a.folder / "diary.bin", secret)
    write(a.folder / "plans.md", "world domination, step 1\n")
    write(m.folder / "mine.txt", "mallory's own file\n" * 50)
    settle(a, m)
    assert sorted(tree(m.folder)) == ["mine.txt"]
    alice_ns = a.config.namespace
    cid = split(secret)[0][0]  # a chunk of alice's file

    # Not through the client: the namespace is not offered to mallory.
    for name in (a.config.namespace_name, str(alice_ns)):
        with pytest.raises(LookupError):
            Client.init(world.root / f"m-{name}", server=world.srv.url,
                        token=m.config.token, namespace=name)  # fmt: skip
        assert not (world.root / f"m-{name}" / ".linesync").exists()

    async def probe() -> None:
        ghost = 10**9
        async with Remote(world.srv.url, m.config.token) as rem:
            me = await rem.me()
            assert [n.id for n in me.namespaces] == [m.config.namespace]
            calls = {
                "head": lambda ns: rem.head(ns),
                "list": lambda ns: rem.list_changes(ns),
                "history": lambda ns: rem.history(ns, "diary.bin"),
                "entry": lambda ns: rem.entry(ns, 1),
                "fetch": lambda ns: rem.fetch(ns, [cid]),
                "missing": lambda ns: rem.missing(ns, [cid]),
                "commit": lambda ns: rem.commit(ns, [CommitOp(path="x", kind=Kind.DIRECTORY)]),
            }
            for what, call in calls.items():
                real = await _refused(call(alice_ns))
                fake = await _refused(call(ghost))
                # The same answer as for a namespace that does not exist.
                assert (real.code, real.message) == (fake.code, fake.message), what
                assert real.code is Code.NOT_FOUND, (what, real)

            # Through mallory's own namespace: alice's chunk is "missing", exactly
            # as a chunk nobody has; it cannot be fetched...
            own = m.config.namespace
            other = chunk_id(b"nobody has this chunk")
            assert unpack_ids((await rem.missing(own, [cid])).missing) == [cid]
            assert unpack_ids((await rem.missing(own, [other])).missing) == [other]
            e1 = await _refused(rem.fetch(own, [cid]))
            e2 = await _refused(rem.fetch(own, [other]))
            assert (e1.code, e1.message.replace(cid.hex(), "?")) == (
                e2.code,
                e2.message.replace(other.hex(), "?"),
            )
            # ... nor used as the base of a delta for one of mallory's own chunks.
            mine_ids, _ = split(files(tree(m.folder))["mine.txt"])  # type: ignore[arg-type]
            got1 = await rem.fetch(own, mine_ids[:1], [cid])
            got2 = await rem.fetch(own, mine_ids[:1], [other])
            assert [(f.codec, f.base, f.payload) for f in got1] == [
                (f.codec, f.base, f.payload) for f in got2
            ]
            # ... nor claimed by committing a blocklist that names it.
            ids, _ = split(secret)
            op = CommitOp(path="stolen.bin", kind=Kind.FILE, size=len(secret), mtime_ns=1,
                          content=Content(ids=pack_ids(ids)))  # fmt: skip
            (res,) = await rem.commit(own, [op])
            assert res.status == "missing", res
            assert set(unpack_ids(res.missing or "")) == set(ids)

    asyncio.run(probe())
    settle(m)
    assert sorted(tree(m.folder)) == ["mine.txt"]
    assert files(tree(a.folder))["diary.bin"] == secret
