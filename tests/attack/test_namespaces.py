"""Namespaces seen by a stranger: every route answers for another user's namespace
exactly as for one that does not exist, and nothing of one namespace can be read,
probed or written through another."""

from __future__ import annotations

from linesync.core.ids import chunk_id, pack_ids
from linesync.protocol import codec, inline
from linesync.protocol.framing import Frame
from tests.attack.helpers import (
    chunks_post,
    connect,
    head,
    read_response,
    run,
    still_missing,
)
from tests.support.api import (
    Api,
    Remote,
    User,
    decode_frames,
    endpoint_requests,
    frames_body,
    ids_of,
    missing,
    new_token,
    new_user,
    ns_path,
    put_file,
    raw_frames,
    split,
    text,
)
from tests.support.server import ServerProc

SHARED = b"shared content\n"


async def _setup_content(srv: ServerProc, token: str, ns: int) -> bytes:
    """A file "f.md" at jid 1 holding one chunk; its bytes."""
    async with Remote(srv.url, token) as r:
        assert await put_file(r, ns, "f.md", SHARED) == 1
    return SHARED


def test_another_users_token_finds_nothing(srv: ServerProc) -> None:
    """B's tokens (read-write and read-only) on A's namespace: every route answers
    exactly as for a namespace that does not exist, and nothing reaches A's."""
    a, b = new_user(srv), new_user(srv)
    b_ro = new_token(srv, b.name, "ro", read_only=True)

    async def go() -> None:
        data = await _setup_content(srv, a.token, a.ns)
        cid = chunk_id(data)
        body = frames_body(raw_frames([b"intruder\n"]))
        async with Api(srv.url) as api:
            nowhere = 10**9
            for token in (b.token, b_ro):
                theirs = endpoint_requests(a.ns, cid, body)
                absent = endpoint_requests(nowhere, cid, body)
                for (m, path, kw), (_, path2, kw2) in zip(theirs, absent, strict=True):
                    resp = await api.req(m, path, token=token, **kw)
                    resp.expect(404, "not_found")
                    none = await api.req(m, path2, token=token, **kw2)
                    none.expect(404, "not_found")
                    assert resp.body == none.body, path  # indistinguishable
                    assert resp.headers == none.headers, path
            # Nothing of B's attempts reached A's namespace.
            assert await head(api, a.ns, a.token) == 1
            resp = await api.post(
                ns_path(a.ns, "chunks/missing"),
                json_body={"ids": pack_ids([chunk_id(b"intruder\n")])},
                token=a.token,
            )
            assert resp.json()["missing"] == pack_ids([chunk_id(b"intruder\n")])
            # The admin's home (namespace 1) is no one else's either.
            (await api.get(ns_path(1, "head"), token=a.token)).expect(404, "not_found")
            (await api.get(ns_path(1, "head"), token=srv.token)).expect(200)

    run(go())


def test_dot_segments_in_the_url_lead_nowhere(srv: ServerProc) -> None:
    """A raw request line with ``..`` or encoded separators cannot step from the
    caller's namespace into another one: 404, and never the other's journal."""
    a, b = new_user(srv), new_user(srv)

    async def setup() -> None:
        await _setup_content(srv, a.token, a.ns)

    run(setup())
    targets = [
        f"/v1/ns/{b.ns}/../{a.ns}/head",
        f"/v1/ns/{b.ns}/..%2f{a.ns}/head",
        f"/v1/ns/{b.ns}%2f..%2f{a.ns}/head",
        f"/v1/ns/{b.ns}/%2e%2e/{a.ns}/head",
        f"/v1/ns/{a.ns}/head/../../{b.ns}/head",
        f"/v1/ns/{b.ns}/entries/../../{a.ns}/entries/1",
        f"/v1/ns/{a.ns}%00/head",
        f"/v1/ns/{a.ns};{b.ns}/head",
    ]
    for target in targets:
        sock = connect(srv)
        try:
            sock.sendall(
                f"GET {target} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {b.token}\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            status, body = read_response(sock, 10)
        except (TimeoutError, ConnectionResetError) as exc:
            raise AssertionError(f"{target}: {exc!r}") from exc
        finally:
            sock.close()
        assert status in (400, 404), (target, status, body)
        assert b'"jid"' not in body and b"f.md" not in body, (target, body)


def test_non_integer_namespace_is_not_found(srv: ServerProc, user: User) -> None:
    async def go() -> None:
        async with Api(srv.url, user.token) as api:
            for ns in ("abc", "-1", "1.5", "0x1", "%20", "1e3", "９", "99999999999999999999999"):
                for method, path, kw in endpoint_requests(1, chunk_id(b"x"), b""):
                    path = path.replace("/v1/ns/1/", f"/v1/ns/{ns}/")
                    resp = await api.req(method, path, **kw)
                    assert (resp.status, resp.code) == (404, "not_found"), (path, resp.body)
            for jid in ("x", "-1", "1.0"):
                resp = await api.get(ns_path(user.ns, f"entries/{jid}"))
                resp.expect(404, "not_found")
            (await api.get(ns_path(user.ns, "entries/99999999999999999999999"))).expect(
                404, "not_found"
            )
            # Wrong method on a real route.
            (await api.get(ns_path(user.ns, "commit"))).expect(405, "method_not_allowed")

    run(go())


# -- chunks of another namespace ---------------------------------------------------------


def test_chunks_of_another_namespace_are_invisible(srv: ServerProc) -> None:
    a, b = new_user(srv), new_user(srv)

    async def go() -> None:
        secret = text(12, "alice's secret")
        (part,) = split(secret)
        sid = chunk_id(part)
        async with Remote(srv.url, a.token) as ra:
            await put_file(ra, a.ns, "secret.md", secret)
        mine = b"bob's own chunk\n"
        async with Api(srv.url, b.token) as api, Remote(srv.url, b.token) as rb:
            await rb.upload(b.ns, raw_frames([mine]))
            # chunks/missing answers per namespace.
            assert await missing(rb, b.ns, [sid, chunk_id(mine)]) == [sid]
            # Downloading it is refused, alone or among B's own chunks.
            for ids in ([sid], [chunk_id(mine), sid]):
                resp = await api.post(ns_path(b.ns, "chunks/get"), json_body={"ids": pack_ids(ids)})
                resp.expect(422, "chunk_unavailable")
            # A's chunk as a base for a download is ignored (no zstd-dict against it).
            resp = await api.post(
                ns_path(b.ns, "chunks/get"),
                json_body={"ids": pack_ids([chunk_id(mine)]), "bases": pack_ids([sid])},
            )
            (frame,) = decode_frames(resp.expect(200).body)
            assert (frame.chunk_id, frame.base) == (chunk_id(mine), None)
            assert codec.decode(frame.codec, frame.payload, None, 2**20) == mine
            # Uploading against A's chunk as dictionary is refused, and stores nothing.
            guess = secret.replace(b"000003", b"000004")
            kind, payload = codec.encode(guess, part)
            assert kind is codec.Codec.ZSTD_DICT
            frame = Frame(chunk_id(guess), kind, (sid,), payload)
            (await chunks_post(api, b.ns, frames_body([frame]))).expect(422, "chunk_unavailable")
            item = inline.encode(guess, [sid], part)
            resp = await api.post(
                ns_path(b.ns, "commit"),
                json_body={
                    "ops": [],
                    "chunks": [{"data": item.data, "codec": item.codec, "base": item.base}],
                },
            )
            resp.expect(422, "chunk_unavailable")
            await still_missing(api, b.ns, [chunk_id(guess), sid])
            # Committing A's blocklist without the bytes: B is asked for them.
            op = {
                "path": "stolen.md",
                "kind": "file",
                "size": len(secret),
                "content": {"ids": pack_ids([sid])},
            }
            resp = await api.post(ns_path(b.ns, "commit"), json_body={"ops": [op]})
            (result,) = resp.expect(200).json()["results"]
            assert result == {"path": "stolen.md", "status": "missing", "missing": pack_ids([sid])}
            assert await head(api, b.ns) == 0
            # A restore of A's entry by JID is not found in B's namespace.
            resp = await api.post(ns_path(b.ns, "restore"), json_body={"path": "x.md", "jid": 1})
            resp.expect(404, "not_found")
            resp = await api.post(
                ns_path(b.ns, "restore"), json_body={"path": "x.md", "jid": 1, "copy": True}
            )
            resp.expect(404, "not_found")
            (await api.get(ns_path(b.ns, "entries/1"))).expect(404, "not_found")

    run(go())


def test_dedup_is_invisible_in_the_answers(srv: ServerProc) -> None:
    """B uploading bytes that A already stored gets exactly A's answer, then may use
    them. (Its timing: test_leaks.py.)"""
    a, b = new_user(srv), new_user(srv)

    async def go() -> None:
        data = text(200, "dedup")
        parts = split(data)
        async with Remote(srv.url, a.token) as ra, Remote(srv.url, b.token) as rb:
            first = await ra.upload(a.ns, raw_frames(parts))
            second = await rb.upload(b.ns, raw_frames(parts))
            # Commit and download work for B like for anyone.
            assert await put_file(rb, b.ns, "mine.md", data) == 1
            frames = await rb.fetch(b.ns, ids_of(parts))
            assert b"".join(codec.decode(f.codec, f.payload, None, 2**20) for f in frames) == data
            assert (second.stored, second.bytes) == (first.stored, first.bytes)

    run(go())
