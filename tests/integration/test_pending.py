"""Uploads in progress (streaming sync) through the HTTP API: announced by one
device, heard by the long-polls of the others (never by the announcer's own),
fetched chunk by chunk as they arrive, settled by the commit, and every field
checked."""

from __future__ import annotations

import asyncio
import time

import pytest

from linesync.core.ids import chunk_id, pack_ids, unpack_ids
from linesync.protocol.errors import Code, LinesyncError
from linesync.protocol.framing import MEDIA_TYPE
from linesync.server.pending import Pending
from tests.support.api import (
    Api,
    User,
    decode_frames,
    frames_body,
    new_token,
    ns_path,
    raw_frames,
)
from tests.support.server import ServerProc

run = asyncio.run
PARTS = [f"part {i} of a big file\n".encode() * 50 for i in range(3)]
IDS = [chunk_id(p) for p in PARTS]


def announcement(path: str = "video.bin", ids: list[bytes] = IDS) -> dict[str, object]:
    return {"path": path, "size": sum(len(p) for p in PARTS), "ids": pack_ids(ids)}


async def announce(api: Api, ns: int, **kw: object) -> int:
    resp = await api.post(ns_path(ns, "pending"), json_body=announcement(**kw))  # type: ignore[arg-type]
    return int(resp.expect(200).json()["seq"])


async def poll(api: Api, ns: int, seen: int, wait: int = 0) -> tuple[float, dict[str, object]]:
    """A list with ``pending=seen``: how long it took, and its answer."""
    cursor = (await api.get(ns_path(ns, "head"))).expect(200).json()["cursor"]
    params = {"cursor": cursor, "pending": str(seen), "wait": str(wait)}
    started = time.monotonic()
    resp = await api.get(ns_path(ns, "list"), params=params)
    return time.monotonic() - started, resp.expect(200).json()


def test_an_announcement_wakes_the_other_devices_and_is_settled_by_the_commit(
    srv: ServerProc, user: User
) -> None:
    other = new_token(srv, user.name, "phone")

    async def go() -> None:
        async with Api(srv.url, user.token) as laptop, Api(srv.url, other) as phone:
            waiting = asyncio.create_task(poll(phone, user.ns, 0, wait=20))
            await asyncio.sleep(0.3)
            seq = await announce(laptop, user.ns)
            took, page = await waiting
            assert took < 10, "the announcement did not wake the other device's long-poll"
            assert page["entries"] == []
            assert page.get("pending", []) == [
                {"seq": seq, "path": "video.bin", "size": 3 * len(PARTS[0])}
            ]
            # Heard once: a poll from that seq on waits again.
            took, page = await poll(phone, user.ns, seq, wait=1)
            assert took >= 0.9 and [p["seq"] for p in page.get("pending", [])] == [seq]
            # The announcer's own long-poll does not wake for it, nor list it.
            took, page = await poll(laptop, user.ns, 0, wait=1)
            assert took >= 0.9 and page.get("pending", []) == []
            # Without asking, a list says nothing of it (older clients).
            plain = (await phone.get(ns_path(user.ns, "list"))).expect(200).json()
            assert "pending" not in plain
            # Its blocklist, for the device that streams it.
            got = (await phone.get(ns_path(user.ns, f"pending/{seq}"))).expect(200).json()
            assert unpack_ids(got["ids"]) == IDS and got["path"] == "video.bin"
            # Chunks as they arrive: two of three uploaded.
            (await laptop.post(ns_path(user.ns, "chunks"), data=frames_body(raw_frames(PARTS[:2])),
                               content_type=MEDIA_TYPE)).expect(200)  # fmt: skip
            ask = {"ids": pack_ids(IDS), "available": True}
            frames = decode_frames(
                (await phone.post(ns_path(user.ns, "chunks/get"), json_body=ask)).expect(200).body
            )
            assert [f.chunk_id for f in frames] == IDS[:2]
            # Without "available", a chunk not uploaded yet refuses the request.
            (
                await phone.post(ns_path(user.ns, "chunks/get"), json_body={"ids": pack_ids(IDS)})
            ).expect(422, "chunk_unavailable")
            # The commit settles it.
            (await laptop.post(ns_path(user.ns, "chunks"), data=frames_body(raw_frames(PARTS[2:])),
                               content_type=MEDIA_TYPE)).expect(200)  # fmt: skip
            body = {"ops": [{"path": "video.bin", "kind": "file", "size": 3 * len(PARTS[0]),
                             "content": {"ids": pack_ids(IDS)}}]}  # fmt: skip
            (await laptop.post(ns_path(user.ns, "commit"), json_body=body)).expect(200)
            _, page = await poll(phone, user.ns, 0)
            assert page.get("pending", []) == []
            (await phone.get(ns_path(user.ns, f"pending/{seq}"))).expect(404, "not_found")

    run(go())


def test_a_namespace_keeps_its_four_newest_announcements_one_a_path(
    srv: ServerProc, user: User
) -> None:
    other = new_token(srv, user.name, "phone")

    async def go() -> None:
        async with Api(srv.url, user.token) as laptop, Api(srv.url, other) as phone:
            first = await announce(laptop, user.ns, path="a.bin")
            again = await announce(laptop, user.ns, path="a.bin")  # replaces the first
            assert again > first
            seqs = [again] + [await announce(laptop, user.ns, path=f"{n}.bin") for n in "bcde"]
            _, page = await poll(phone, user.ns, 0)
            assert [p["seq"] for p in page.get("pending", [])] == seqs[1:]  # a.bin made room
            for gone in (first, again):
                (await phone.get(ns_path(user.ns, f"pending/{gone}"))).expect(404, "not_found")

    run(go())


def test_a_read_only_device_hears_announcements_but_cannot_make_one(
    srv: ServerProc, user: User
) -> None:
    reader = new_token(srv, user.name, "tablet", read_only=True)

    async def go() -> None:
        async with Api(srv.url, user.token) as laptop, Api(srv.url, reader) as tablet:
            (await tablet.post(ns_path(user.ns, "pending"), json_body=announcement())).expect(
                403, "forbidden"
            )
            seq = await announce(laptop, user.ns)
            _, page = await poll(tablet, user.ns, 0)
            assert [p["seq"] for p in page.get("pending", [])] == [seq]
            (await tablet.get(ns_path(user.ns, f"pending/{seq}"))).expect(200)

    run(go())


def test_a_bad_announcement_gets_a_clear_error(srv: ServerProc, user: User) -> None:
    cases: list[tuple[object, int, str]] = [
        ({**announcement(), "path": "../up.bin"}, 400, "bad_path"),
        ({**announcement(), "path": "/abs.bin"}, 400, "bad_path"),
        ({**announcement(), "path": "Cafe\u0301.bin"}, 400, "bad_path"),  # not NFC
        ({**announcement(), "path": ""}, 400, "bad_path"),
        ({**announcement(), "size": 2**40}, 413, "file_too_large"),
        ({**announcement(), "size": -1}, 400, "bad_request"),
        ({**announcement(), "ids": ""}, 400, "bad_request"),
        ({**announcement(), "ids": "not base64!"}, 400, "bad_request"),
        ({**announcement(), "ids": pack_ids(IDS)[:-3]}, 400, "bad_request"),  # torn id
        ({**announcement(), "extra": 1}, 400, "bad_request"),
        ({"path": "x.bin", "size": 1}, 400, "bad_request"),
        ([1, 2], 400, "bad_request"),
    ]

    async def go() -> None:
        async with Api(srv.url, user.token) as api:
            for body, status, code in cases:
                resp = await api.post(ns_path(user.ns, "pending"), json_body=body)
                assert (resp.status, resp.code) == (status, code), (body, resp.body[:200])
            for bad in ("0x1", "-1", "99999999999999999999", "a"):
                resp = await api.get(ns_path(user.ns, "list"), params={"pending": bad})
                assert (resp.status, resp.code) == (400, "bad_request"), bad
            _, page = await poll(api, user.ns, 0)
            assert page.get("pending", []) == []  # nothing was announced

    run(go())


def test_announcements_lapse_and_are_counted_until_they_do() -> None:
    """The registry itself, on a clock of its own: an announcement lapses after
    ``ttl``, a commit of its path settles it, and what it held is given back
    either way (a full registry takes new ones again)."""
    now = [0.0]
    reg = Pending(per_ns=4, max_bytes=3 * (32 * 10 + 300), ttl=60.0, clock=lambda: now[0])
    ids = b"\x01" * 32 * 10
    a = reg.announce(1, "a.bin", 10, ids, "laptop")
    reg.announce(1, "b.bin", 10, ids, "laptop")
    reg.announce(2, "c.bin", 10, ids, "laptop")
    with pytest.raises(LinesyncError) as full:
        reg.announce(3, "d.bin", 10, ids, "laptop")
    assert full.value.code is Code.RATE_LIMITED
    reg.settled(1, ["b.bin", "elsewhere.txt"])
    assert [x.path for x in reg.current(1)] == ["a.bin"]
    reg.announce(3, "d.bin", 10, ids, "laptop")  # b.bin's room
    now[0] = 59.0
    assert reg.get(1, a.seq) == a
    now[0] = 60.0
    assert reg.get(1, a.seq) is None and reg.current(1) == []
    for ns in (2, 3):  # lapsed too: the whole room is back
        assert reg.current(ns) == []
    assert reg.held_bytes == 0
    reg.check_room(4 * (32 * 10))
    with pytest.raises(LinesyncError):
        reg.check_room(4 * 3 * (32 * 10 + 300))
