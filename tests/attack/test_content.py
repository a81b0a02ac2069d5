"""Content an attacker uploads: hash mismatches, decompression bombs (one frame,
many frames in one payload, many frames in one request: finding 1), oversized and
malformed bodies, bad codecs and framing, junk on every route. A refused body
stores nothing, and no input gets a 5xx."""

from __future__ import annotations

import asyncio
import functools
import json
import secrets
import time
from typing import Any

import blake3
import pytest
import zstandard

from linesync.client.remote import Remote as ClientRemote
from linesync.client.transfer import prepare_file
from linesync.client.transfer import split as client_split
from linesync.core.ids import chunk_id, pack_ids
from linesync.protocol import codec, inline
from linesync.protocol.errors import Code, LinesyncError
from linesync.protocol.framing import MAGIC, MEDIA_TYPE, Frame, encode_frame
from linesync.server.config import ServerConfig
from linesync.server.routes import ROUTES
from tests.attack.conftest import Launch
from tests.attack.helpers import chunks_post, head, route_path, run, still_missing
from tests.support.api import (
    Api,
    Remote,
    Resp,
    User,
    b64,
    frames_body,
    new_user,
    ns_path,
    raw_frames,
)
from tests.support.resources import MB, Meter, pid_of
from tests.support.server import ServerProc

MiB = 2**20

# -- bombs ---------------------------------------------------------------------------------

# A zstd frame of 49 bytes that decodes to 1 MiB of zeros.
BOMB = zstandard.ZstdCompressor(level=19).compress(bytes(MiB))
BOMB_ID = chunk_id(bytes(MiB))
# The same without the content size in its header: only decoding tells its size.
UNSIZED_BOMB = zstandard.ZstdCompressor(level=19, write_content_size=False).compress(bytes(MiB))


@functools.cache
def distinct_bombs(n: int) -> tuple[list[bytes], list[bytes]]:
    """``n`` different chunks of 1 MiB, as (ids, zstd payloads of about 70 bytes):
    chunk i is 1 MiB - 8 zero bytes and then i. Each payload is two zstd frames
    (the zeros, then i), which the server decodes across frames; the ids hash the
    shared zeros once."""
    zeros = bytes(MiB - 8)
    head_ = zstandard.ZstdCompressor(level=19).compress(zeros)
    prefix = blake3.blake3(zeros)
    ids, payloads = [], []
    tail = zstandard.ZstdCompressor(level=1)
    for i in range(n):
        suffix = i.to_bytes(8, "big")
        h = prefix.copy()
        h.update(suffix)
        ids.append(h.digest())
        payloads.append(head_ + tail.compress(suffix))
    return ids, payloads


def test_the_bombs_are_what_they_claim() -> None:
    """The test inputs themselves: 49-byte frames of 1 MiB, ids that match."""
    assert len(BOMB) <= 49
    assert codec.decode(codec.Codec.ZSTD, BOMB, None, MiB) == bytes(MiB)
    assert codec.decode(codec.Codec.ZSTD, UNSIZED_BOMB, None, MiB) == bytes(MiB)
    params = zstandard.get_frame_parameters(UNSIZED_BOMB)
    assert params.content_size == zstandard.CONTENTSIZE_UNKNOWN
    ids, payloads = distinct_bombs(2000)
    assert len(set(ids)) == 2000 and max(map(len, payloads)) < 80
    for i in (0, 1, 1999):
        data = codec.decode(codec.Codec.ZSTD, payloads[i], None, MiB)
        assert len(data) == MiB and chunk_id(data) == ids[i]


def bomb_upload(ids: list[bytes], payloads: list[bytes]) -> bytes:
    return frames_body(
        [Frame(cid, codec.Codec.ZSTD, None, p) for cid, p in zip(ids, payloads, strict=True)]
    )


@pytest.mark.parametrize("kind", ["distinct", "identical", "unsized"])
def test_finding1_an_upload_of_2000_bombs_is_refused_in_bounded_memory(
    launch: Launch, kind: str
) -> None:
    """Finding 1: 2,000 zstd frames of ~50-70 bytes, each decoding to 1 MiB (2 GiB
    from a 170-210 KB body), took the server to 2.1 GB. Once the decoded bytes of the
    request pass ``max_request_decoded`` (128 MiB) it is refused 413
    payload_too_large, nothing is stored, and the server's peak RSS stays under
    300 MB: for different chunks, for one chunk repeated, and for frames whose
    header does not declare their size."""
    srv = launch()
    user = new_user(srv)
    if kind == "distinct":
        ids, payloads = distinct_bombs(2000)
    elif kind == "identical":
        ids, payloads = [BOMB_ID] * 2000, [BOMB] * 2000
    else:
        ids, payloads = [BOMB_ID] * 2000, [UNSIZED_BOMB] * 2000
    body = bomb_upload(ids, payloads)
    assert len(body) < 2000 * 120

    async def go() -> None:
        async with Api(srv.url, user.token, keep_alive=True) as api:
            with Meter(pid_of(srv)) as m:
                resp = await chunks_post(api, user.ns, body)
            print(f"2,000 {kind} bombs ({len(body)} B): {resp.status}, {m.usage}")
            resp.expect(413, "payload_too_large")
            assert m.usage.peak_rss < 300 * MB, m.usage
            await still_missing(api, user.ns, sorted(set(ids)))
            (await api.get("/healthz", token=None)).expect(200)

    run(go())


def test_an_upload_within_the_decoded_budget_is_stored(launch: Launch) -> None:
    """The control of finding 1: one upload of 2,000 ordinary text chunks and 100
    different 1 MiB chunks (about 105 MiB decoded, under ``max_request_decoded``)
    is stored whole."""
    srv = launch()
    user = new_user(srv)
    big_ids, big_payloads = distinct_bombs(100)
    texts = [f"chunk {i:05d} ".encode() * 200 for i in range(2000)]
    frames = raw_frames(texts) + [
        Frame(cid, codec.Codec.ZSTD, None, p) for cid, p in zip(big_ids, big_payloads, strict=True)
    ]

    async def go() -> None:
        async with Api(srv.url, user.token, keep_alive=True) as api:
            with Meter(pid_of(srv)) as m:
                resp = await chunks_post(api, user.ns, frames_body(frames))
            print(f"2,000 text chunks and 100 of 1 MiB: {resp.status}, {m.usage}")
            got = resp.expect(200).json()
            assert got == {"stored": 2100, "bytes": sum(map(len, texts)) + 100 * MiB}
            wanted = [f.chunk_id for f in frames]
            resp = await api.post(
                ns_path(user.ns, "chunks/missing"), json_body={"ids": pack_ids(wanted)}
            )
            assert resp.expect(200).json() == {"missing": ""}

    run(go())


def test_finding1_a_commit_with_1000_inline_bombs_is_refused_in_bounded_memory(
    launch: Launch,
) -> None:
    """Finding 1: a commit whose ``chunks`` holds 1,000 inline copies of a 49-byte
    bomb (a ~97 KB body) is refused 413 payload_too_large (past
    ``max_inline_decoded``, 16 MiB), and more than ``max_inline_chunks`` (1,024)
    inline chunks 413 batch_too_large; never a 500, nothing committed or stored,
    peak RSS under 300 MB. Ten copies (10 MiB) are still fine."""
    srv = launch()
    user = new_user(srv)
    item = {"data": b64(BOMB), "codec": "zstd"}
    op = {
        "path": "big.bin",
        "kind": "file",
        "size": 1000 * MiB,
        "content": {"ids": pack_ids([BOMB_ID] * 1000)},
    }
    tiny = [{"data": b64(f"t{i}".encode()), "codec": "raw"} for i in range(1025)]

    async def go() -> None:
        async with Api(srv.url, user.token, keep_alive=True) as api:
            for bomb in (item, {"data": b64(UNSIZED_BOMB), "codec": "zstd"}):
                doc = {"ops": [{"path": "d", "kind": "directory"}], "chunks": [bomb] * 1000}
                body = json.dumps(doc).encode()
                assert len(body) < 100_000
                with Meter(pid_of(srv)) as m:
                    resp = await api.post(
                        ns_path(user.ns, "commit"), data=body, content_type="application/json"
                    )
                print(f"1,000 inline bombs ({len(body)} B): {resp.status}, {m.usage}")
                resp.expect(413, "payload_too_large")
                assert m.usage.peak_rss < 300 * MB, m.usage
            resp = await api.post(ns_path(user.ns, "commit"), json_body={"ops": [], "chunks": tiny})
            resp.expect(413, "batch_too_large")
            assert await head(api, user.ns) == 0
            await still_missing(
                api, user.ns, [BOMB_ID, *(chunk_id(f"t{i}".encode()) for i in range(1025))]
            )
            # Within both limits, inline chunks still work.
            ten = {**op, "size": 10 * MiB, "content": {"ids": pack_ids([BOMB_ID] * 10)}}
            resp = await api.post(
                ns_path(user.ns, "commit"), json_body={"ops": [ten], "chunks": [item] * 10}
            )
            assert resp.expect(200).json()["results"][0]["status"] == "ok", resp.body
            resp = await api.post(
                ns_path(user.ns, "commit"), json_body={"ops": [], "chunks": tiny[:1024]}
            )
            resp.expect(200)

    run(go())


# -- limits -----------------------------------------------------------------------


def test_oversized_bodies(srv: ServerProc, user: User) -> None:
    async def go() -> None:
        ns = user.ns
        async with Api(srv.url, user.token, keep_alive=True) as api:
            # 65 MiB of well-formed, valid frames: only their total is wrong.
            frame = encode_frame(raw_frames([bytes(MiB)])[0])
            big = MAGIC + frame * 65 + b"\x00"
            assert len(big) > 64 * 2**20
            (await chunks_post(api, ns, big)).expect(413, "payload_too_large")

            async def stream(pieces: int, piece: bytes, first: bytes = b"") -> Any:
                yield first
                for _ in range(pieces):
                    yield piece

            # The same without a Content-Length (chunked transfer): cut off while streaming.
            resp = await chunks_post(api, ns, stream(65, frame, MAGIC))
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
                data=stream(mib, b" " * 2**20, b'{"ops": []'),
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
        # Many zstd frames in one payload, each small enough, together past 1 MiB.
        half = zstandard.ZstdCompressor(level=19).compress(bytes(MiB // 2))
        frames3 = half * 3
        assert len(codec.decode(codec.Codec.ZSTD, frames3, None, 2 * MiB)) == 3 * MiB // 2
        async with Api(srv.url, user.token) as api, Remote(srv.url, user.token) as r:
            await r.upload(ns, raw_frames([base]))
            # An uploaded frame must name its chunk: the all-zero id is for inline chunks.
            resp = await chunks_post(api, ns, frames_body([Frame(bytes(32), 1, None, bomb)]))
            resp.expect(400, "bad_framing")
            bodies = [
                frames_body([Frame(chunk_id(plain), 1, None, bomb)]),
                frames_body([Frame(chunk_id(plain), 2, (chunk_id(base),), dbomb)]),
                frames_body([*raw_frames([b"innocent\n"]), Frame(chunk_id(plain), 1, None, bomb)]),
                frames_body([Frame(chunk_id(bytes(3 * MiB // 2)), 1, None, frames3)]),
            ]
            for body in bodies:
                resp = await chunks_post(api, ns, body)
                assert resp.status in (400, 413), resp.body
                assert resp.code in ("payload_too_large", "bad_request")
            for item in (
                {"data": b64(bomb), "codec": "zstd"},
                {"data": b64(dbomb), "codec": "zstd-dict", "base": pack_ids([chunk_id(base)])},
                {"data": b64(frames3), "codec": "zstd"},
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
                path = route_path(route, user.ns)
                for body, ctype in junk:
                    for verb in {method, "POST", "PUT"}:
                        resp = await api.req(verb, path, data=body, content_type=ctype)
                        statuses.append(resp.status)
                        assert resp.status < 500, (verb, path, body[:50], resp.body)
                for params in queries:
                    resp = await api.req(method, path, params=params)
                    assert resp.status < 500, (path, params, resp.body)
        assert 200 in statuses and 400 in statuses

    run(go())


# -- rate limiting -----------------------------------------------------------------


def test_a_file_over_the_size_limit_is_refused(launch: Launch) -> None:
    srv = launch(["--max-file-size", "1000"])

    async def go() -> None:
        async with ClientRemote(srv.url, srv.token) as r:
            small = b"x" * 1000
            ids, chunks = client_split(small)
            prep = prepare_file("ok.txt", ids, chunks, size=len(small), mtime_ns=1)
            (res,) = await r.commit(1, [prep.op], prep.inline)
            assert res.status == "ok"
            big = b"y" * 1001
            ids, chunks = client_split(big)
            prep = prepare_file("big.txt", ids, chunks, size=len(big), mtime_ns=1)
            with pytest.raises(LinesyncError) as err:
                await r.commit(1, [prep.op], prep.inline)
            assert err.value.code is Code.FILE_TOO_LARGE
            assert (await r.head(1)).jid == 1
            assert (await r.history(1, "big.txt")).entries == []

    asyncio.run(go())
