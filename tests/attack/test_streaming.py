"""Streaming sync's announcements, tried by an attacker with a valid token: held
in server memory (so bounded, measured), and a way to name chunk ids (so a way
to probe for another namespace's content, which must find nothing)."""

from __future__ import annotations

import secrets

from linesync.core.ids import chunk_id, pack_ids
from tests.attack.conftest import Launch
from tests.attack.helpers import chunks_post, run
from tests.support.api import Api, User, decode_frames, frames_body, new_user, ns_path, raw_frames
from tests.support.resources import MB, Meter, pid_of, rss
from tests.support.server import ServerProc

MiB = 2**20


def test_announcing_huge_blocklists_holds_a_bounded_amount(launch: Launch) -> None:
    """Announcements of 2^20 ids each (the most a file may have: 32 MiB held,
    a 45 MB request), over and over, from three users: the server holds at
    most ``max_pending_bytes`` (64 MiB: one of them) and refuses more with 429
    and Retry-After, before reading the body. Its RSS, after 12 such requests,
    is within 64 MiB plus 100 MB of where it began, its peak under 500 MB, and
    the refused requests cost it little CPU."""
    srv = launch()
    users = [new_user(srv) for _ in range(3)]
    n = 2**20
    statuses: list[tuple[int, str | None]] = []

    async def go() -> None:
        base = rss(pid_of(srv))
        with Meter(pid_of(srv)) as m:
            for k in range(12):
                user = users[k % 3]
                ids = pack_ids(secrets.token_bytes(32) for _ in range(n))
                body = {"path": f"big{k}.bin", "size": 16 * n, "ids": ids}
                async with Api(srv.url, user.token, keep_alive=True) as api:
                    resp = await api.post(ns_path(user.ns, "pending"), json_body=body)
                    statuses.append((resp.status, resp.code))
                    if resp.status == 429:
                        assert int(resp.headers["retry-after"]) > 0
                del ids, body
        grown = rss(pid_of(srv)) - base
        print(f"12 announcements of 2^20 ids: {statuses}, {m.usage}, RSS +{grown / MB:.0f} MB")
        assert statuses == [(200, None)] + [(429, "rate_limited")] * 11  # 64 MiB held: full
        assert m.usage.cpu < 5.0, m.usage  # one read and decoded (about 1 s), 11 not
        assert m.usage.peak_rss < 500 * MB, m.usage
        assert grown < 64 * MiB + 100 * MB, grown

    run(go())


def test_announced_ids_reach_no_other_namespace(srv: ServerProc, user: User) -> None:
    """A mallory who knows the ids of a victim's chunks announces them in her own
    namespace and asks for them "as available": nothing comes. Her token cannot
    see the victim's announcements either: 404 as for a namespace that does not
    exist, and her own list shows none of them."""
    mallory = new_user(srv)
    secret = b"the victim's secret line " + secrets.token_bytes(8).hex().encode() + b"\n"
    cid = chunk_id(secret)

    async def go() -> None:
        async with Api(srv.url, user.token) as victim, Api(srv.url, mallory.token) as api:
            (await chunks_post(victim, user.ns, frames_body(raw_frames([secret])))).expect(200)
            body = {"path": "bait.bin", "size": len(secret), "ids": pack_ids([cid])}
            theirs = (await victim.post(ns_path(user.ns, "pending"), json_body=body)).expect(200)
            seq = theirs.json()["seq"]
            mine = (await api.post(ns_path(mallory.ns, "pending"), json_body=body)).expect(200)
            ask = {"ids": pack_ids([cid]), "available": True}
            got = (await api.post(ns_path(mallory.ns, "chunks/get"), json_body=ask)).expect(200)
            assert decode_frames(got.body) == []
            assert secret not in got.body
            peek = await api.get(ns_path(user.ns, f"pending/{seq}"))
            nowhere = await api.get(ns_path(10**9, f"pending/{seq}"))
            peek.expect(404, "not_found")
            assert peek.body == nowhere.body
            (await api.get(ns_path(user.ns, "list"), params={"pending": "0"})).expect(
                404, "not_found"
            )
            own = await api.get(ns_path(mallory.ns, "list"), params={"pending": "0"})
            listed = own.expect(200).json().get("pending", [])
            assert listed == []  # her own announcement is hers: not shown to her device
            assert mine.json()["seq"] != seq

    run(go())
