"""Who may do what, and what the server refuses, against a real server process.

Every refusal is checked for its status, its stable error code, and for having
stored nothing; no input may make the server answer 5xx.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from pathlib import Path
from typing import Any

import zstandard

from linesync.core.ids import chunk_id, pack_ids
from linesync.protocol import codec, inline
from linesync.protocol.framing import MAGIC, MEDIA_TYPE, Frame, encode_frame
from linesync.server.config import ServerConfig
from linesync.server.routes import ROUTES
from tests.support.api import (
    WRITE_ENDPOINTS,
    Api,
    Remote,
    Resp,
    User,
    admin,
    b64,
    decode_frames,
    endpoint_name,
    endpoint_requests,
    frames_body,
    ids_of,
    missing,
    new_token,
    new_user,
    ns_id,
    ns_path,
    put_file,
    raw_frames,
    split,
    text,
    unique,
)
from tests.support.server import ServerProc

run = asyncio.run


async def head(api: Api, ns: int, token: str | None = None) -> int:
    resp = await api.get(ns_path(ns, "head"), token=token or True)
    return int(resp.expect(200).json()["jid"])


async def still_missing(api: Api, ns: int, ids: list[bytes]) -> None:
    """Every id in ``ids`` is still reported missing for ``ns`` (nothing stored)."""
    resp = await api.post(ns_path(ns, "chunks/missing"), json_body={"ids": pack_ids(ids)})
    assert resp.expect(200).json()["missing"] == pack_ids(ids)


def chunks_post(api: Api, ns: int, body: bytes, **kw: Any) -> Any:
    return api.post(ns_path(ns, "chunks"), data=body, content_type=MEDIA_TYPE, **kw)


# -- authentication -------------------------------------------------------------


def auth_routes(ns: int) -> list[tuple[str, str, dict[str, Any]]]:
    cid = chunk_id(b"x")
    return [("GET", "/v1/me", {}), *endpoint_requests(ns, cid, frames_body(raw_frames([b"x"])))]


def test_every_authenticated_route_is_listed() -> None:
    served = {(m, p) for m, p, _, _ in ROUTES}
    public = {("GET", "/healthz"), ("GET", "/metrics"), ("GET", "/v1/openapi.json")}
    tested = {(m, p.replace("/v1/ns/1/", "/v1/ns/{ns:int}/")) for m, p, _ in auth_routes(1)}
    tested = {(m, p.replace("entries/1", "entries/{jid:int}")) for m, p in tested}
    assert served - public == tested


def test_unauthenticated(srv: ServerProc, user: User) -> None:
    forged = [
        None,  # no header at all
        "",
        "Bearer",
        "Bearer ",
        "Bearer    ",
        f"Basic {user.token}",
        f"Token {user.token}",
        user.token,  # no scheme
        f"Bearer{user.token}",
        "Bearer lst_" + secrets.token_urlsafe(32),  # forged
        "Bearer " + user.token[:-1] + ("A" if user.token[-1] != "A" else "B"),  # one char off
        "Bearer " + user.token.upper(),
        "Bearer " + user.token + "x",
    ]

    async def go() -> None:
        async with Api(srv.url) as api:
            before = await head(api, user.ns, user.token)
            for header in forged:
                for method, path, kw in auth_routes(user.ns):
                    hdrs = {} if header is None else {"Authorization": header}
                    resp = await api.req(method, path, headers=hdrs, token=None, **kw)
                    resp.expect(401, "unauthenticated")
                    assert resp.headers.get("www-authenticate", "").startswith("Bearer"), (
                        header,
                        path,
                    )
            assert await head(api, user.ns, user.token) == before
            api.token = user.token
            await still_missing(api, user.ns, [chunk_id(b"x")])
            # The real token, with a lower-case scheme, is fine.
            resp = await api.get(
                "/v1/me", headers={"Authorization": f"bearer {user.token}"}, token=None
            )
            resp.expect(200)

    run(go())


def test_revoked_token_is_refused_at_once(srv: ServerProc, user: User) -> None:
    phone = new_token(srv, user.name, "phone")

    async def go() -> None:
        async with Api(srv.url, user.token) as api:
            (await api.get("/v1/me")).expect(200)
            await asyncio.to_thread(admin, srv, "token", "revoke", user.name, "--device", "laptop")
            for method, path, kw in auth_routes(user.ns):
                resp = await api.req(method, path, **kw)
                resp.expect(401, "unauthenticated")
                assert resp.headers["www-authenticate"].startswith("Bearer")
            # The other device keeps working until it is revoked too.
            (await api.get("/v1/me", token=phone)).expect(200)
            assert await head(api, user.ns, phone) == 0
            await asyncio.to_thread(admin, srv, "token", "revoke", user.name)
            (await api.get("/v1/me", token=phone)).expect(401, "unauthenticated")

    run(go())


def test_expired_token_is_refused(srv: ServerProc, user: User) -> None:
    """A token created with ``--expires`` works until then, and is refused like a
    revoked one afterwards: also by a long-poll that was waiting when it expired."""
    created = time.monotonic()
    out = admin(srv, "token", "create", user.name, "--device", "phone", "--expires", "3s")
    phone = out.splitlines()[-1]

    async def go() -> None:
        async with Api(srv.url, phone) as api:
            me = (await api.get("/v1/me")).expect(200).json()
            assert me["device"] == "phone"
            before = await head(api, user.ns, user.token)
            # A long-poll on the empty namespace outlives the token: when its wait
            # ends, the caller is checked again and refused instead of answered.
            resp = await api.get(ns_path(user.ns, "list"), params={"wait": "5"})
            resp.expect(401, "unauthenticated")
            assert time.monotonic() - created >= 3
            deadline = created + 10
            while (await api.get("/v1/me")).status != 401:  # already expired, in practice
                assert time.monotonic() < deadline, "the token did not expire"
                await asyncio.sleep(0.2)
            for method, path, kw in auth_routes(user.ns):
                resp = await api.req(method, path, **kw)
                resp.expect(401, "unauthenticated")
                assert resp.headers["www-authenticate"].startswith("Bearer"), path
            # Nothing was stored, and the user's other token keeps working.
            api.token = user.token
            (await api.get("/v1/me")).expect(200)
            assert await head(api, user.ns) == before
            await still_missing(api, user.ns, [chunk_id(b"x")])

    run(go())
    listed = json.loads(admin(srv, "token", "list", user.name))
    assert {t["device"]: t["state"] for t in listed} == {"laptop": "active", "phone": "expired"}


# -- authorization ----------------------------------------------------------------


SHARED = b"shared content\n"


async def _setup_content(srv: ServerProc, token: str, ns: int) -> bytes:
    """A file "f.md" at jid 1 holding one chunk; its bytes."""
    async with Remote(srv.url, token) as r:
        assert await put_file(r, ns, "f.md", SHARED) == 1
    return SHARED


async def _check_roles(srv: ServerProc, token: str, ns: int, writable: bool) -> bytes:
    """Every write endpoint answers 403 forbidden (or works), every read works,
    and a refused write commits nothing. Returns the chunk the upload tried."""
    data = SHARED
    fresh = b"never stored " + secrets.token_bytes(8).hex().encode() + b"\n"
    async with Api(srv.url, token) as api:
        before = await head(api, ns)
        for method, path, kw in endpoint_requests(
            ns, chunk_id(data), frames_body(raw_frames([fresh]))
        ):
            resp = await api.req(method, path, **kw)
            name = endpoint_name(path)
            if name in WRITE_ENDPOINTS and not writable:
                resp.expect(403, "forbidden")
            else:
                assert resp.status == 200, (path, resp.status, resp.body[:300])
        if not writable:
            assert await head(api, ns) == before
            assert (await api.get(ns_path(ns, "history"), params={"path": "p"})).json() == {
                "entries": []
            }
        # Reads return the real content.
        got = await api.post(
            ns_path(ns, "chunks/get"), json_body={"ids": pack_ids([chunk_id(data)])}
        )
        assert got.expect(200).headers["content-type"].startswith(MEDIA_TYPE)
        assert data in got.body
        lst = (await api.get(ns_path(ns, "list"))).expect(200).json()
        assert "f.md" in [e["path"] for e in lst["entries"]]
    return fresh


def test_read_only_token(srv: ServerProc, user: User) -> None:
    ro = new_token(srv, user.name, "tablet", read_only=True)

    async def go() -> None:
        await _setup_content(srv, user.token, user.ns)
        tried = await _check_roles(srv, ro, user.ns, writable=False)
        async with Api(srv.url, user.token) as api:
            # The chunk the read-only token tried to upload was not stored.
            await still_missing(api, user.ns, [chunk_id(tried)])
            me = (await api.get("/v1/me", token=ro)).expect(200).json()
            assert me["token_role"] == "ro"

    run(go())


def test_read_only_membership(srv: ServerProc) -> None:
    alice, bob, carol = new_user(srv), new_user(srv), new_user(srv)
    team = unique("team")
    admin(srv, "namespace", "create", team, "--owner", alice.name)
    admin(srv, "namespace", "share", team, bob.name, "--read-only")
    admin(srv, "namespace", "share", team, carol.name)
    tid = ns_id(srv, team)

    async def go() -> None:
        await _setup_content(srv, alice.token, tid)
        tried = await _check_roles(srv, bob.token, tid, writable=False)  # rw token, ro member
        async with Api(srv.url, alice.token) as api:
            await still_missing(api, tid, [chunk_id(tried)])
        await _check_roles(srv, carol.token, tid, writable=True)
        async with Api(srv.url, bob.token) as api:
            me = (await api.get("/v1/me")).json()
            roles = {n["id"]: n["role"] for n in me["namespaces"]}
            assert roles == {bob.ns: "rw", tid: "ro"}
            # Bob's own namespace is still his to write.
            resp = await api.post(
                ns_path(bob.ns, "commit"), json_body={"ops": [{"path": "x", "kind": "directory"}]}
            )
            assert resp.expect(200).json()["results"][0]["status"] == "ok"
        # Unshared: the namespace disappears for him.
        await asyncio.to_thread(admin, srv, "namespace", "unshare", team, bob.name)
        async with Api(srv.url, bob.token) as api:
            (await api.get(ns_path(tid, "head"))).expect(404, "not_found")

    run(go())


def test_other_users_namespace_is_not_found(srv: ServerProc) -> None:
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


# -- chunk probing ----------------------------------------------------------------


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
            (await api.get(ns_path(b.ns, "entries/1"))).expect(404, "not_found")

    run(go())


def test_dedup_is_invisible(srv: ServerProc) -> None:
    """B uploading bytes that A already stored gets exactly A's answer, then may use them."""
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


def test_chunk_mismatch_stores_nothing(srv: ServerProc, user: User) -> None:
    async def go() -> None:
        good, bad = b"good chunk\n", b"bad chunk\n"
        lie = Frame(chunk_id(b"something else\n"), 0, None, bad)
        zlie = Frame(chunk_id(b"other\n"), 1, None, zstandard.ZstdCompressor().compress(bad))
        async with Api(srv.url, user.token) as api:
            for frames in ([lie], raw_frames([good]) + [lie], [zlie, *raw_frames([good])]):
                (await chunks_post(api, user.ns, frames_body(frames))).expect(422, "chunk_mismatch")
                await still_missing(
                    api, user.ns, [chunk_id(good), chunk_id(bad), chunk_id(b"something else\n")]
                )

    run(go())


# -- limits -----------------------------------------------------------------------


def test_oversized_bodies(srv: ServerProc, user: User) -> None:
    async def go() -> None:
        ns = user.ns
        async with Api(srv.url, user.token, keep_alive=True) as api:
            # Well-formed frames (the server checks each as it arrives).
            zeros = chunk_id(bytes(2**20))
            frame = b"\x01" + zeros + b"\x00" + (2**20).to_bytes(4, "big") + bytes(2**20)
            big = MAGIC + frame * 65 + b"\x00"  # 65 MiB of well-formed frames
            assert len(big) > 64 * 2**20
            (await chunks_post(api, ns, big)).expect(413, "payload_too_large")

            async def stream(pieces: int, piece: bytes, first: bytes = b"") -> Any:
                yield first
                for _ in range(pieces):
                    yield piece

            # The same without a Content-Length (chunked transfer): cut off while streaming.
            resp = await chunks_post(api, ns, stream(65, frame, MAGIC))  # type: ignore[arg-type]
            resp.expect(413, "payload_too_large")
            await still_missing(api, ns, [chunk_id(bytes(2**20))])
            # More JSON than the limit to /commit, declared and streamed.
            mib = ServerConfig().max_json_body // 2**20 + 1
            ops = [{"path": f"d{i:07d}", "kind": "directory"} for i in range(1000)]
            doc = json.dumps({"ops": ops, "pad": "x" * (mib * 2**20)}).encode()
            resp = await api.post(ns_path(ns, "commit"), data=doc, content_type="application/json")
            resp.expect(413, "payload_too_large")
            resp = await api.post(
                ns_path(ns, "commit"),
                data=stream(mib, b" " * 2**20, b'{"ops": []'),  # type: ignore[arg-type]
                content_type="application/json",
            )
            resp.expect(413, "payload_too_large")
            for name in ("chunks/missing", "chunks/get", "restore"):
                resp = await api.post(ns_path(ns, name), data=doc, content_type="application/json")
                resp.expect(413, "payload_too_large")
            assert await head(api, ns) == 0
            # One frame longer than a chunk may be is refused from its header.
            huge = MAGIC + b"\x01" + bytes(32) + b"\x00" + (2**20 + 1).to_bytes(4, "big")
            resp = await chunks_post(api, ns, huge + bytes(2**20 + 1) + b"\x00")
            resp.expect(413, "payload_too_large")

    run(go())


def test_decompression_bomb(srv: ServerProc, user: User) -> None:
    async def go() -> None:
        ns = user.ns
        plain = bytes(8 * 2**20)
        bomb = zstandard.ZstdCompressor(level=19).compress(plain)
        assert len(bomb) < 2000
        base = b"a base chunk\n"
        dbomb = zstandard.ZstdCompressor(
            level=19,
            dict_data=zstandard.ZstdCompressionDict(base, dict_type=zstandard.DICT_TYPE_RAWCONTENT),
        ).compress(plain)
        async with Api(srv.url, user.token) as api, Remote(srv.url, user.token) as r:
            await r.upload(ns, raw_frames([base]))
            # An uploaded frame must name its chunk: the all-zero id is for inline chunks.
            resp = await chunks_post(api, ns, frames_body([Frame(bytes(32), 1, None, bomb)]))
            resp.expect(400, "bad_framing")
            bodies = [
                frames_body([Frame(chunk_id(plain), 1, None, bomb)]),
                frames_body([Frame(chunk_id(plain), 2, (chunk_id(base),), dbomb)]),
                frames_body([*raw_frames([b"innocent\n"]), Frame(chunk_id(plain), 1, None, bomb)]),
            ]
            for body in bodies:
                resp = await chunks_post(api, ns, body)
                assert resp.status in (400, 413), resp.body
                assert resp.code in ("payload_too_large", "bad_request")
            for item in (
                {"data": b64(bomb), "codec": "zstd"},
                {"data": b64(dbomb), "codec": "zstd-dict", "base": pack_ids([chunk_id(base)])},
            ):
                resp = await api.post(
                    ns_path(ns, "commit"), json_body={"ops": [], "chunks": [item]}
                )
                assert resp.status in (400, 413), resp.body
                assert resp.code in ("payload_too_large", "bad_request")
            await still_missing(api, ns, [chunk_id(plain), chunk_id(b"innocent\n")])

    run(go())


def test_dictionary_size_is_bounded(srv: ServerProc, user: User) -> None:
    """A zstd-dict frame may name up to 255 bases, but the dictionary they make is
    bounded (the protocol's MAX_DICT): a few bytes of request must not make the
    server build hundreds of MiB of dictionary, nor stall everyone else meanwhile."""

    async def go() -> None:
        ns = user.ns
        big = secrets.token_bytes(2**20 - 64)  # one incompressible, full-size chunk
        small = b"tiny chunk\n"
        payload = zstandard.ZstdCompressor().compress(small)  # decodes with any dictionary
        async with Api(srv.url, user.token) as api:
            (await chunks_post(api, ns, frames_body(raw_frames([big])))).expect(200)
            over = (chunk_id(big),) * (inline.MAX_DICT // len(big) + 1)
            frame = Frame(chunk_id(small), codec.Codec.ZSTD_DICT, over, payload)
            resp = await chunks_post(api, ns, frames_body([frame]))
            assert resp.status in (400, 413), (resp.status, resp.body)
            assert resp.code in ("bad_request", "payload_too_large")
            item = {"data": b64(payload), "codec": "zstd-dict", "base": pack_ids(over)}
            resp = await api.post(ns_path(ns, "commit"), json_body={"ops": [], "chunks": [item]})
            assert resp.status in (400, 413), (resp.status, resp.body)
            await still_missing(api, ns, [chunk_id(small)])
            # 8 frames of 255 bases (255 MiB of dictionary each) in 64 KiB of request:
            # whatever the answer, the server keeps serving others meanwhile.
            worst = Frame(chunk_id(small), codec.Codec.ZSTD_DICT, (chunk_id(big),) * 255, payload)
            task = asyncio.create_task(chunks_post(api, ns, frames_body([worst] * 8)))
            await asyncio.sleep(0.3)
            started = time.monotonic()
            (await api.get("/healthz", token=None)).expect(200)
            waited = time.monotonic() - started
            resp = await task
            assert resp.status < 500
            assert waited < 0.5, f"/healthz waited {waited:.1f} s behind one upload"
            assert resp.status in (400, 413), (resp.status, resp.body)

    run(go())


def test_bad_framing(srv: ServerProc, user: User) -> None:
    async def go() -> None:
        ns = user.ns
        good = b"framed\n"
        ok_frame = encode_frame(raw_frames([good])[0])
        cases = {
            "empty body": b"",
            "garbage": b"hello, world",
            "bad magic": b"LSCF2\n" + ok_frame + b"\0",
            "magic only": MAGIC,
            "no end": MAGIC + ok_frame,
            "truncated head": MAGIC + ok_frame[:20],
            "truncated payload": MAGIC + ok_frame[:-2],
            "unknown tag": MAGIC + b"\x02" + ok_frame[1:] + b"\0",
            "unknown codec": MAGIC + ok_frame[:33] + b"\x07" + ok_frame[34:] + b"\0",
            "dict without base": MAGIC + ok_frame[:33] + b"\x02\x00" + ok_frame[34:] + b"\0",
            "dict truncated bases": MAGIC + ok_frame[:33] + b"\x02\x03" + bytes(40),
            "after end": MAGIC + ok_frame + b"\0" + ok_frame + b"\0",
            "trailing byte": MAGIC + ok_frame + b"\0\0",
            "length lies": MAGIC + ok_frame[:34] + (100).to_bytes(4, "big") + good + b"\0",
        }
        async with Api(srv.url, user.token) as api:
            for name, body in cases.items():
                resp = await chunks_post(api, ns, body)
                assert (resp.status, resp.code) == (400, "bad_framing"), (name, resp.body)
            # A frame whose zstd payload is not zstd at all.
            bad = MAGIC + encode_frame(Frame(chunk_id(good), 1, None, b"not zstd")) + b"\0"
            (await chunks_post(api, ns, bad)).expect(400, "bad_request")
            await still_missing(api, ns, [chunk_id(good)])
            # The control: the well-formed body is stored.
            (await chunks_post(api, ns, MAGIC + ok_frame + b"\0")).expect(200)

    run(go())


def test_wrong_content_type(srv: ServerProc, user: User) -> None:
    async def go() -> None:
        ns = user.ns
        commit = json.dumps({"ops": [{"path": "d", "kind": "directory"}]}).encode()
        ids = json.dumps({"ids": pack_ids([chunk_id(b"x")])}).encode()
        async with Api(srv.url, user.token) as api:
            for path, body, ctype in (
                ("commit", commit, "text/plain"),
                ("commit", commit, MEDIA_TYPE),
                ("commit", commit, "application/x-www-form-urlencoded"),
                ("restore", b'{"path": "d", "jid": 1}', "text/plain"),
                ("chunks/missing", ids, "text/plain"),
                ("chunks/get", ids, "multipart/form-data"),
                ("chunks", frames_body(raw_frames([b"x"])), "application/json"),
                ("chunks", frames_body(raw_frames([b"x"])), "application/octet-stream"),
            ):
                resp = await api.post(ns_path(ns, path), data=body, content_type=ctype)
                resp.expect(415, "unsupported_media_type")
            # An upload with no content type at all is refused the same way.
            resp = await api.post(ns_path(ns, "chunks"), data=frames_body(raw_frames([b"x"])))
            resp.expect(415, "unsupported_media_type")
            assert await head(api, ns) == 0
            await still_missing(api, ns, [chunk_id(b"x")])

    run(go())


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
                resp = await api.post(ns_path(ns, "restore"), json_body={"path": bad, "jid": 1})
                assert (resp.status, resp.code) == (400, "bad_path"), (bad, resp.body)
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


def test_batch_too_large(srv: ServerProc, user: User) -> None:
    async def go() -> None:
        ns = user.ns
        async with Api(srv.url, user.token) as api:
            ops = [{"path": f"d{i:04d}", "kind": "directory"} for i in range(1001)]
            resp = await api.post(ns_path(ns, "commit"), json_body={"ops": ops})
            resp.expect(413, "batch_too_large")
            assert await head(api, ns) == 0
            resp = await api.post(ns_path(ns, "commit"), json_body={"ops": ops[:1000]})
            assert len(resp.expect(200).json()["results"]) == 1000
            assert await head(api, ns) == 1000
            many = pack_ids([chunk_id(i.to_bytes(4, "big")) for i in range(65537)])
            for name in ("chunks/missing", "chunks/get"):
                resp = await api.post(ns_path(ns, name), json_body={"ids": many})
                resp.expect(413, "batch_too_large")

    run(go())


def test_malformed_requests(srv: ServerProc, user: User) -> None:
    async def go() -> None:
        ns = user.ns
        cid = pack_ids([chunk_id(b"x")])
        commits: list[bytes | Any] = [
            b"{",
            b"",
            b"null",
            b"[]",
            b"\xff\xfe{}",
            b'{"ops": "x"}',
            b'{"ops": [1]}',
            {},
            {"ops": [{"path": "a"}]},
            {"ops": [{"path": "a", "kind": "blob"}]},
            {"ops": [{"path": 1, "kind": "directory"}]},
            {"ops": [{"path": "a", "kind": "directory", "extra": 1}]},
            {"ops": [], "extra": 1},
            {"ops": [{"path": "a", "kind": "directory", "base_jid": "1"}]},
            {"ops": [{"path": "a", "kind": "directory", "base_jid": -1}]},
            {"ops": [{"path": "a", "kind": "directory", "base_jid": 2**63}]},
            {"ops": [{"path": "a", "kind": "directory", "mtime_ns": 1.5}]},
            {"ops": [{"path": "a", "kind": "directory", "exec": "yes"}]},
            {"ops": [{"path": "a", "kind": "file", "size": -1, "content": {"ids": ""}}]},
            {"ops": [{"path": "a", "kind": "file"}]},  # a file needs content
            {
                "ops": [
                    {"path": "a", "kind": "file", "content": {"ids": "", "base": 1, "edits": []}}
                ]
            },
            {"ops": [{"path": "a", "kind": "file", "content": {"base": 1}}]},
            {"ops": [{"path": "a", "kind": "file", "content": {"ids": "!!"}}]},
            {"ops": [{"path": "a", "kind": "file", "content": {"ids": "AAAA"}}]},
            {"ops": [{"path": "a", "kind": "file", "content": {"ids": "", "x": 1}}]},
            {"ops": [{"path": "a", "kind": "file", "target": "t", "content": {"ids": ""}}]},
            {"ops": [{"path": "a", "kind": "directory", "content": {"ids": ""}}]},
            {"ops": [{"path": "a", "kind": "directory", "size": 5}]},
            {"ops": [{"path": "a", "kind": "directory", "target": "t"}]},
            {"ops": [{"path": "a", "kind": "symlink"}]},
            {"ops": [{"path": "a", "kind": "symlink", "target": "x\u0000y"}]},
            {"ops": [{"path": "a", "kind": "tombstone", "move_from": "b"}]},
            {"ops": [{"path": "a/b", "kind": "directory", "move_from": "a"}]},
            {"ops": [{"path": "", "kind": "directory"}]},
            {"ops": [], "chunks": [{"data": "!!", "codec": "raw"}]},
            {"ops": [], "chunks": [{"data": "AA", "codec": "lz4"}]},
            {"ops": [], "chunks": [{"data": "AA", "codec": "zstd-dict"}]},
            {"ops": [], "chunks": [{"data": "AA", "codec": "raw", "base": cid}]},
            {"ops": [], "chunks": [{"data": "AA", "codec": "zstd-dict", "base": "AAAA"}]},
            {"ops": [], "chunks": [{"data": "AAAA", "codec": "zstd"}]},
        ]
        ids_bodies: list[bytes | Any] = [
            b"{",
            {},
            {"ids": 5},
            {"ids": "!!"},
            {"ids": "AAAA"},
            {"ids": cid, "extra": 1},
        ]
        restores: list[bytes | Any] = [
            {},
            {"path": "a"},
            {"path": "a", "jid": "1"},
            {"path": "a", "jid": 1, "x": 0},
        ]
        async with Api(srv.url, user.token) as api:

            async def send(name: str, body: bytes | Any) -> Resp:
                if isinstance(body, bytes):
                    return await api.post(
                        ns_path(ns, name), data=body, content_type="application/json"
                    )
                return await api.post(ns_path(ns, name), json_body=body)

            for name, bodies in (
                ("commit", commits),
                ("chunks/missing", ids_bodies),
                ("chunks/get", ids_bodies),
                ("restore", restores),
            ):
                for body in bodies:
                    resp = await send(name, body)
                    assert (resp.status, resp.code) == (400, "bad_request"), (name, body, resp.body)
            # bases that are malformed or do not pair up with ids
            for bases in ("AAAA", "!!", pack_ids([bytes(32)] * 2), ""):
                resp = await send("chunks/get", {"ids": cid, "bases": bases})
                resp.expect(400, "bad_request")
            assert await head(api, ns) == 0

    run(go())


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


def test_no_endpoint_answers_5xx_to_junk(srv: ServerProc, user: User) -> None:
    junk: list[tuple[bytes, str | None]] = [
        (b"", None),
        (b"\x00" * 64, MEDIA_TYPE),
        (b"[" * 100_000, "application/json"),
        (b'{"ids": "' + b"A" * 100_000 + b'"}', "application/json"),
        (secrets.token_bytes(4096), "application/json"),
        (secrets.token_bytes(4096), MEDIA_TYPE),
        (MAGIC + b"\x01" + secrets.token_bytes(100), MEDIA_TYPE),
        (b'{"ops": [{"path": "a", "kind": "file", "size": 4611686018427387904}]}', None),
        (b'{"path": "x", "jid": 4611686018427387904}', "application/json"),
    ]
    queries = [
        {},
        {"cursor": "x" * 10_000},
        {"limit": "9" * 30},
        {"path": "\x00"},
        {"path": "a" * 10_000},
        {"before": "0"},
        {"wait": "-5"},
    ]

    async def go() -> None:
        statuses: list[int] = []
        async with Api(srv.url, user.token) as api:
            for method, route, _, _ in ROUTES:
                path = route.replace("{ns:int}", str(user.ns)).replace("{jid:int}", "1")
                for body, ctype in junk:
                    for verb in {method, "POST", "PUT"}:
                        resp = await api.req(verb, path, data=body, content_type=ctype)
                        statuses.append(resp.status)
                        assert resp.status < 500, (verb, path, body[:50], resp.body)
                for params in queries:
                    resp = await api.req(method, path, params=params)  # type: ignore[arg-type]
                    assert resp.status < 500, (path, params, resp.body)
        assert 200 in statuses and 400 in statuses

    run(go())


# -- rate limiting -----------------------------------------------------------------


def test_rate_limited(tmp_path: Path) -> None:
    proc = ServerProc(tmp_path / "s", extra=["--rate", "5"]).start()
    try:
        a = new_user(proc)
        b_token = new_token(proc, a.name, "phone")

        async def go() -> None:
            async with Api(proc.url, a.token) as api:
                got: list[Resp] = []
                for _ in range(40):
                    got.append(await api.get("/v1/me"))
                statuses = [r.status for r in got]
                assert statuses[:20] == [200] * 20, statuses  # the burst is served
                limited = [r for r in got if r.status == 429]
                assert limited, statuses
                for resp in limited:
                    resp.expect(429, "rate_limited")
                    assert int(resp.headers["retry-after"]) >= 1
                # Another token is still served at once; unauthenticated routes too.
                (await api.get("/v1/me", token=b_token)).expect(200)
                (await api.get("/healthz", token=None)).expect(200)
                # After waiting as told, the first token is served again.
                started = time.monotonic()
                await asyncio.sleep(int(limited[-1].headers["retry-after"]))
                (await api.get("/v1/me")).expect(200)
                assert time.monotonic() - started < 5

        run(go())
    finally:
        proc.stop()
