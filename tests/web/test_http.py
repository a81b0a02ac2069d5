"""The web interface over a real socket: every authorization rule the API has,
through the browser's door too (cookies, CSRF, origins), and the pages'
round trips (upload, download, zip, history, restore, conflicts, tokens,
sharing). One server per module; each test makes its own users."""

from __future__ import annotations

import asyncio
import io
import json
import re
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from linesync.protocol.schemas import Entry, Kind
from tests.support.api import Remote, User, admin, new_token, new_user, put_file, unique
from tests.support.server import ServerProc
from tests.web.webclient import Resp, Web

TOKEN = re.compile(r"lst_[A-Za-z0-9_-]{32}")


def signed_in(
    srv: ServerProc, user: User | None = None, read_only: bool = False
) -> tuple[Web, User]:
    user = user or new_user(srv, read_only=read_only)
    web = Web(srv.url)
    r = web.signin(user.name, user.token)
    assert r.status == 303 and r.location == "/web/", (r.status, r.text[:300])
    return web, user


def upload(web: Web, ns: int, name: str, data: bytes, folder: str = "") -> Resp:
    csrf = web.get(f"/web/ns/{ns}/browse").csrf()
    return web.upload(
        f"/web/ns/{ns}/upload", {"csrf": csrf, "folder": folder}, [("files", name, data)]
    )


def session_token(web: Web) -> str:
    return web.cookies["linesync_session"]


def web_devices(srv: ServerProc, user: str) -> list[dict[str, object]]:
    tokens = json.loads(admin(srv, "token", "list", user))
    return [t for t in tokens if str(t["device"]).startswith("web-")]


# -- signing in ------------------------------------------------------------------


def test_without_a_session_pages_send_to_sign_in_and_actions_answer_401(srv: ServerProc) -> None:
    user = new_user(srv)
    web = Web(srv.url)
    for path in [
        "/web/",
        f"/web/ns/{user.ns}/browse",
        "/web/tokens",
        f"/web/ns/{user.ns}/history?path=a",
    ]:  # noqa: E501
        r = web.get(path)
        assert r.status == 303 and r.location.startswith("/web/signin?next="), (path, r.status)
    for path in [
        "/web/signout",
        "/web/tokens",
        f"/web/ns/{user.ns}/upload",
        f"/web/ns/{user.ns}/restore",
        f"/web/ns/{user.ns}/share",
    ]:
        assert web.post(path, {"csrf": "x"}).status == 401, path
    # A bearer token is no session: the web takes cookies only.
    r = web.get("/web/", headers={"Authorization": f"Bearer {user.token}"})
    assert r.status == 303
    assert web.get("/").location == "/web/"


def test_sign_in_sets_a_strict_http_only_cookie_for_a_new_web_device(srv: ServerProc) -> None:
    user = new_user(srv)
    web = Web(srv.url)
    page = web.get("/web/signin")
    assert page.status == 200
    r = web.post("/web/signin", {"csrf": page.csrf(), "user": user.name, "token": user.token})
    assert r.status == 303
    (cookie,) = [c for c in r.cookies() if c.startswith("linesync_session=")]
    flags = [f.strip() for f in cookie.split(";")]
    assert {"HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=2592000"} <= set(flags)
    assert "Secure" not in flags  # plain http here; over https it is set
    value = cookie.split(";")[0].split("=", 1)[1]
    assert TOKEN.fullmatch(value) and value != user.token
    (dev,) = web_devices(srv, user.name)
    assert re.fullmatch(r"web-[0-9a-f]{8}", str(dev["device"])) and dev["role"] == "rw"
    assert isinstance(dev["expires"], float)
    assert web.get("/web/").status == 200


def test_sign_in_goes_back_to_the_page_asked_for_and_never_off_site(srv: ServerProc) -> None:
    user = new_user(srv)
    web = Web(srv.url)
    target = f"/web/ns/{user.ns}/browse"
    assert web.get(target).location == "/web/signin?next=" + target.replace("/", "%2F")
    page = web.get("/web/signin?next=" + target)
    r = web.post(
        "/web/signin", {"csrf": page.csrf(), "user": user.name, "token": user.token, "next": target}
    )
    assert r.location == target
    web2 = Web(srv.url)
    page = web2.get("/web/signin")
    r = web2.post(
        "/web/signin",
        {"csrf": page.csrf(), "user": user.name, "token": user.token, "next": "//evil.example/x"},
    )
    assert r.location == "/web/"


def test_bad_credentials_are_refused(srv: ServerProc) -> None:
    user = new_user(srv)
    other = new_user(srv)
    web = Web(srv.url)
    for name, token in [
        (user.name, "lst_" + "A" * 32),  # no such token
        (user.name, "wrong"),
        (user.name, "lst_\u00e9" + "A" * 31),  # not ASCII
        (other.name, user.token),  # a real token, of another user
        ("", user.token),
    ]:
        page = web.get("/web/signin")
        r = web.post("/web/signin", {"csrf": page.csrf(), "user": name, "token": token})
        assert r.status in (400, 401), (name, r.status)
        assert "linesync_session" not in web.cookies
        assert user.token not in r.text
    assert web_devices(srv, user.name) == []


def test_a_metrics_token_cannot_sign_in(srv: ServerProc) -> None:
    user = new_user(srv)
    metrics = admin(srv, "token", "create", user.name, "--device", "prom", "--metrics")
    web = Web(srv.url)
    page = web.get("/web/signin")
    r = web.post(
        "/web/signin", {"csrf": page.csrf(), "user": user.name, "token": metrics.splitlines()[-1]}
    )
    assert r.status == 403 and "linesync_session" not in web.cookies


def test_two_sign_in_tabs_both_work(srv: ServerProc) -> None:
    user = new_user(srv)
    web = Web(srv.url)
    first, second = web.get("/web/signin"), web.get("/web/signin")
    assert first.csrf() == second.csrf()
    r = web.post("/web/signin", {"csrf": first.csrf(), "user": user.name, "token": user.token})
    assert r.status == 303
    # Another browser gets another value.
    assert Web(srv.url).get("/web/signin").csrf() != first.csrf()


def test_sign_in_needs_its_form_token_and_this_origin(srv: ServerProc) -> None:
    """Another site cannot sign a browser in (as its own user, to watch it)."""
    user = new_user(srv)
    web = Web(srv.url)
    web.get("/web/signin")
    r = web.post("/web/signin", {"csrf": "forged", "user": user.name, "token": user.token})
    assert r.status == 403 and "linesync_session" not in web.cookies
    page = web.get("/web/signin")
    r = web.post(
        "/web/signin",
        {"csrf": page.csrf(), "user": user.name, "token": user.token},
        origin="http://evil.example",
    )
    assert r.status == 403 and "linesync_session" not in web.cookies


@pytest.fixture(scope="module")
def strict_srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    """A server whose failed sign-ins run out after 3 (the API's limiter)."""
    proc = ServerProc(
        tmp_path_factory.mktemp("strict") / "server",
        extra=["--limit", "auth_fail_burst=3", "--limit", "auth_fail_rate=0.01"],
    )
    yield proc.start()
    proc.stop()


def test_failed_sign_ins_are_rate_limited_with_the_api(strict_srv: ServerProc) -> None:
    user = new_user(strict_srv)
    web = Web(strict_srv.url)
    statuses = []
    for _ in range(5):
        page = web.get("/web/signin")
        statuses.append(
            web.post(
                "/web/signin", {"csrf": page.csrf(), "user": user.name, "token": "lst_" + "B" * 32}
            ).status
        )
    assert statuses[:3] == [401, 401, 401] and statuses[-1] == 429, statuses
    # Even the right token is refused now from this address, on the web and the API.
    page = web.get("/web/signin")
    r = web.post("/web/signin", {"csrf": page.csrf(), "user": user.name, "token": user.token})
    assert r.status == 429 and "linesync_session" not in web.cookies
    api = Web(strict_srv.url).get("/v1/me", headers={"Authorization": f"Bearer {user.token}"})
    assert api.status == 429


# -- sessions end --------------------------------------------------------------


def test_sign_out_revokes_the_session_token(srv: ServerProc) -> None:
    web, user = signed_in(srv)
    token = session_token(web)
    r = web.post("/web/signout", {"csrf": web.csrf()})
    assert r.status == 303 and r.location == "/web/signin"
    assert "linesync_session" not in web.cookies
    (dev,) = web_devices(srv, user.name)
    assert dev["state"] == "revoked"
    stolen = Web(srv.url, cookies={"linesync_session": token})
    assert stolen.get("/web/").status == 303
    api = stolen.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert api.status == 401


def test_revoking_the_session_token_elsewhere_signs_the_browser_out(srv: ServerProc) -> None:
    web, user = signed_in(srv)
    assert web.get("/web/").status == 200
    (dev,) = web_devices(srv, user.name)
    admin(srv, "token", "revoke", user.name, "--device", str(dev["device"]))
    assert web.get("/web/").status == 303
    assert web.post("/web/tokens", {"csrf": "x"}).status == 401


def test_the_session_token_works_on_the_api_with_the_same_role(srv: ServerProc) -> None:
    """The session is an ordinary device token: the API accepts it, read-only
    when signed in with a read-only token."""
    web, user = signed_in(srv, read_only=True)
    token = session_token(web)
    r = web.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert r.status == 200 and json.loads(r.body)["token_role"] == "ro"


# -- CSRF and origins ------------------------------------------------------------


def _actions(ns: int) -> list[tuple[str, dict[str, str]]]:
    return [
        ("/web/signout", {}),
        ("/web/tokens", {"device": "x", "role": "rw", "days": "30"}),
        ("/web/tokens/revoke", {"device": "laptop"}),
        (f"/web/ns/{ns}/mkdir", {"folder": "", "name": "d"}),
        (f"/web/ns/{ns}/delete", {"path": "a.txt"}),
        (f"/web/ns/{ns}/move", {"path": "a.txt", "to": "b.txt"}),
        (f"/web/ns/{ns}/restore", {"path": "a.txt", "jid": "1"}),
        (
            f"/web/ns/{ns}/resolve",
            {"copy": "a (conflict from x 2026-01-01 000000).txt", "keep": "copy"},
        ),
        (f"/web/ns/{ns}/share", {"user": "nobody", "role": "rw"}),
    ]


def test_every_action_needs_the_csrf_token_and_this_origin(srv: ServerProc) -> None:
    web, user = signed_in(srv)
    assert upload(web, user.ns, "a.txt", b"one\n").status == 303
    good = web.csrf()
    head_before = asyncio.run(_head(srv, user))
    for path, fields in _actions(user.ns):
        for bad in [{}, {"csrf": ""}, {"csrf": "0" * 64}, {"csrf": good[:-1] + "x"}]:
            r = web.post(path, {**fields, **bad})
            assert r.status == 403, (path, bad, r.status)
        for origin in ["http://evil.example", "null", "http://127.0.0.1:1", "http://localhost"]:
            r = web.post(path, {**fields, "csrf": good}, origin=origin)
            assert r.status == 403, (path, origin, r.status)
        r = web.post(
            path,
            {**fields, "csrf": good},
            origin=None,
            headers={"Referer": "http://evil.example/page"},
        )
        assert r.status == 403, (path, "referer")
    # The upload too, by form field or header.
    body = [("files", "b.txt", b"two\n")]
    assert web.upload(f"/web/ns/{user.ns}/upload", {"folder": ""}, body).status == 403
    r = web.upload(
        f"/web/ns/{user.ns}/upload", {"folder": ""}, body, headers={"X-CSRF-Token": "f" * 64}
    )
    assert r.status == 403
    r = web.upload(
        f"/web/ns/{user.ns}/upload",
        {"folder": "", "csrf": good},
        body,
        headers={"Origin": "http://evil.example"},
    )
    assert r.status == 403
    # Nothing happened: still signed in, nothing committed.
    assert web.get("/web/").status == 200
    assert asyncio.run(_head(srv, user)) == head_before
    # With the header, no Origin and no Referer (privacy settings): allowed.
    r = web.upload(
        f"/web/ns/{user.ns}/upload",
        {"folder": ""},
        body,
        headers={"X-CSRF-Token": good, "Accept": "application/json"},
    )
    assert r.status == 200 and json.loads(r.body) == {"saved": ["b.txt"]}


def test_the_csrf_token_belongs_to_one_session(srv: ServerProc) -> None:
    web1, user = signed_in(srv)
    web2, _ = signed_in(srv, user)
    assert web1.csrf() != web2.csrf()
    r = web2.post(f"/web/ns/{user.ns}/mkdir", {"csrf": web1.csrf(), "folder": "", "name": "x"})
    assert r.status == 403


async def _head(srv: ServerProc, user: User) -> int:
    async with Remote(srv.url, user.token) as r:
        return (await r.head(user.ns)).jid


# -- the API's authorization rules -------------------------------------------------


_NS_PAGES = """
/web/ns/{ns}/browse /web/ns/{ns}/download?path=secret.txt /web/ns/{ns}/zip
/web/ns/{ns}/history?path=secret.txt /web/ns/{ns}/diff?path=secret.txt&a=1&b=1
/web/ns/{ns}/conflicts /web/ns/{ns}/share
"""


def test_another_users_namespace_is_404_everywhere(srv: ServerProc) -> None:
    owner = new_user(srv)
    asyncio.run(_put(srv, owner, "secret.txt", b"mine\n"))
    web, _ = signed_in(srv)
    csrf = web.csrf()
    ns = owner.ns
    for path in [*_NS_PAGES.format(ns=ns).split(), f"/web/ns/{2**40}/browse"]:
        r = web.get(path)
        assert r.status == 404 and b"mine" not in r.body, (path, r.status)
    for path, fields in _actions(ns)[3:]:
        r = web.post(path, {**fields, "csrf": csrf})
        assert r.status == 404, (path, r.status)
    r = web.upload(f"/web/ns/{ns}/upload", {"csrf": csrf, "folder": ""}, [("files", "x", b"x")])
    assert r.status == 404
    assert asyncio.run(_history(srv, owner, "x")) == []


def test_a_read_only_session_reads_but_never_writes(srv: ServerProc) -> None:
    rw = new_user(srv)
    asyncio.run(_put(srv, rw, "a.txt", b"one\n"))
    ro_token = new_token(srv, rw.name, "viewer", read_only=True)
    web, _ = signed_in(srv, User(rw.name, ro_token, rw.ns))
    assert "read-only" in web.get("/web/").text
    page = web.get(f"/web/ns/{rw.ns}/browse")
    assert page.status == 200 and "a.txt" in page.text and 'id="dropzone"' not in page.text
    assert web.get(f"/web/ns/{rw.ns}/download?path=a.txt").body == b"one\n"
    csrf = page.csrf()
    for path, fields in _actions(rw.ns)[1:]:
        if path == "/web/tokens/revoke":
            continue
        r = web.post(path, {**fields, "csrf": csrf})
        assert r.status in (403, 404) if "resolve" in path else r.status == 403, (path, r.status)
    r = web.upload(f"/web/ns/{rw.ns}/upload", {"csrf": csrf, "folder": ""}, [("files", "b", b"b")])
    assert r.status == 403
    r = web.post("/web/tokens/revoke", {"csrf": csrf, "device": "laptop"})
    assert r.status == 403
    assert [e.path for e in asyncio.run(_history(srv, rw, "a.txt"))] == ["a.txt"]
    assert asyncio.run(_history(srv, rw, "b")) == []
    # Its own session it may end.
    assert web.post("/web/signout", {"csrf": csrf}).status == 303


def test_a_read_only_member_cannot_write_with_a_read_write_session(srv: ServerProc) -> None:
    owner = new_user(srv)
    asyncio.run(_put(srv, owner, "a.txt", b"one\n"))
    web, member = signed_in(srv)
    admin(srv, "namespace", "share", owner.name, member.name, "--read-only")
    page = web.get(f"/web/ns/{owner.ns}/browse")
    assert page.status == 200 and "a.txt" in page.text and 'id="dropzone"' not in page.text
    r = upload(web, owner.ns, "b.txt", b"two\n")
    assert r.status == 403
    r = web.post(f"/web/ns/{owner.ns}/delete", {"csrf": page.csrf(), "path": "a.txt"})
    assert r.status == 403
    # Nor share it: only the owner can.
    r = web.post(
        f"/web/ns/{owner.ns}/share", {"csrf": page.csrf(), "user": member.name, "role": "rw"}
    )
    assert r.status == 403


async def _put(srv: ServerProc, user: User, path: str, data: bytes) -> int:
    async with Remote(srv.url, user.token) as r:
        cur = (await r.history(user.ns, path)).entries
        return await put_file(r, user.ns, path, data, cur[0].jid if cur else 0)


async def _history(srv: ServerProc, user: User, path: str) -> list[Entry]:
    async with Remote(srv.url, user.token) as r:
        return list((await r.history(user.ns, path)).entries)


# -- headers -----------------------------------------------------------------------


def test_pages_and_downloads_carry_the_security_headers(srv: ServerProc) -> None:
    web, user = signed_in(srv)
    assert upload(web, user.ns, "page.html", b"<script>alert(1)</script>").status == 303
    for path in [
        "/web/",
        "/web/signin",
        f"/web/ns/{user.ns}/browse",
        "/web/static/app.js",
        f"/web/ns/{user.ns}/download?path=page.html",
    ]:
        r = (Web(srv.url) if path == "/web/signin" else web).get(path)
        assert r.status == 200, path
        csp = r.header("content-security-policy") or ""
        assert "default-src 'self'" in csp and "unsafe-inline" not in csp, path
        assert r.header("x-content-type-options") == "nosniff", path
        assert r.header("x-frame-options") == "DENY", path
        assert r.header("referrer-policy") == "same-origin", path
    r = web.get(f"/web/ns/{user.ns}/download?path=page.html")
    assert (r.header("content-disposition") or "").startswith("attachment;")
    assert r.header("content-type") == "application/octet-stream"
    # No inline script or style anywhere: the CSP would block it.
    for body in web.bodies:
        text = body.decode("utf-8", "replace")
        if text.startswith("<!doctype html>"):
            assert not re.search(r"<script(?![^>]*\bsrc=)", text)
            assert " style=" not in text and "<style" not in text and " on" + "click" not in text


def test_names_are_escaped(srv: ServerProc) -> None:
    web, user = signed_in(srv)
    name = '<img src=x onerror="alert(1)">.txt'
    assert upload(web, user.ns, name, b"x").status == 303
    page = web.get(f"/web/ns/{user.ns}/browse").text
    assert "<img src=x" not in page and "&lt;img src=x onerror=" in page


# -- round trips --------------------------------------------------------------------


def test_upload_commits_through_the_journal_and_downloads_the_same_bytes(
    srv: ServerProc, tmp_path: Path
) -> None:
    web, user = signed_in(srv)
    text = b"".join(b"line %d of a note\n" % i for i in range(5000))
    binary = bytes(range(256)) * 2000
    csrf = web.get(f"/web/ns/{user.ns}/browse").csrf()
    r = web.post(f"/web/ns/{user.ns}/mkdir", {"csrf": csrf, "folder": "", "name": "Notes"})
    assert r.status == 303
    r = web.upload(
        f"/web/ns/{user.ns}/upload",
        {"csrf": csrf, "folder": "Notes"},
        [("files", "big.txt", text), ("files", "blob.bin", binary), ("files", "empty", b"")],
    )
    assert r.status == 303, r.text[:300]
    assert "Uploaded 3 file(s)." in web.get(r.location).text
    page = web.get(f"/web/ns/{user.ns}/browse?path=Notes").text
    assert "big.txt" in page and "blob.bin" in page
    for name, data in [("big.txt", text), ("blob.bin", binary), ("empty", b"")]:
        got = web.get(f"/web/ns/{user.ns}/download?path=Notes/{name}")
        assert got.status == 200 and got.body == data, name
    # The API sees the same versions, committed by the web session's device.
    (entry,) = asyncio.run(_history(srv, user, "Notes/big.txt"))
    assert entry.kind is Kind.FILE and entry.size == len(text)
    assert str(entry.device).startswith("web-")
    # Uploading again over it is a new version; the old one stays.
    assert upload(web, user.ns, "big.txt", text + b"one more\n", "Notes").status == 303
    assert len(asyncio.run(_history(srv, user, "Notes/big.txt"))) == 2
    # Into a folder that does not exist: refused, nothing written.
    r = upload(web, user.ns, "x.txt", b"x", "Nowhere")
    assert r.status == 400 and "not saved" in r.text
    # A bad Content-Length is refused, not a crash.
    for bad in ["\u00b2", "-1", "1" * 30]:
        r = web.request(
            "POST",
            f"/web/ns/{user.ns}/upload",
            b"",
            {"Content-Length": bad, "Content-Type": "multipart/form-data; boundary=x"},
        )
        assert r.status in (400, 413), (bad, r.status)


def test_zip_of_a_folder(srv: ServerProc) -> None:
    web, user = signed_in(srv)
    csrf = web.csrf()
    web.post(f"/web/ns/{user.ns}/mkdir", {"csrf": csrf, "folder": "", "name": "A"})
    web.post(f"/web/ns/{user.ns}/mkdir", {"csrf": csrf, "folder": "A", "name": "B"})
    upload(web, user.ns, "one.txt", b"1\n", "A")
    upload(web, user.ns, "two.bin", bytes(300_000), "A/B")
    upload(web, user.ns, "out.txt", b"not in A\n")
    r = web.get(f"/web/ns/{user.ns}/zip?path=A")
    assert r.status == 200 and r.header("content-type") == "application/zip"
    assert (r.header("content-disposition") or "").startswith('attachment; filename="A.zip"')
    zf = zipfile.ZipFile(io.BytesIO(r.body))
    assert sorted(zf.namelist()) == ["B/two.bin", "one.txt"]
    assert zf.read("B/two.bin") == bytes(300_000) and zf.read("one.txt") == b"1\n"
    whole = zipfile.ZipFile(io.BytesIO(web.get(f"/web/ns/{user.ns}/zip").body))
    assert sorted(whole.namelist()) == ["A/B/two.bin", "A/one.txt", "out.txt"]
    assert web.get(f"/web/ns/{user.ns}/zip?path=nope").status == 404


def test_history_diff_and_restore(srv: ServerProc) -> None:
    web, user = signed_in(srv)
    v1 = asyncio.run(_put(srv, user, "n.md", b"alpha\nbeta\ngamma\n"))
    v2 = asyncio.run(_put(srv, user, "n.md", b"alpha\nBETA\ngamma\ndelta\n"))
    page = web.get(f"/web/ns/{user.ns}/history?path=n.md")
    assert page.status == 200 and f"#{v1}" in page.text and f"#{v2}" in page.text
    d = web.get(f"/web/ns/{user.ns}/diff?path=n.md&a={v1}&b={v2}").text
    assert re.search(r'class="del">.*?beta', d, re.S) and re.search(r'class="add">.*?BETA', d, re.S)
    assert "delta" in d
    assert web.get(f"/web/ns/{user.ns}/download?path=n.md&jid={v1}").body == b"alpha\nbeta\ngamma\n"
    r = web.post(
        f"/web/ns/{user.ns}/restore", {"csrf": page.csrf(), "path": "n.md", "jid": str(v1)}
    )
    assert r.status == 303
    assert web.get(f"/web/ns/{user.ns}/download?path=n.md").body == b"alpha\nbeta\ngamma\n"
    assert len(asyncio.run(_history(srv, user, "n.md"))) == 3  # nothing lost
    # A version of another path is no version of this one.
    other = asyncio.run(_put(srv, user, "o.md", b"o\n"))
    r = web.post(
        f"/web/ns/{user.ns}/restore", {"csrf": page.csrf(), "path": "n.md", "jid": str(other)}
    )
    assert r.status == 404
    # Undelete: delete it, then restore the last version.
    r = web.post(f"/web/ns/{user.ns}/delete", {"csrf": page.csrf(), "path": "n.md"})
    assert r.status == 303 and web.get(f"/web/ns/{user.ns}/download?path=n.md").status == 404
    assert "n.md" in web.get(f"/web/ns/{user.ns}/browse?deleted=1").text
    r = web.post(
        f"/web/ns/{user.ns}/restore", {"csrf": page.csrf(), "path": "n.md", "jid": str(v2)}
    )
    assert r.status == 303
    assert web.get(f"/web/ns/{user.ns}/download?path=n.md").body == b"alpha\nBETA\ngamma\ndelta\n"


def test_diff_of_binary_or_big_versions_is_refused_politely(srv: ServerProc) -> None:
    web, user = signed_in(srv)
    b1 = asyncio.run(_put(srv, user, "b.bin", b"\x00\x01" * 10))
    b2 = asyncio.run(_put(srv, user, "b.bin", b"\x00\x02" * 10))
    r = web.get(f"/web/ns/{user.ns}/diff?path=b.bin&a={b1}&b={b2}")
    assert r.status == 200 and "binary content" in r.text
    t1 = asyncio.run(_put(srv, user, "big.txt", b"x\n" * 600_000))
    t2 = asyncio.run(_put(srv, user, "big.txt", b"y\n" * 600_000))
    r = web.get(f"/web/ns/{user.ns}/diff?path=big.txt&a={t1}&b={t2}")
    assert r.status == 200 and "larger than 1 MiB" in r.text


def test_conflict_copies_are_shown_beside_their_original_and_resolved(srv: ServerProc) -> None:
    from linesync.client.naming import conflict_name

    web, user = signed_in(srv)
    copy1 = conflict_name("plan.txt", "phone", when=1_700_000_000)
    copy2 = conflict_name("plan.txt", "tablet", when=1_700_000_100)
    asyncio.run(_put(srv, user, "plan.txt", b"laptop's\n"))
    asyncio.run(_put(srv, user, copy1, b"phone's\n"))
    asyncio.run(_put(srv, user, copy2, b"tablet's\n"))
    asyncio.run(_put(srv, user, "zzz.txt", b"z\n"))
    page = web.get(f"/web/ns/{user.ns}/browse").text
    order = [m for m in re.findall(r'data-path="([^"]+)"', page)]
    assert order == ["plan.txt", copy1, copy2, "zzz.txt"]
    assert "conflict copy of plan.txt" in page
    listing = web.get(f"/web/ns/{user.ns}/conflicts")
    assert copy1 in listing.text and copy2 in listing.text
    csrf = listing.csrf()
    r = web.post(f"/web/ns/{user.ns}/resolve", {"csrf": csrf, "copy": copy1, "keep": "copy"})
    assert r.status == 303
    assert web.get(f"/web/ns/{user.ns}/download?path=plan.txt").body == b"phone's\n"
    r = web.post(f"/web/ns/{user.ns}/resolve", {"csrf": csrf, "copy": copy2, "keep": "original"})
    assert r.status == 303
    assert web.get(f"/web/ns/{user.ns}/download?path=plan.txt").body == b"phone's\n"
    assert "No conflict copies" in web.get(f"/web/ns/{user.ns}/conflicts").text
    # Both stay in history.
    assert len(asyncio.run(_history(srv, user, "plan.txt"))) == 2
    assert len(asyncio.run(_history(srv, user, copy2))) == 2


def test_tokens_are_created_shown_once_and_revoked(srv: ServerProc) -> None:
    web, user = signed_in(srv)
    r = web.post("/web/tokens", {"csrf": web.csrf(), "device": "phone", "role": "ro", "days": "7"})
    assert r.status == 201
    shown = TOKEN.findall(r.text)
    assert len(shown) == 1
    new = shown[0]
    assert new not in web.get("/web/tokens").text  # never again
    tokens = {t["device"]: t for t in json.loads(admin(srv, "token", "list", user.name))}
    assert tokens["phone"]["role"] == "ro" and tokens["phone"]["state"] == "active"
    assert (
        abs(float(tokens["phone"]["expires"]) - float(tokens["phone"]["created"]) - 7 * 86400) < 5
    )
    # It works on the API, read-only.
    me = Web(srv.url).get("/v1/me", headers={"Authorization": f"Bearer {new}"})
    assert json.loads(me.body)["token_role"] == "ro"
    r = web.post(
        "/web/tokens", {"csrf": web.csrf(), "device": "bad name!", "role": "rw", "days": "7"}
    )
    assert r.status == 400
    r = web.post("/web/tokens/revoke", {"csrf": web.csrf(), "device": "phone"})
    assert r.status == 303
    assert Web(srv.url).get("/v1/me", headers={"Authorization": f"Bearer {new}"}).status == 401
    # Revoking this browser's own device signs it out.
    (dev,) = web_devices(srv, user.name)
    r = web.post("/web/tokens/revoke", {"csrf": web.csrf(), "device": str(dev["device"])})
    assert r.status == 303 and web.get("/web/").status == 303


def test_no_token_ever_appears_in_a_url_or_after_its_one_display(srv: ServerProc) -> None:
    web, user = signed_in(srv)
    upload(web, user.ns, "a.txt", b"a\n")
    created = web.post(
        "/web/tokens", {"csrf": web.csrf(), "device": "tv", "role": "rw", "days": "30"}
    )
    one_time = TOKEN.findall(created.text)
    for path in [
        "/web/",
        f"/web/ns/{user.ns}/browse",
        "/web/tokens",
        f"/web/ns/{user.ns}/history?path=a.txt",
        f"/web/ns/{user.ns}/share",
    ]:
        web.get(path)
    secrets = {user.token, session_token(web), *one_time}
    for url in web.urls:
        assert not TOKEN.search(url), url
    for body in web.bodies:
        if body is created.body:
            continue
        found = set(TOKEN.findall(body.decode("utf-8", "replace")))
        assert not found & secrets


def test_sharing_by_the_owner(srv: ServerProc) -> None:
    web, owner = signed_in(srv)
    other = new_user(srv)
    upload(web, owner.ns, "shared.txt", b"for you\n")
    page = web.get(f"/web/ns/{owner.ns}/share")
    r = web.post(
        f"/web/ns/{owner.ns}/share", {"csrf": page.csrf(), "user": other.name, "role": "ro"}
    )
    assert r.status == 303
    members = web.get(f"/web/ns/{owner.ns}/share").text
    assert other.name in members and "read-only" in members
    users = re.findall(r'data-user="([^"]+)"', members)
    assert users == [owner.name, other.name]  # the owner once, as the owner
    # The owner's own access cannot be taken away.
    r = web.post(
        f"/web/ns/{owner.ns}/share", {"csrf": page.csrf(), "user": owner.name, "role": "none"}
    )
    assert r.status == 303 and "error=" in r.location
    assert web.get(f"/web/ns/{owner.ns}/browse").status == 200
    web2, _ = signed_in(srv, other)
    assert owner.name in web2.get("/web/").text
    assert web2.get(f"/web/ns/{owner.ns}/download?path=shared.txt").body == b"for you\n"
    assert upload(web2, owner.ns, "mine.txt", b"x").status == 403
    r = web.post(
        f"/web/ns/{owner.ns}/share", {"csrf": page.csrf(), "user": other.name, "role": "rw"}
    )
    assert upload(web2, owner.ns, "mine.txt", b"x").status == 303
    r = web.post(
        f"/web/ns/{owner.ns}/share", {"csrf": page.csrf(), "user": unique("ghost"), "role": "rw"}
    )
    assert r.status == 303 and "error=" in r.location
    r = web.post(
        f"/web/ns/{owner.ns}/share", {"csrf": page.csrf(), "user": other.name, "role": "none"}
    )
    assert web2.get(f"/web/ns/{owner.ns}/browse").status == 404


def test_a_linesync_client_and_the_web_see_each_others_changes(
    srv: ServerProc, tmp_path: Path
) -> None:
    """An upload is a commit like a client's: a real client syncs it down with
    the same bytes; the client's edit shows in the web history as a diff; a
    web restore reaches the client."""
    from linesync.client.api import Client

    web, user = signed_in(srv)
    client = Client.init(tmp_path / "laptop", server=srv.url, token=user.token)
    (tmp_path / "laptop" / "notes.md").write_bytes(b"one\ntwo\nthree\n")
    client.sync_once()
    first = asyncio.run(_history(srv, user, "notes.md"))[0].jid
    data = b"".join(b"uploaded line %d\n" % i for i in range(3000))
    assert upload(web, user.ns, "from-web.txt", data).status == 303
    client.sync_once()
    assert (tmp_path / "laptop" / "from-web.txt").read_bytes() == data
    (tmp_path / "laptop" / "notes.md").write_bytes(b"one\n2\nthree\n")
    client.sync_once()
    versions = asyncio.run(_history(srv, user, "notes.md"))
    second = versions[0].jid
    page = web.get(f"/web/ns/{user.ns}/diff?path=notes.md&a={first}&b={second}").text
    assert re.search(r'class="del">.*?two', page, re.S) and re.search(
        r'class="add">.*?2', page, re.S
    )
    csrf = web.csrf()
    r = web.post(
        f"/web/ns/{user.ns}/restore", {"csrf": csrf, "path": "notes.md", "jid": str(first)}
    )
    assert r.status == 303
    client.sync_once()
    assert (tmp_path / "laptop" / "notes.md").read_bytes() == b"one\ntwo\nthree\n"


def test_a_session_never_outlives_the_token_it_was_made_from(srv: ServerProc) -> None:
    user = new_user(srv)
    short = admin(srv, "token", "create", user.name, "--device", "brief", "--expires", "3s")
    web = Web(srv.url)
    r = web.signin(user.name, short.splitlines()[-1])
    assert r.status == 303
    (cookie,) = [c for c in r.cookies() if c.startswith("linesync_session=")]
    max_age = int(re.search(r"Max-Age=(\d+)", cookie).group(1))  # type: ignore[union-attr]
    assert 0 < max_age <= 3
    (dev,) = web_devices(srv, user.name)
    assert float(dev["expires"]) <= time.time() + 3.5  # type: ignore[arg-type]
    assert web.get("/web/").status == 200
    deadline = time.monotonic() + 10
    while web.get("/web/").status == 200 and time.monotonic() < deadline:
        time.sleep(0.25)
    assert web.get("/web/").status == 303  # expired: signed out (even with the cookie kept)


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    """A server that believes its TLS proxy on 127.0.0.1 (X-Forwarded-Proto)."""
    proc = ServerProc(
        tmp_path_factory.mktemp("proxied") / "server", extra=["--forwarded-allow-ips", "127.0.0.1"]
    )
    yield proc.start()
    proc.stop()


def test_behind_a_tls_proxy_the_cookies_are_secure(proxied: ServerProc) -> None:
    user = new_user(proxied)
    web = Web(proxied.url)
    tls = {"X-Forwarded-Proto": "https"}
    page = web.get("/web/signin", headers=tls)
    assert all("; Secure" in c for c in page.cookies())
    host = proxied.url.split("//")[1].rstrip("/")
    r = web.post(
        "/web/signin",
        {"csrf": page.csrf(), "user": user.name, "token": user.token},
        origin=f"https://{host}",
        headers=tls,
    )
    assert r.status == 303
    (cookie,) = [c for c in r.cookies() if c.startswith("linesync_session=")]
    assert cookie.endswith("; HttpOnly; Secure")
    # Plain http without the proxy: no Secure flag (the browser would drop it).
    plain = Web(proxied.url).get("/web/signin")
    assert not any("Secure" in c for c in plain.cookies())


def test_the_rule_tests_cover_every_web_route() -> None:
    """A new route cannot slip past the CSRF and 404 tests above: every POST is
    in the CSRF test (sign-in has its own), every namespace page in the 404 test."""
    from linesync.server.web import _TABLE

    ns = 7
    posts = {p.replace("{ns:id}", str(ns)) for m, p, _ in _TABLE if m == "POST"}
    covered = {p for p, _ in _actions(ns)} | {"/web/signin", f"/web/ns/{ns}/upload"}
    assert posts == covered
    pages = {p.replace("{ns:id}", str(ns)) for m, p, _ in _TABLE if m == "GET" and "{ns:id}" in p}
    looked_at = {p.split("?")[0] for p in _NS_PAGES.format(ns=ns).split()}
    assert pages == looked_at


def test_a_form_body_past_its_limit_is_refused_unread(srv: ServerProc) -> None:
    """Forms are small: a big urlencoded body (sign-in needs no session) is
    refused by its length, and one that lies about its length by what arrives."""
    from linesync.server.web.common import MAX_FORM_BYTES

    web = Web(srv.url)
    page = web.get("/web/signin")
    big = b"user=x&token=" + b"a" * (MAX_FORM_BYTES + 10) + b"&csrf=" + page.csrf().encode()
    r = web.request(
        "POST", "/web/signin", big, {"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert r.status == 413
    r = web.request("POST", "/web/signin", b"user=x", {"Content-Type": "text/plain"})
    assert r.status == 415
    many = "&".join(f"f{i}=1" for i in range(100)).encode()
    r = web.request(
        "POST", "/web/signin", many, {"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert r.status == 400


def test_a_users_web_sessions_are_bounded(srv: ServerProc) -> None:
    """Signing in over and over cannot pile up tokens: past MAX_SESSIONS the
    oldest session ends."""
    from linesync.server.web.account import MAX_SESSIONS

    user = new_user(srv)
    browsers = [signed_in(srv, user)[0] for _ in range(MAX_SESSIONS + 2)]
    active = [t for t in web_devices(srv, user.name) if t["state"] == "active"]
    assert len(active) == MAX_SESSIONS
    assert browsers[0].get("/web/").status == 303  # the oldest two ended
    assert browsers[1].get("/web/").status == 303
    assert browsers[2].get("/web/").status == 200 and browsers[-1].get("/web/").status == 200


def test_tokens_made_on_the_web_are_bounded(srv: ServerProc) -> None:
    from linesync.server.web.account import MAX_TOKENS

    web, user = signed_in(srv)
    csrf = web.csrf()
    active = 2  # the user's first token and this session
    statuses = []
    for i in range(MAX_TOKENS - active + 1):
        fields = {"csrf": csrf, "device": f"d{i}", "role": "ro", "days": "7"}
        statuses.append(web.post("/web/tokens", fields).status)
    assert statuses[:-1] == [201] * (MAX_TOKENS - active) and statuses[-1] == 409
    r = web.post("/web/tokens/revoke", {"csrf": csrf, "device": "d0"})
    assert r.status == 303
    fields = {"csrf": csrf, "device": "again", "role": "ro", "days": "7"}
    assert web.post("/web/tokens", fields).status == 201
