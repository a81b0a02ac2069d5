"""Tokens against every route: none, malformed, forged, expired, revoked, read-only,
another user's, a metrics token; and the guessing of tokens (failed sign-ins are
rate-limited per client address, and a malformed one costs no database lookup).

Every refusal is checked for its status, its stable error code, and for having
stored nothing.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sqlite3
import string
import time

import aiohttp

from linesync.core.ids import chunk_id, pack_ids
from linesync.protocol.framing import MEDIA_TYPE
from linesync.server.routes import ROUTES
from tests.attack.conftest import Launch
from tests.attack.helpers import (
    auth_routes,
    head,
    route_path,
    run,
    still_missing,
)
from tests.support.api import (
    WRITE_ENDPOINTS,
    Api,
    Remote,
    Resp,
    User,
    admin,
    endpoint_name,
    endpoint_requests,
    frames_body,
    new_token,
    new_user,
    ns_id,
    ns_path,
    put_file,
    raw_frames,
    unique,
)
from tests.support.deploy import embedded_only
from tests.support.server import ServerProc


def well_formed_unknown() -> str:
    """A token of the right form (``lst_`` and 32 base64url characters) that no one holds."""
    alphabet = string.ascii_letters + string.digits + "-_"
    return "lst_" + "".join(secrets.choice(alphabet) for _ in range(32))


def test_every_authenticated_route_is_listed() -> None:
    served = {(m, route_path(p, "NS", "JID")) for m, p, _, _ in ROUTES}
    # No token: /healthz and the OpenAPI document. A metrics token only: /metrics
    # (test_metrics_needs_a_metrics_token_that_opens_nothing_else).
    public = {("GET", "/healthz"), ("GET", "/metrics"), ("GET", "/v1/openapi.json")}
    tested = {(m, p.replace("/v1/ns/1/", "/v1/ns/NS/")) for m, p, _ in auth_routes(1)}
    tested = {(m, p.replace("entries/1", "entries/JID")) for m, p in tested}
    tested = {(m, p.replace("pending/1", "pending/JID")) for m, p in tested}
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
        "Bearer " + well_formed_unknown(),  # forged
        "Bearer lst_" + secrets.token_urlsafe(32),  # forged, 43 characters
        "Bearer " + user.token[:-1] + ("A" if user.token[-1] != "A" else "B"),  # one char off
        "Bearer " + user.token.upper(),
        "Bearer " + user.token + "x",
        "Bearer " + user.token[:-1],
        "Bearer " + user.token.replace("lst_", "lsx_"),
        "Bearer lst_" + "+" * 32,  # not base64url
        "Bearer lst_" + "A" * 4096,  # long
        "Bearer " + user.token + " " + user.token,
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


# -- roles ------------------------------------------------------------------------------


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
        seq = None  # of the announcement made (by a writer)
        for method, path, kw in endpoint_requests(
            ns, chunk_id(data), frames_body(raw_frames([fresh]))
        ):
            name = endpoint_name(path)
            if name == "pending/seq":
                path = ns_path(ns, f"pending/{seq or 1}")
            resp = await api.req(method, path, **kw)
            if name == "pending" and resp.status == 200:
                seq = resp.json()["seq"]
            if name in WRITE_ENDPOINTS and not writable:
                resp.expect(403, "forbidden")
            elif name == "pending/seq" and not writable:
                resp.expect(404, "not_found")  # nothing announced: it could not
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


# -- the metrics token (finding 7) -------------------------------------------------------


def test_metrics_needs_a_metrics_token_that_opens_nothing_else(srv: ServerProc, user: User) -> None:
    """Finding 7: /metrics answers only a token with the metrics role (none: 401;
    read-write or read-only: 403); that token gets 403 on every /v1 route and
    changes nothing."""
    ro = new_token(srv, user.name, "tablet", read_only=True)
    prom = admin(srv, "token", "create", user.name, "--device", "prom", "--metrics")
    prom = prom.splitlines()[-1]

    async def go() -> None:
        async with Api(srv.url) as api:
            resp = (await api.get("/metrics", token=None)).expect(401, "unauthenticated")
            assert resp.headers["www-authenticate"].startswith("Bearer")
            (await api.get("/metrics", token=well_formed_unknown())).expect(401, "unauthenticated")
            for token in (user.token, ro, srv.token):
                (await api.get("/metrics", token=token)).expect(403, "forbidden")
            resp = (await api.get("/metrics", token=prom)).expect(200)
            assert resp.headers["content-type"].startswith("text/plain")
            assert b"linesync_requests_total" in resp.body
            before = await head(api, user.ns, user.token)
            for method, path, kw in auth_routes(user.ns):
                resp = await api.req(method, path, token=prom, **kw)
                assert (resp.status, resp.code) == (403, "forbidden"), (path, resp.body)
            assert await head(api, user.ns, user.token) == before
            await still_missing(api, user.ns, [chunk_id(b"x")], token=user.token)
            # Revoked, it is refused like any other token.
            await asyncio.to_thread(admin, srv, "token", "revoke", user.name, "--device", "prom")
            (await api.get("/metrics", token=prom)).expect(401, "unauthenticated")

    run(go())


# -- guessing tokens (finding 7) -----------------------------------------------------------


def test_failed_sign_ins_are_rate_limited_per_address(launch: Launch) -> None:
    """Finding 7: after ``auth_fail_burst`` (50, the default here) failed sign-ins
    from one address, every request with credentials from it gets 429
    ``rate_limited`` with Retry-After, the right token too, until the bucket
    refills; other addresses and requests without credentials are not affected.

    The refill rate is lowered to 0.5 per second (``auth_fail_rate``) so that the
    checks right after the first 429 have two seconds of margin on a busy machine
    instead of one; the burst is the default."""
    srv = launch(["--limit", "auth_fail_rate=0.5"])
    user = new_user(srv)

    async def go() -> None:
        async with Api(srv.url) as api:
            started = time.monotonic()
            refused: list[Resp] = []
            for _ in range(200):
                resp = await api.get("/v1/me", token=well_formed_unknown())
                if resp.status == 429:
                    break
                refused.append(resp.expect(401, "unauthenticated"))
            else:
                raise AssertionError("200 failed sign-ins in a row were never rate-limited")
            elapsed = time.monotonic() - started
            resp.expect(429, "rate_limited")
            retry = int(resp.headers["retry-after"])
            assert retry >= 1 and resp.json()["error"]["detail"]["retry_after"] == retry
            # The burst, plus what refilled meanwhile (0.5 a second), plus one.
            assert 50 <= len(refused) <= 50 + int(elapsed * 0.5) + 1, (len(refused), elapsed)
            # The right token from this address waits too, on every route ...
            (await api.get("/v1/me", token=user.token)).expect(429, "rate_limited")
            resp = await api.get(ns_path(user.ns, "head"), token=user.token)
            resp.expect(429, "rate_limited")
            assert int(resp.headers["retry-after"]) >= 1
            # ... while a route without credentials is served,
            (await api.get("/healthz", token=None)).expect(200)
        # ... and so is another address (127.0.0.2 is loopback too).
        connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0), force_close=True)
        async with aiohttp.ClientSession(connector=connector) as other:
            headers = {"Authorization": f"Bearer {user.token}"}
            async with other.get(srv.url + "/v1/me", headers=headers) as r:
                assert r.status == 200, await r.text()
        # Once the bucket refilled as told, the right token is served again.
        await asyncio.sleep(retry)
        async with Api(srv.url, user.token) as api:
            (await api.get("/v1/me")).expect(200)

    run(go())


@embedded_only  # blocks the SQLite thread; PostgreSQL has a pool, not one thread to block
def test_a_malformed_token_costs_no_database_lookup(launch: Launch) -> None:
    """Finding 7: a token that is not ``lst_`` and 32 base64url characters is refused
    401 without a lookup. Shown by blocking the server's database thread: another
    process holds the write lock, and a commit makes the server's single SQLite
    thread wait for it (busy_timeout); a well-formed unknown token then waits
    behind it (the control: it proves the thread is blocked), while each malformed
    token must still be answered at once."""
    srv = launch()
    user = new_user(srv)
    db = sqlite3.connect(srv.data / "meta.sqlite3", timeout=5, isolation_level=None)

    async def answer(api: Api, token: str, within: float) -> Resp | None:
        try:
            return await asyncio.wait_for(api.get("/v1/me", token=token), within)
        except TimeoutError:
            return None

    async def go() -> None:
        pending: list[asyncio.Task[Resp]] = []
        async with Api(srv.url, user.token) as api:
            db.execute("BEGIN IMMEDIATE")
            try:
                commit = asyncio.create_task(
                    api.post(
                        ns_path(user.ns, "commit"),
                        json_body={"ops": [{"path": "d", "kind": "directory"}]},
                    )
                )
                pending.append(commit)
                await asyncio.sleep(0.5)
                assert not commit.done(), "the commit did not wait for the lock"
                control = asyncio.create_task(api.get("/v1/me", token=well_formed_unknown()))
                pending.append(control)
                await asyncio.sleep(1.0)
                assert not control.done(), "the database thread is not blocked: no proof"
                malformed = [
                    "lst_short",
                    "lst_" + "A" * 31,
                    "lst_" + "A" * 33,
                    "lst_" + "+" * 32,
                    "lst_" + "A" * 31 + "=",
                    "LST_" + "A" * 32,
                    "tok_" + "A" * 32,
                    "A" * 36,
                    "lst_" + "A" * 4000,
                ]
                for token in malformed:
                    resp = await answer(api, token, 1.0)
                    assert resp is not None, f"{token[:40]!r} waited for the database"
                    resp.expect(401, "unauthenticated")
            finally:
                db.execute("ROLLBACK")
                done = await asyncio.wait_for(asyncio.gather(*pending, return_exceptions=True), 30)
            control_resp, commit_resp = done[1], done[0]
            assert isinstance(control_resp, Resp) and isinstance(commit_resp, Resp)
            control_resp.expect(401, "unauthenticated")
            assert commit_resp.expect(200).json()["results"][0]["status"] == "ok"

    try:
        run(go())
    finally:
        db.close()


# -- the per-token request rate ------------------------------------------------------------


def test_rate_limited(launch: Launch) -> None:
    proc = launch(["--rate", "5"])
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
