"""WebDAV against a real server process: methods, preconditions, and that a
WebDAV change is a commit in the journal that linesync clients see (and the
other way round)."""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from pathlib import Path

from linesync.core.ids import unpack_ids
from linesync.protocol.schemas import Kind
from tests.dav.davclient import PROPFIND_ALL, Dav, hrefs
from tests.scenarios.helpers import World, settle, tree
from tests.support.api import Remote, User, admin
from tests.support.server import ServerProc


def dav_of(srv: ServerProc, user: User) -> Dav:
    return Dav(srv.url, user.name, user.token)


async def _history(srv: ServerProc, user: User, path: str) -> list[object]:
    async with Remote(srv.url, user.token) as r:
        return list((await r.history(user.ns, path)).entries)


def history(srv: ServerProc, user: User, path: str) -> list:  # type: ignore[type-arg]
    return asyncio.run(_history(srv, user, path))


def test_options_announce_class_1_and_2(srv: ServerProc, user: User) -> None:
    d = dav_of(srv, user)
    a = d.req("OPTIONS", d.url(user.name), auth=False)
    assert a.status == 200
    assert a.headers["dav"] == "1, 2"
    assert "PROPFIND" in a.headers["allow"] and "LOCK" in a.headers["allow"]


def test_put_get_head_ranges_and_etags(srv: ServerProc, user: User) -> None:
    d = dav_of(srv, user)
    u = d.url(user.name, "notes.txt")
    data = b"".join(b"line %d of the notes\n" % i for i in range(5000))
    put = d.req("PUT", u, data)
    assert put.status == 201, put.body
    etag = put.headers["etag"]
    got = d.req("GET", u)
    assert got.status == 200 and got.body == data
    assert got.headers["etag"] == etag
    assert got.headers["content-type"].startswith("text/plain")
    assert "last-modified" in got.headers
    head = d.req("HEAD", u)
    assert (
        head.status == 200 and head.body == b"" and head.headers["content-length"] == str(len(data))
    )
    part = d.req("GET", u, headers={"Range": "bytes=1000-49999"})
    assert part.status == 206 and part.body == data[1000:50000]
    assert part.headers["content-range"] == f"bytes 1000-49999/{len(data)}"
    tail = d.req("GET", u, headers={"Range": "bytes=-10"})
    assert tail.status == 206 and tail.body == data[-10:]
    assert d.req("GET", u, headers={"Range": f"bytes={len(data)}-"}).status == 416
    # Conditional requests on the ETag.
    assert d.req("GET", u, headers={"If-None-Match": etag}).status == 304
    assert d.req("PUT", u, b"x", headers={"If-Match": '"nope"'}).status == 412
    assert d.req("PUT", u, b"x", headers={"If-None-Match": "*"}).status == 412
    again = d.req("PUT", u, b"new\n", headers={"If-Match": etag})
    assert again.status == 204 and again.headers["etag"] != etag
    assert d.req("GET", u).body == b"new\n"
    # Every PUT is a version in the journal.
    assert [e.kind for e in history(srv, user, "notes.txt")] == [Kind.FILE, Kind.FILE]


def test_collections_propfind_and_tree_rules(srv: ServerProc, user: User) -> None:
    d = dav_of(srv, user)
    ns = user.name
    assert d.req("PUT", d.url(ns, "nope/file.txt"), b"x").status == 409  # no parent
    assert d.req("MKCOL", d.url(ns, "docs")).status == 201
    assert d.req("MKCOL", d.url(ns, "docs")).status == 405
    assert d.req("MKCOL", d.url(ns, "a/b")).status == 409
    assert d.req("PUT", d.url(ns, "docs/r\u00e9sum\u00e9.md"), b"# hi\n").status == 201
    assert d.req("PUT", d.url(ns, "docs/b.bin"), bytes(range(256)) * 100).status == 201
    one = d.req("PROPFIND", d.url(ns, "docs/"), PROPFIND_ALL, {"Depth": "1"})
    assert one.status == 207
    assert sorted(hrefs(one)) == sorted(
        [f"/dav/{ns}/docs/", f"/dav/{ns}/docs/r%C3%A9sum%C3%A9.md", f"/dav/{ns}/docs/b.bin"]
    )
    sizes = [e.text for e in one.xml().iter("{DAV:}getcontentlength")]
    assert sorted(sizes) == ["25600", "5"]
    zero = d.req("PROPFIND", d.url(ns, "docs/"), None, {"Depth": "0"})
    assert hrefs(zero) == [f"/dav/{ns}/docs/"]
    assert zero.xml().find(".//{DAV:}collection") is not None
    inf = d.req("PROPFIND", d.url(ns, "docs/"), None, {"Depth": "infinity"})
    assert inf.status == 403 and b"propfind-finite-depth" in inf.body
    assert d.req("PROPFIND", d.url(ns, "missing"), None, {"Depth": "0"}).status == 404
    # The list of namespaces at /dav/.
    top = d.req("PROPFIND", "/dav/", None, {"Depth": "1"})
    assert f"/dav/{ns}/" in hrefs(top)
    # DELETE of a folder takes what is in it, in one commit.
    assert d.req("DELETE", d.url(ns, "docs")).status == 204
    assert d.req("GET", d.url(ns, "docs/b.bin")).status == 404
    assert d.req("DELETE", d.url(ns, "docs")).status == 404


def test_move_is_a_move_and_copy_reuses_chunks(srv: ServerProc, user: User) -> None:
    d = dav_of(srv, user)
    ns = user.name
    d.req("MKCOL", d.url(ns, "src"))
    d.req("MKCOL", d.url(ns, "src/inner"))
    data = hashlib.sha256(b"seed").digest() * 4096
    assert d.req("PUT", d.url(ns, "src/inner/f.bin"), data).status == 201
    dest = f"{srv.url}{d.url(ns, 'dst')}"
    assert d.req("MOVE", d.url(ns, "src"), headers={"Destination": dest}).status == 201
    assert d.req("GET", d.url(ns, "dst/inner/f.bin")).body == data
    assert d.req("GET", d.url(ns, "src/inner/f.bin")).status == 404
    moved = history(srv, user, "dst")
    assert moved[0].moved_from == "src"  # one folder move in the journal
    # Overwrite: F refuses, T replaces.
    d.req("PUT", d.url(ns, "other.bin"), b"other")
    f_dest = {"Destination": f"{srv.url}{d.url(ns, 'other.bin')}", "Overwrite": "F"}
    assert d.req("MOVE", d.url(ns, "dst/inner/f.bin"), headers=f_dest).status == 412
    # COPY: new entries that name the same chunks.
    c_dest = {"Destination": f"{srv.url}{d.url(ns, 'copy')}"}
    assert d.req("COPY", d.url(ns, "dst"), headers=c_dest).status == 201
    assert d.req("GET", d.url(ns, "copy/inner/f.bin")).body == data
    assert d.req("GET", d.url(ns, "dst/inner/f.bin")).body == data

    async def blocklists() -> tuple[list[bytes], list[bytes]]:
        async with Remote(srv.url, user.token) as r:
            a = (await r.history(user.ns, "dst/inner/f.bin")).entries[0]
            b = (await r.history(user.ns, "copy/inner/f.bin")).entries[0]
            ea, eb = await r.entry(user.ns, a.jid), await r.entry(user.ns, b.jid)
            assert ea.content and eb.content and ea.content.ids and eb.content.ids
            return unpack_ids(ea.content.ids), unpack_ids(eb.content.ids)

    a, b = asyncio.run(blocklists())
    assert a == b and a
    o_dest = {"Destination": f"{srv.url}{d.url(ns, 'other.bin')}", "Overwrite": "T"}
    assert d.req("COPY", d.url(ns, "copy/inner/f.bin"), headers=o_dest).status == 204
    assert d.req("GET", d.url(ns, "other.bin")).body == data


def test_authorization_rules(srv: ServerProc, user: User) -> None:
    d = dav_of(srv, user)
    ns = user.name
    d.req("PUT", d.url(ns, "mine.txt"), b"mine\n")
    # No credentials, a wrong token, a token of another user under this name.
    none = d.req("PROPFIND", d.url(ns), None, {"Depth": "0"}, auth=False)
    assert none.status == 401
    assert none.headers["www-authenticate"].startswith('Basic realm="linesync"')
    assert d.req("GET", d.url(ns, "mine.txt"), auth=(ns, "lst_" + "x" * 32)).status == 401
    other = admin(srv, "user", "add", ns + "b") and ns + "b"
    other_token = admin(srv, "token", "create", other, "--device", "d").splitlines()[-1]
    assert d.req("GET", d.url(ns, "mine.txt"), auth=(ns, other_token)).status == 401
    # Another user's namespace is as missing as one that does not exist.
    od = Dav(srv.url, other, other_token)
    theirs = od.req("GET", od.url(ns, "mine.txt"))
    nowhere = od.req("GET", od.url("no-such-namespace-x", "mine.txt"))
    assert theirs.status == nowhere.status == 404
    assert theirs.body == nowhere.body
    # A read-only token reads only.
    ro_token = admin(srv, "token", "create", ns, "--device", "ro", "--read-only").splitlines()[-1]
    ro = Dav(srv.url, ns, ro_token)
    assert ro.req("GET", ro.url(ns, "mine.txt")).body == b"mine\n"
    assert ro.req("PROPFIND", ro.url(ns), None, {"Depth": "1"}).status == 207
    dest = {"Destination": f"{srv.url}{d.url(ns, 'elsewhere.txt')}"}
    lockbody = (
        b'<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/>'
        b"</D:lockscope><D:locktype><D:write/></D:locktype></D:lockinfo>"
    )
    patch = (
        b'<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:"><D:set><D:prop>'
        b'<x:a xmlns:x="urn:x">1</x:a></D:prop></D:set></D:propertyupdate>'
    )
    for method, body, headers in [
        ("PUT", b"changed", {}),
        ("DELETE", None, {}),
        ("MKCOL", None, {}),
        ("MOVE", None, dest),
        ("COPY", None, dest),
        ("LOCK", lockbody, {}),
        ("PROPPATCH", patch, {}),
    ]:
        target = ro.url(ns, "newdir") if method == "MKCOL" else ro.url(ns, "mine.txt")
        got = ro.req(method, target, body, headers)
        assert got.status == 403, (method, got.status, got.body)
    assert d.req("GET", d.url(ns, "mine.txt")).body == b"mine\n"
    # A revoked token is refused, and so is an expired one.
    admin(srv, "token", "revoke", ns, "--device", "ro")
    assert ro.req("GET", ro.url(ns, "mine.txt")).status == 401
    brief = admin(srv, "token", "create", ns, "--device", "brief", "--expires", "1s")
    short = Dav(srv.url, ns, brief.splitlines()[-1])
    assert short.req("GET", short.url(ns, "mine.txt")).status == 200
    time.sleep(1.2)
    assert short.req("GET", short.url(ns, "mine.txt")).status == 401


def test_bad_names_and_bodies_are_refused(srv: ServerProc, user: User) -> None:
    d = dav_of(srv, user)
    ns = user.name
    base = f"/dav/{ns}/"
    assert d.req("PUT", base + "a/../../x", b"x").status in (400, 404)
    assert d.req("PUT", base + "..", b"x").status in (400, 404)
    assert d.req("PUT", base + "bad%00name", b"x").status == 400
    assert d.req("PUT", base + "n" * 300, b"x").status == 400
    assert d.req("PUT", base + "%ff%fe", b"x").status == 400
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
        b'<D:propfind xmlns:D="DAV:"><D:prop><D:getetag/>&lol2;</D:prop></D:propfind>'
    )
    assert d.req("PROPFIND", base, bomb, {"Depth": "0"}).status == 400
    big = b'<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:allprop/>' + b" " * 2**21
    assert d.req("PROPFIND", base, big + b"</D:propfind>", {"Depth": "0"}).status == 413
    assert d.req("PROPFIND", base, b"<not-closed", {"Depth": "0"}).status == 400
    # Nothing of it reached the journal.
    assert d.req("PROPFIND", base, None, {"Depth": "1"}).xml().findall("{DAV:}response")[1:] == []


def test_clients_and_webdav_see_each_other(world: World, srv: ServerProc) -> None:
    name = world.user()
    token = world.token(name, "webdav")
    d = Dav(srv.url, name, token)
    laptop = world.client(name, "laptop")
    # A PUT through WebDAV reaches the linesync client.
    d.req("MKCOL", d.url(name, "shared"))
    text = b"".join(b"recipe step %d\n" % i for i in range(2000))
    assert d.req("PUT", d.url(name, "shared/recipe.txt"), text).status == 201
    settle(laptop)
    assert (laptop.folder / "shared" / "recipe.txt").read_bytes() == text
    # The client's edit is what WebDAV reads next.
    edited = text.replace(b"recipe step 7\n", b"recipe step 7, with salt\n")
    (laptop.folder / "shared" / "recipe.txt").write_bytes(edited)
    settle(laptop)
    assert d.req("GET", d.url(name, "shared/recipe.txt")).body == edited
    # A WebDAV MOVE shows as a move on the client; the history keeps every version.
    dest = {"Destination": f"{srv.url}{d.url(name, 'shared/moved.txt')}"}
    assert d.req("MOVE", d.url(name, "shared/recipe.txt"), headers=dest).status == 201
    settle(laptop)
    files = tree(laptop.folder)
    assert "shared/recipe.txt" not in files and files["shared/moved.txt"][1] == edited
    assert len(world.history(laptop, "shared/recipe.txt")) == 3  # PUT, client edit, moved away
    assert world.in_history(laptop, "shared/recipe.txt", text)


def test_a_put_racing_a_client_edit_keeps_both(world: World, srv: ServerProc) -> None:
    name = world.user()
    d = Dav(srv.url, name, world.token(name, "webdav"))
    laptop = world.client(name, "laptop")
    u = d.url(name, "doc.txt")
    etag = d.req("PUT", u, b"first\n").headers["etag"]
    settle(laptop)
    (laptop.folder / "doc.txt").write_bytes(b"from the laptop\n")
    settle(laptop)
    # A WebDAV client that read the first version writes on top of it: refused.
    late = d.req("PUT", u, b"from webdav\n", headers={"If-Match": etag})
    assert late.status == 412
    assert d.req("GET", u).body == b"from the laptop\n"
    # Without a condition the PUT is the newest version; the laptop's stays in history.
    assert d.req("PUT", u, b"from webdav\n").status == 204
    settle(laptop)
    assert (laptop.folder / "doc.txt").read_bytes() == b"from webdav\n"
    assert world.in_history(laptop, "doc.txt", b"from the laptop\n")


def test_failed_sign_ins_are_rate_limited(tmp_path: Path) -> None:
    from tests.support.api import new_user

    srv = ServerProc(tmp_path / "srv", extra=["--limit", "auth_fail_burst=5"]).start()
    try:
        user = new_user(srv)
        d = Dav(srv.url, user.name, "lst_" + "y" * 32)
        statuses = [d.req("GET", d.url(user.name, "x")).status for _ in range(8)]
        assert statuses[:5] == [401] * 5 and statuses[-1] == 429, statuses
        # Even the right token waits its turn from that address.
        good = Dav(srv.url, user.name, user.token)
        limited = good.req("GET", good.url(user.name))
        assert limited.status == 429 and "retry-after" in limited.headers
    finally:
        srv.stop()


def test_webdav_and_clients_cut_the_same_chunks(world: World, srv: ServerProc) -> None:
    """A PUT is cut by the client's chunker: the same bytes make the same
    blocklist whichever side wrote them, so each dedupes against the other."""
    name = world.user()
    d = Dav(srv.url, name, world.token(name, "webdav"))
    laptop = world.client(name, "laptop")
    text = "".join(f"line {i}: {'x' * (i % 97)}\n" for i in range(20_000)).encode()
    blob = random.Random(3).randbytes(1_500_000)
    (laptop.folder / "t.txt").write_bytes(text)
    (laptop.folder / "b.bin").write_bytes(blob)
    settle(laptop)
    assert d.req("PUT", d.url(name, "t-copy.txt"), text).status == 201
    assert d.req("PUT", d.url(name, "b-copy.bin"), blob).status == 201

    async def ids(path: str) -> list[bytes]:
        async with Remote(srv.url, laptop.config.token) as r:
            ns = laptop.config.namespace
            e = await r.entry(ns, (await r.history(ns, path)).entries[0].jid)
            assert e.content is not None and e.content.ids is not None
            return unpack_ids(e.content.ids)

    for a, b in (("t.txt", "t-copy.txt"), ("b.bin", "b-copy.bin")):
        ia, ib = asyncio.run(ids(a)), asyncio.run(ids(b))
        assert ia == ib and len(ia) > 10, (a, len(ia), len(ib))


LOCKINFO = (
    b'<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/>'
    b"</D:lockscope><D:locktype><D:write/></D:locktype><D:owner>a</D:owner></D:lockinfo>"
)


def test_a_lock_token_is_no_key_for_another_member(world: World, srv: ServerProc) -> None:
    """Lock tokens show in lockdiscovery to every reader; only the user who
    took the lock can write with it or unlock it."""
    a_name, b_name = world.user(), world.user()
    team = world.namespace(a_name)
    admin(srv, "namespace", "share", team, b_name)
    a = Dav(srv.url, a_name, world.token(a_name, "a"))
    b = Dav(srv.url, b_name, world.token(b_name, "b"))
    u = a.url(team, "plan.txt")
    assert a.req("PUT", u, b"v1\n").status == 201
    locked = a.req("LOCK", u, LOCKINFO, {"Timeout": "Second-600"})
    assert locked.status == 200
    token = locked.headers["lock-token"].strip("<>")
    seen = b.req("PROPFIND", u, None, {"Depth": "0"})
    assert token in seen.body.decode()
    assert b.req("PUT", u, b"b\n").status == 423
    assert b.req("PUT", u, b"b\n", {"If": f"(<{token}>)"}).status == 423
    assert b.req("UNLOCK", u, None, {"Lock-Token": f"<{token}>"}).status == 403
    assert a.req("PUT", u, b"v2\n", {"If": f"(<{token}>)"}).status == 204
    assert a.req("UNLOCK", u, None, {"Lock-Token": f"<{token}>"}).status == 204
    assert b.req("PUT", u, b"b\n").status == 204


def test_a_lock_on_an_unmapped_url_makes_an_empty_file(world: World, srv: ServerProc) -> None:
    """RFC 4918 §7.3: the empty file is a commit like any other, and the lock
    holds against writers without its token until UNLOCK."""
    name = world.user()
    d = Dav(srv.url, name, world.token(name, "webdav"))
    laptop = world.client(name, "laptop")
    u = d.url(name, "reserved.txt")
    locked = d.req("LOCK", u, LOCKINFO, {"Depth": "0"})
    assert locked.status == 201
    assert locked.xml().find(".//{DAV:}locktoken/{DAV:}href") is not None
    token = locked.headers["lock-token"].strip("<>")
    settle(laptop)
    assert (laptop.folder / "reserved.txt").read_bytes() == b""
    assert d.req("PUT", u, b"no token\n").status == 423
    assert d.req("DELETE", u).status == 423
    assert d.req("PUT", u, b"with it\n", {"If": f"(<{token}>)"}).status == 204
    assert d.req("UNLOCK", u, None, {"Lock-Token": f"<{token}>"}).status == 204
    assert d.req("UNLOCK", u, None, {"Lock-Token": f"<{token}>"}).status == 409
    settle(laptop)
    assert (laptop.folder / "reserved.txt").read_bytes() == b"with it\n"
