"""Paths an attacker sends: traversal, NUL and control characters, over-long paths
and segments, NFD, case twins, a file and a folder that share a prefix, symlink
targets no file system can hold (finding 6), and restore of another path's version
(finding 10). A refused path commits nothing."""

from __future__ import annotations

from typing import Any

from linesync.core.ids import chunk_id, pack_ids
from tests.attack.helpers import head, run
from tests.support.api import Api, Remote, User, ns_path, put_file, raw_frames
from tests.support.server import ServerProc

EMPTY = {"ids": ""}


def d(path: str, **kw: Any) -> dict[str, Any]:
    return {"path": path, "kind": "directory", **kw}


def f(path: str, **kw: Any) -> dict[str, Any]:
    """An empty file (no chunks to upload)."""
    return {"path": path, "kind": "file", "content": EMPTY, **kw}


async def commit(api: Api, ns: int, *ops: dict[str, Any]) -> list[dict[str, Any]]:
    resp = await api.post(ns_path(ns, "commit"), json_body={"ops": list(ops)})
    results: list[dict[str, Any]] = resp.expect(200).json()["results"]
    return results


async def live(api: Api, ns: int) -> dict[str, dict[str, Any]]:
    """The namespace's live entries by path, from a full listing."""
    out: dict[str, dict[str, Any]] = {}
    cursor = ""
    while True:
        page = (await api.get(ns_path(ns, "list"), params={"cursor": cursor})).expect(200).json()
        for e in page["entries"]:
            if e["kind"] == "tombstone":
                out.pop(e["path"], None)
            else:
                out[e["path"]] = e
        cursor = page["cursor"]
        if not page.get("more"):
            return out


BAD_PATHS = [
    "..",
    "../x",
    "a/..",
    "a/../b",
    "a/../../etc/passwd",
    ".",
    "./a",
    "a/./b",
    "/abs",
    "/",
    "a//b",
    "a/",
    "a\\b",
    "..\\..\\windows",
    "a\x00b",
    "a\x01b",
    "a\nb",
    "a\x1bb",
    "a\x7fb",
    "x" * 256,
    "x" * 300,
    "d/" + "é" * 150,  # 300 bytes in 150 characters
    "/".join(["é" * 100] * 25),  # 5024 bytes in 2524 characters
    "e\u0301",  # not NFC
    "cafe\u0301/x",
]


def test_bad_paths_commit_nothing(srv: ServerProc, user: User) -> None:
    async def go() -> None:
        ns = user.ns
        async with Api(srv.url, user.token) as api, Remote(srv.url, user.token) as r:
            await r.upload(ns, raw_frames([b"x\n"]))
            (
                await api.post(
                    ns_path(ns, "commit"), json_body={"ops": [{"path": "src", "kind": "directory"}]}
                )
            ).expect(200)
            file_content = {"ids": pack_ids([chunk_id(b"x\n")])}
            for bad in BAD_PATHS:
                shapes = [
                    {"path": bad, "kind": "directory"},
                    {"path": bad, "kind": "file", "size": 2, "content": file_content},
                    {"path": bad, "kind": "symlink", "target": "x"},
                    {"path": bad, "kind": "tombstone", "base_jid": 1},
                    {"path": "dst", "kind": "directory", "move_from": bad, "move_base": 1},
                ]
                for op in shapes:
                    body = {"ops": [{"path": "fine", "kind": "directory"}, op]}
                    resp = await api.post(ns_path(ns, "commit"), json_body=body)
                    assert (resp.status, resp.code) == (400, "bad_path"), (bad, op, resp.body)
                # Restore to the bad path: as a copy of entry 1 ("src"), where only the
                # path is wrong, and without, where the path is checked first.
                for extra in ({"copy": True}, {}):
                    resp = await api.post(
                        ns_path(ns, "restore"), json_body={"path": bad, "jid": 1, **extra}
                    )
                    assert (resp.status, resp.code) == (400, "bad_path"), (bad, extra, resp.body)
                resp = await api.get(ns_path(ns, "history"), params={"path": bad})
                assert (resp.status, resp.code) == (400, "bad_path"), (bad, resp.body)
            assert await head(api, ns) == 1
            lst = (await api.get(ns_path(ns, "list"))).json()
            assert [e["path"] for e in lst["entries"]] == ["src"]

    run(go())


def test_overlong_ascii_path_is_bad_path(srv: ServerProc, user: User) -> None:
    """A 5000-byte path breaks the path rules: bad_path, whatever its characters."""

    async def go() -> None:
        long = "/".join(["x" * 200] * 25)
        assert len(long.encode()) > 5000
        async with Api(srv.url, user.token) as api:
            resp = await api.post(
                ns_path(user.ns, "commit"), json_body={"ops": [{"path": long, "kind": "directory"}]}
            )
            resp.expect(400, "bad_path")
            assert await head(api, user.ns) == 0

    run(go())


def test_a_4_kb_path_is_the_longest(srv: ServerProc, user: User) -> None:
    """4096 bytes of UTF-8 is the longest path (16 folders of 254 bytes and a 16-byte
    name); one byte more is bad_path and commits nothing."""
    folders = [f"{i:02d}" + "d" * 252 for i in range(16)]
    chain = ["/".join(folders[: i + 1]) for i in range(16)]
    longest = chain[-1] + "/" + "n" * 16
    assert len(longest.encode()) == 4096

    async def go() -> None:
        async with Api(srv.url, user.token) as api:
            over = longest + "x"
            resp = await api.post(
                ns_path(user.ns, "commit"), json_body={"ops": [*map(d, chain), f(over)]}
            )
            resp.expect(400, "bad_path")
            assert await head(api, user.ns) == 0
            results = await commit(api, user.ns, *map(d, chain), f(longest))
            assert [r["status"] for r in results] == ["ok"] * 17, results
            assert longest in await live(api, user.ns)
            # Multi-byte: 4096 bytes in 2048 characters ("é" is 2 bytes) is the limit too.
            wide = "/".join(["é" * 127] * 16)  # 16 x 254 bytes + 15 slashes = 4079
            resp = await api.get(ns_path(user.ns, "history"), params={"path": wide + "/" + "é" * 8})
            resp.expect(200)
            resp = await api.get(ns_path(user.ns, "history"), params={"path": wide + "/" + "é" * 9})
            resp.expect(400, "bad_path")

    run(go())


def test_finding6_a_name_longer_than_255_bytes_is_bad_path(srv: ServerProc, user: User) -> None:
    """Finding 6 (server part): a path component longer than 255 bytes of UTF-8, which
    no supported file system can hold, is refused 400 bad_path wherever it appears,
    and nothing is committed; 255 bytes is fine."""

    async def go() -> None:
        ns = user.ns
        async with Api(srv.url, user.token) as api:
            assert await commit(api, ns, d("top")) == [{"path": "top", "status": "ok", "jid": 1}]
            for name in ("x" * 256, "é" * 128, "é" * 127 + "xx", "😀" * 64):
                assert len(name.encode()) > 255
                for op in (
                    d(name),
                    d("top/" + name),
                    f("top/" + name),
                    {"path": "top/" + name, "kind": "symlink", "target": "t"},
                    d("top/" + name + "/deeper"),
                    d("top/moved", move_from="top/" + name, move_base=1),
                ):
                    resp = await api.post(ns_path(ns, "commit"), json_body={"ops": [d("ok"), op]})
                    assert (resp.status, resp.code) == (400, "bad_path"), (name, op, resp.body)
            assert await head(api, ns) == 1
            for name in ("x" * 255, "é" * 127 + "x", "😀" * 63 + "xxx"):
                assert len(name.encode()) == 255
                (result,) = await commit(api, ns, d("top/" + name))
                assert result["status"] == "ok", result
            assert await head(api, ns) == 4

    run(go())


def test_finding6_a_symlink_target_longer_than_4095_bytes_is_refused(
    srv: ServerProc, user: User
) -> None:
    """Finding 6 (server part): Linux cannot create a symlink whose target is longer
    than 4,095 bytes, and one such entry broke every client of the namespace. The
    server refuses it (400 bad_request), in bytes of UTF-8, with nothing committed;
    4,095 bytes is fine."""

    async def go() -> None:
        ns = user.ns
        async with Api(srv.url, user.token) as api:
            for target in ("x" * 4096, "é" * 2048, "x" * 4094 + "é", "/".join(["y" * 99] * 100)):
                assert len(target.encode()) > 4095
                for ops in (
                    [{"path": "link", "kind": "symlink", "target": target}],
                    [d("fine"), {"path": "fine/link", "kind": "symlink", "target": target}],
                ):
                    resp = await api.post(ns_path(ns, "commit"), json_body={"ops": ops})
                    got = (resp.status, resp.code)
                    assert got == (400, "bad_request"), (len(target), resp.body)
            assert await head(api, ns) == 0
            assert await live(api, ns) == {}
            # An existing symlink cannot be changed into one either.
            (ok,) = await commit(api, ns, {"path": "link", "kind": "symlink", "target": "t"})
            assert ok["status"] == "ok"
            op = {"path": "link", "kind": "symlink", "target": "z" * 4096, "base_jid": ok["jid"]}
            resp = await api.post(ns_path(ns, "commit"), json_body={"ops": [op]})
            resp.expect(400, "bad_request")
            for target in ("x" * 4095, "é" * 2047 + "x"):
                assert len(target.encode()) == 4095
                (result,) = await commit(
                    api, ns, {"path": "l" + str(len(target)), "kind": "symlink", "target": target}
                )
                assert result["status"] == "ok", result
            entries = await live(api, ns)
            assert {p: e.get("target") for p, e in entries.items()} == {
                "link": "t",
                "l4095": "x" * 4095,
                "l2048": "é" * 2047 + "x",
            }

    run(go())


def test_case_twins_never_coexist(srv: ServerProc, user: User) -> None:
    """Two live paths that fold to the same key (case, ß/ss, in one batch or two) are
    a conflict, never a second entry; NFD and compatibility forms are not NFC and
    are bad_path; a case-only rename (a move) and a name freed by a delete work."""

    async def go() -> None:
        ns = user.ns
        async with Api(srv.url, user.token) as api:
            first = await commit(api, ns, f("Notes.md"), d("Docs"), f("straße.txt"))
            assert [r["status"] for r in first] == ["ok"] * 3
            for op in (f("notes.md"), f("NOTES.MD"), d("docs"), d("DOCS"), f("STRASSE.txt")):
                (res,) = await commit(api, ns, op)
                assert (res["status"], res.get("reason")) == ("conflict", "case_collision"), res
            (res,) = await commit(api, ns, f("docs/inside.md"))  # "docs" is no folder
            assert (res["status"], res.get("reason")) == ("conflict", "parent"), res
            twins = await commit(api, ns, d("Pair"), d("pair"))
            assert twins[0]["status"] == "ok"
            assert (twins[1]["status"], twins[1].get("reason")) == ("conflict", "case_collision")
            for bad in ("cafe\u0301.md", "\u212a.md", "Docs/cafe\u0301"):  # NFD, Kelvin sign
                resp = await api.post(ns_path(ns, "commit"), json_body={"ops": [f(bad)]})
                resp.expect(400, "bad_path")
            assert set(await live(api, ns)) == {"Notes.md", "Docs", "straße.txt", "Pair"}
            # A case-only rename is a move, and the old name is free afterwards.
            notes = (await live(api, ns))["Notes.md"]
            rename = f("notes.md", move_from="Notes.md", move_base=notes["jid"])
            (res,) = await commit(api, ns, rename)
            assert res["status"] == "ok", res
            hist = (await api.get(ns_path(ns, "history"), params={"path": "Notes.md"})).json()
            tomb = hist["entries"][0]
            assert tomb["kind"] == "tombstone"
            (res,) = await commit(api, ns, f("Notes.md", base_jid=tomb["jid"]))
            assert (res["status"], res.get("reason")) == ("conflict", "case_collision"), res
            assert set(await live(api, ns)) == {"notes.md", "Docs", "straße.txt", "Pair"}

    run(go())


def test_a_file_and_a_folder_that_share_a_prefix(srv: ServerProc, user: User) -> None:
    """Siblings whose names start like a folder's ("a-b", "a.b", "a b", "ab" beside
    "a/") are not its children: they neither block deleting "a" nor are deleted with
    it; a file cannot hold children, and a folder with children cannot be deleted or
    become a file."""

    async def go() -> None:
        ns = user.ns
        async with Api(srv.url, user.token) as api:
            made = await commit(
                api, ns, d("a"), f("a/x"), f("ab"), f("a-b"), f("a.b"), d("a b"), f("a0")
            )
            assert [r["status"] for r in made] == ["ok"] * 7, made
            jid = {r["path"]: r["jid"] for r in made}
            (res,) = await commit(api, ns, f("ab/x"))
            assert (res["status"], res.get("reason")) == ("conflict", "parent"), res
            (res,) = await commit(api, ns, {"path": "a", "kind": "tombstone", "base_jid": jid["a"]})
            assert (res["status"], res.get("reason")) == ("conflict", "not_empty"), res
            (res,) = await commit(api, ns, f("a", base_jid=jid["a"]))
            assert (res["status"], res.get("reason")) == ("conflict", "not_empty"), res
            resp = await api.post(
                ns_path(ns, "commit"), json_body={"ops": [d("a/in", move_from="a", move_base=1)]}
            )
            resp.expect(400, "bad_request")  # a folder into itself
            # With its one child gone, "a" goes, and every look-alike sibling stays.
            gone = await commit(
                api,
                ns,
                {"path": "a/x", "kind": "tombstone", "base_jid": jid["a/x"]},
                {"path": "a", "kind": "tombstone", "base_jid": jid["a"]},
            )
            assert [r["status"] for r in gone] == ["ok", "ok"], gone
            assert set(await live(api, ns)) == {"ab", "a-b", "a.b", "a b", "a0"}
            # And "a" may come back as a file beside them.
            (res,) = await commit(api, ns, f("a", base_jid=gone[1]["jid"]))
            assert res["status"] == "ok", res

    run(go())


def test_finding10_restore_refuses_another_paths_version(srv: ServerProc, user: User) -> None:
    """Finding 10: restore with the JID of another path's version (a folder, or
    another file) is refused 400 bad_request naming that version's path, and changes
    nothing; with ``"copy": true`` it is accepted as a copy."""
    merge, other = b"merge me\n", b"other file\n"

    async def go() -> None:
        ns = user.ns
        async with Remote(srv.url, user.token) as r, Api(srv.url, user.token) as api:
            (notes,) = await commit(api, ns, d("notes"))
            merge_jid = await put_file(r, ns, "merge.txt", merge)
            other_jid = await put_file(r, ns, "other.txt", other)
            before = await head(api, ns)
            for jid, path in ((notes["jid"], "notes"), (other_jid, "other.txt")):
                resp = await api.post(
                    ns_path(ns, "restore"),
                    json_body={"path": "merge.txt", "jid": jid, "base_jid": merge_jid},
                )
                resp.expect(400, "bad_request")
                assert (
                    repr(path) in resp.json()["error"]["message"]
                    or path in (resp.json()["error"]["message"])
                ), resp.body
            assert await head(api, ns) == before
            state = await live(api, ns)
            assert state["merge.txt"]["jid"] == merge_jid
            assert state["merge.txt"]["kind"] == "file"
            # Its own version is restored as before; another's, when a copy is asked for.
            resp = await api.post(
                ns_path(ns, "restore"),
                json_body={"path": "merge.txt", "jid": merge_jid, "base_jid": merge_jid},
            )
            assert resp.expect(200).json()["status"] == "ok"
            now = resp.json()["jid"]
            resp = await api.post(
                ns_path(ns, "restore"),
                json_body={"path": "merge.txt", "jid": other_jid, "base_jid": now, "copy": True},
            )
            copied = resp.expect(200).json()
            assert copied["status"] == "ok"
            entry = (await api.get(ns_path(ns, f"entries/{copied['jid']}"))).expect(200).json()
            assert entry["path"] == "merge.txt" and entry["size"] == len(other)
            assert entry["content"]["ids"] == pack_ids([chunk_id(other)])

    run(go())
