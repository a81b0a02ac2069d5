"""The web interface attacked from the outside, over a real socket, by a
user holding a valid session (or none) who wants another user's data, to
act in a victim's browser, or the server's memory: words of a link put on
the page, redirects off site, forged writes in other content types,
sessions that outlive sign-out, names that inject headers or markup,
namespaces of others, traversal in query parameters, upload floods, and
error pages that say too much."""

from __future__ import annotations

import asyncio
import re
import socket
import time
from typing import Any
from urllib.parse import quote

from tests.attack.conftest import Launch
from tests.attack.helpers import host_port
from tests.attack.outside_helpers import journal_head, measured, team
from tests.support.api import (
    Remote,
    User,
    admin,
    dir_op,
    file_op,
    new_token,
    new_user,
    put_file,
)
from tests.support.resources import peak_rss, pid_of, reset_peak_rss, rss
from tests.support.server import ServerProc
from tests.web.webclient import Resp, Web

MiB = 2**20
SPOOF = "Your session ended. Sign in again at https://evil.example/linesync"


def signed_in(srv: ServerProc, user: User | None = None) -> tuple[Web, User]:
    user = user or new_user(srv)
    web = Web(srv.url)
    r = web.signin(user.name, user.token)
    assert r.status == 303 and r.location == "/web/", (r.status, r.text[:300])
    return web, user


def put(srv: ServerProc, user: User, path: str, data: bytes, ns: int | None = None) -> int:
    async def go() -> int:
        async with Remote(srv.url, user.token) as r:
            return await put_file(r, user.ns if ns is None else ns, path, data)

    return asyncio.run(go())


def web_tokens(srv: ServerProc, user: str) -> str:
    return admin(srv, "token", "list", user)


def no_leak(r: Resp, srv: ServerProc) -> None:
    """An error answer that tells nothing of the server's insides."""
    text = r.text
    for needle in ("Traceback", 'File "', "site-packages", "linesync/server", str(srv.data)):
        assert needle not in text, (needle, r.status, text[:300])


# -- what a link can make a page say or do ----------------------------------------------


def test_words_of_a_link_never_reach_the_page(srv: ServerProc) -> None:
    """A link from elsewhere (sent to a victim) must not put its words on a
    page of the site: the notices after an upload, a restore or a refused
    share take only what the server itself put there."""
    web, user = signed_in(srv)
    jid = put(srv, user, "a.txt", b"one\n")
    q = quote(SPOOF)
    for path in [
        f"/web/ns/{user.ns}/browse?saved={q}",
        f"/web/ns/{user.ns}/browse?saved=1{q}",
        f"/web/ns/{user.ns}/history?path=a.txt&restored={q}",
        f"/web/ns/{user.ns}/history?path=a.txt&restored={jid}%20{q}",
        f"/web/ns/{user.ns}/share?error={q}",
    ]:
        r = web.get(path)
        assert r.status == 200, (path, r.status)
        assert "evil.example" not in r.text, path
    # The server's own notices still show.
    assert 'id="saved"' in web.get(f"/web/ns/{user.ns}/browse?saved=2").text
    r = web.get(f"/web/ns/{user.ns}/history?path=a.txt&restored={jid}")
    assert 'id="restored"' in r.text
    csrf = web.csrf()
    r = web.post(f"/web/ns/{user.ns}/share", {"csrf": csrf, "user": user.name, "role": "ro"})
    assert r.status == 303
    assert "than the owner" in web.get(r.location).text


def test_sign_in_never_sends_the_browser_off_site(srv: ServerProc) -> None:
    user = new_user(srv)
    nexts = [
        "//evil.example/",
        "/\\evil.example/",
        "\\\\evil.example",
        "https://evil.example/web/",
        "/web/\\..\\\\evil.example",
        "/web/..//evil.example",
        "/web/%2F%2Fevil.example",
        "/web/\r\nLocation: https://evil.example",
        "/web/\tevil",
        " //evil.example",
        "javascript:alert(1)//web/",
        "/web@evil.example/",
    ]
    web = Web(srv.url)
    page = web.get("/web/signin")
    for nxt in nexts:
        r = web.post(
            "/web/signin",
            {"csrf": page.csrf(), "user": user.name, "token": user.token, "next": nxt},
        )
        assert r.status == 303, (nxt, r.status)
        loc = r.location
        assert loc.startswith("/web/") and not loc.startswith("//"), (nxt, loc)
        assert "\\" not in loc and "\r" not in loc and "\n" not in loc, (nxt, loc)
        assert all(k.lower() != "x-evil" for k, _ in r.headers)
        # Signed in already: the sign-in page sends on, by the same rule.
        again = web.get("/web/signin?next=" + quote(nxt, safe=""))
        assert again.status == 303 and again.location.startswith("/web/"), (nxt, again.location)
        assert not again.location.startswith("//")
        web = Web(srv.url)
        page = web.get("/web/signin")
    # A token in a GET query signs nobody in (and so is never worth putting there).
    r = Web(srv.url).get(f"/web/signin?user={user.name}&token={user.token}")
    assert r.status == 200 and not any("linesync_session" in c for c in r.cookies())


def test_forged_writes_in_other_shapes_are_refused(srv: ServerProc) -> None:
    """The CSRF rules beyond the plain form: bodies a cross-site form or
    fetch can send without a preflight (text/plain, multipart), JSON, method
    overrides, GETs on the actions, and origins that only look like ours."""
    web, user = signed_in(srv)
    good = web.csrf()
    before = web_tokens(srv, user.name)
    head = journal_head(srv, user.token, user.ns)
    body = f"csrf={good}&device=forged&role=rw&days=7".encode()
    for ctype in ("text/plain", "application/json", "multipart/form-data; boundary=x", ""):
        r = web.request("POST", "/web/tokens", body, {"Content-Type": ctype} if ctype else {})
        assert r.status in (400, 403, 415), (ctype, r.status)
    r = web.request(
        "POST", "/web/tokens", b'{"csrf": "%s", "device": "forged"}' % good.encode(),
        {"Content-Type": "application/json"},
    )  # fmt: skip
    assert r.status in (400, 403, 415)
    form = {"csrf": good, "device": "forged", "role": "rw", "days": "7"}
    host = srv.url.removeprefix("http://")
    for origin in [
        f"http://{host}.evil.example",
        f"http://{host}@evil.example",
        f"http://evil.example@{host}",
        f"http://evil.example/{host}",
        f"ftp://{host}",
        "file://",
        "",
    ]:
        r = web.post("/web/tokens", form, origin=origin)
        assert r.status == 403, (origin, r.status)
    # GET never changes anything, whatever the method override says.
    for path in [
        "/web/signout",
        "/web/tokens/revoke?device=laptop",
        f"/web/ns/{user.ns}/mkdir?name=x&csrf={good}",
        f"/web/tokens?device=forged&csrf={good}",
    ]:
        for hdrs in ({}, {"X-HTTP-Method-Override": "POST"}, {"X-Method-Override": "POST"}):
            r = web.get(path, headers=hdrs)
            assert r.status in (200, 404, 405), (path, r.status)
        r = web.get(path + ("&" if "?" in path else "?") + "_method=POST")
        assert r.status in (200, 404, 405)
    assert web_tokens(srv, user.name) == before
    assert journal_head(srv, user.token, user.ns) == head
    assert web.get("/web/").status == 200  # still signed in
    # The control: the same form from this origin works.
    assert web.post("/web/tokens", form).status == 201


def test_sign_out_ends_the_session_everywhere_and_sign_in_fixes_nothing(srv: ServerProc) -> None:
    """Sign-out revokes the session's token for the web, the API and WebDAV
    alike; a session cookie planted before sign-in is replaced, never
    adopted."""
    user = new_user(srv)
    attacker, _ = signed_in(srv, user)
    planted = attacker.cookies["linesync_session"]
    victim = Web(srv.url)
    victim.cookies["linesync_session"] = planted  # e.g. through a sibling subdomain
    page = victim.get("/web/signin")
    assert page.status == 303  # the planted session is valid: it goes on, nothing fixed
    victim.cookies.pop("linesync_session")
    r = victim.signin(user.name, user.token)
    assert r.status == 303 and victim.cookies["linesync_session"] != planted
    session = victim.cookies["linesync_session"]
    csrf = victim.csrf()
    assert victim.post("/web/signout", {"csrf": csrf}).status == 303
    stale = Web(srv.url)
    stale.cookies["linesync_session"] = session
    r = stale.get("/web/tokens")
    assert r.status == 303 and r.location.startswith("/web/signin")
    r = stale.post("/web/tokens", {"csrf": csrf, "device": "after", "role": "rw", "days": "7"})
    assert r.status == 401
    api = stale.get("/v1/me", headers={"Authorization": f"Bearer {session}"})
    assert api.status == 401
    import base64

    basic = base64.b64encode(f"{user.name}:{session}".encode()).decode()
    dav = stale.request(
        "PROPFIND", f"/dav/{user.name}/", headers={"Authorization": f"Basic {basic}", "Depth": "0"}
    )
    assert dav.status == 401
    assert "after" not in web_tokens(srv, user.name)
    # The attacker's own session is another token: signing out ended only the victim's.
    assert attacker.get("/web/").status == 200


def test_an_ended_session_does_not_lock_its_browser_out(launch: Launch) -> None:
    """A session revoked elsewhere (or expired) is a failed sign-in each time
    its cookie is checked, counted against the address: the browser must be
    told to forget it, not keep sending it at every click until the address
    may no longer sign in at all."""
    srv = launch(["--limit", "auth_fail_burst=6", "--limit", "auth_fail_rate=0.01"])
    web, user = signed_in(srv)
    device = [d for d in re.findall(r"web-[0-9a-f]{8}", web_tokens(srv, user.name))][0]
    admin(srv, "token", "revoke", user.name, "--device", device)
    for _ in range(8):  # the user clicks around, and lands on the sign-in page
        r = web.get(f"/web/ns/{user.ns}/browse")
        assert r.status == 303
        assert web.get(r.location).status == 200
    r = web.signin(user.name, user.token)
    assert r.status == 303 and r.location == "/web/", (r.status, r.text[:200])
    assert web.get("/web/").status == 200


# -- names and contents ----------------------------------------------------------------------


def test_names_and_contents_cannot_inject_headers_or_markup(srv: ServerProc) -> None:
    web, user = signed_in(srv)
    names = [
        'quote".txt',
        "semi;colon; filename=evil.exe",
        "percent%0d%0aX-Evil: 1.txt",
        "naïve ☃ 名前.txt",
        "<img src=x onerror=alert(1)>.html",
        "tab\there.txt",
    ]
    stored = []
    for name in names:
        try:
            put(srv, user, name, b"<script>alert(1)</script>\n")
        except Exception:  # noqa: BLE001 (refused by the path rules: fine)
            continue
        stored.append(name)
    assert len(stored) >= 4, stored
    for name in stored:
        r = web.get(f"/web/ns/{user.ns}/download?path={quote(name)}")
        assert r.status == 200, (name, r.status)
        dispositions = [v for k, v in r.headers if k.lower() == "content-disposition"]
        assert len(dispositions) == 1, (name, r.headers)
        (disp,) = dispositions
        assert disp.startswith('attachment; filename="'), disp
        ascii_part = disp.split('filename="', 1)[1].split('"', 1)[0]
        assert all(32 <= ord(c) < 127 and c not in '"\\' for c in ascii_part), disp
        # The name's own quotes, semicolons and line ends stay inside the quotes or %-encoded.
        assert re.fullmatch(
            r'attachment; filename="[\x20-\x7e]*"; filename\*=UTF-8\'\'[A-Za-z0-9%._~-]*', disp
        ), disp
        assert r.header("content-type") == "application/octet-stream"
        assert all(k.lower() != "x-evil" for k, _ in r.headers), name
        assert "sandbox" in (r.header("content-security-policy") or "") or "default-src" in (
            r.header("content-security-policy") or ""
        )
        hist = web.get(f"/web/ns/{user.ns}/history?path={quote(name)}")
        assert hist.status == 200 and "<img src=x" not in hist.text and "<script>" not in hist.text
    page = web.get(f"/web/ns/{user.ns}/browse").text
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    # A diff shows content as text, never as markup.
    jid1 = put(srv, user, "d.txt", b"same\n")

    async def second() -> int:
        async with Remote(srv.url, user.token) as rem:
            return await put_file(
                rem, user.ns, "d.txt", b"same\n<img src=x onerror=alert(2)>\n", jid1
            )

    jid2 = asyncio.run(second())
    diff = web.get(f"/web/ns/{user.ns}/diff?path=d.txt&a={jid1}&b={jid2}")
    assert diff.status == 200 and "<img src=x onerror=alert(2)>" not in diff.text
    assert "&lt;img src=x onerror=alert(2)&gt;" in diff.text
    # A zip of the top folder is named after the namespace, as an attachment.
    z = web.get(f"/web/ns/{user.ns}/zip")
    assert z.status == 200 and (z.header("content-disposition") or "").startswith("attachment;")


def test_markup_in_user_names_stays_text(srv: ServerProc) -> None:
    web, owner = signed_in(srv)
    evil = "<img src=x onerror=alert(3)>"
    admin(srv, "user", "add", evil)  # any name without control characters
    csrf = web.csrf()
    r = web.post(f"/web/ns/{owner.ns}/share", {"csrf": csrf, "user": evil, "role": "ro"})
    assert r.status == 303
    page = web.get(f"/web/ns/{owner.ns}/share").text
    assert evil not in page and "&lt;img src=x onerror=alert(3)&gt;" in page


# -- other users' namespaces and paths -----------------------------------------------------


def test_another_users_namespace_is_exactly_a_missing_one(srv: ServerProc) -> None:
    """Same status and the same body as a namespace that does not exist, for
    every page and action (the session and its CSRF token being the same)."""
    victim = new_user(srv)
    jid = put(srv, victim, "secret.txt", b"secret\n")
    before = journal_head(srv, victim.token, victim.ns)
    web, _ = signed_in(srv)
    csrf = web.csrf()
    ghost = 2**40
    pages = [
        "browse", "browse?path=dir", "download?path=secret.txt",
        f"download?path=secret.txt&jid={jid}", "zip", "history?path=secret.txt",
        f"diff?path=secret.txt&a={jid}&b={jid}", "conflicts", "share",
    ]  # fmt: skip
    for p in pages:
        theirs = web.get(f"/web/ns/{victim.ns}/{p}")
        nowhere = web.get(f"/web/ns/{ghost}/{p}")
        assert theirs.status == nowhere.status == 404, (p, theirs.status, nowhere.status)
        assert theirs.body == nowhere.body, p
    actions = [
        ("mkdir", {"folder": "", "name": "planted"}),
        ("delete", {"path": "secret.txt"}),
        ("move", {"path": "secret.txt", "to": "moved.txt"}),
        ("restore", {"path": "secret.txt", "jid": str(jid)}),
        ("resolve", {"copy": "secret (conflict from x 2026-01-01 000000).txt", "keep": "copy"}),
        ("share", {"user": "someone", "role": "rw"}),
    ]
    for action, fields in actions:
        theirs = web.post(f"/web/ns/{victim.ns}/{action}", {**fields, "csrf": csrf})
        nowhere = web.post(f"/web/ns/{ghost}/{action}", {**fields, "csrf": csrf})
        assert theirs.status == nowhere.status == 404, (action, theirs.status)
        assert theirs.body == nowhere.body, action
    big = b"x" * (4 * MiB)
    theirs = web.upload(
        f"/web/ns/{victim.ns}/upload", {"csrf": csrf, "folder": ""}, [("files", "p", big)]
    )
    nowhere = web.upload(
        f"/web/ns/{ghost}/upload", {"csrf": csrf, "folder": ""}, [("files", "p", big)]
    )
    assert theirs.status == nowhere.status == 404 and theirs.body == nowhere.body
    assert journal_head(srv, victim.token, victim.ns) == before


def test_traversal_and_foreign_versions_in_query_parameters(srv: ServerProc) -> None:
    """Paths in query strings go through the path rules; a version number
    (jid) of another namespace is no version of this one."""
    victim = new_user(srv)
    vjid = put(srv, victim, "secret.txt", b"secret\n")
    web, user = signed_in(srv)
    assert web.post(f"/web/ns/{user.ns}/mkdir", {"csrf": web.csrf(), "name": "dir"}).status == 303
    put(srv, user, "dir/mine.txt", b"mine\n")
    put(srv, user, "secret.txt", b"decoy\n")
    head = journal_head(srv, user.token, user.ns)
    bad = [
        "../secret.txt", "%2e%2e/secret.txt", "dir/../../secret.txt", "..%2fsecret.txt",
        "..\\secret.txt", "%00", "secret.txt%00.png", "%c0%ae%c0%ae/secret.txt",
        "dir/%2e%2e/%2e%2e/x", "/../../etc/passwd", "dir/./mine.txt", "a" * 5000,
        f"../../ns/{victim.ns}/secret.txt",
    ]  # fmt: skip
    for p in bad:
        for page in ("download", "browse", "zip"):  # history: the test below
            r = web.get(f"/web/ns/{user.ns}/{page}?path={p}")
            assert r.status in (200, 400, 404), (page, p, r.status)
            assert b"secret\n" not in r.body, (page, p)
            if page == "browse" and r.status == 200:
                raise AssertionError(f"browse took {p!r} as a folder")
            no_leak(r, srv)
    # The victim's version number names nothing here (or only our own version).
    r = web.get(f"/web/ns/{user.ns}/history?path=secret.txt&before={vjid + 1}")
    assert b"secret\n" not in r.body
    r = web.get(f"/web/ns/{user.ns}/download?path=secret.txt&jid={vjid}")
    assert b"secret\n" not in r.body
    r = web.get(f"/web/ns/{user.ns}/diff?path=secret.txt&a={vjid}&b={vjid}")
    assert b"secret" not in r.body.replace(b"secret.txt", b"")
    csrf = web.csrf()
    for jid in (vjid, 0, 2**62, 10**18 - 1):
        r = web.post(
            f"/web/ns/{user.ns}/restore", {"csrf": csrf, "path": "secret.txt", "jid": str(jid)}
        )
        assert r.status in (400, 404), (jid, r.status)  # our secret.txt is jid 3, theirs 1
    for raw in ("-1", "1e3", "0x10", "１", "9" * 30):
        r = web.get(f"/web/ns/{user.ns}/download?path=secret.txt&jid={quote(raw)}")
        assert r.status == 400, (raw, r.status)
    # Form fields are decoded once: a "%2f" there is a literal name, not a slash.
    for p in [p for p in bad if "%" not in p and "/./" not in p]:
        r = web.post(f"/web/ns/{user.ns}/delete", {"csrf": csrf, "path": p})
        assert r.status in (400, 404), (p, r.status)
        r = web.post(f"/web/ns/{user.ns}/mkdir", {"csrf": csrf, "folder": p, "name": "x"})
        assert r.status in (400, 404), (p, r.status)
        r = web.post(f"/web/ns/{user.ns}/mkdir", {"csrf": csrf, "folder": "", "name": p})
        assert r.status in (400, 404), (p, r.status)
    assert journal_head(srv, user.token, user.ns) == head
    assert web.get(f"/web/ns/{user.ns}/download?path=secret.txt").body == b"decoy\n"


def test_a_move_stays_inside_and_destroys_nothing(srv: ServerProc) -> None:
    """Rename/move from the web: never out of the namespace, never onto or
    into what holds it, never over something that exists."""
    web, user = signed_in(srv)
    csrf = web.csrf()
    for name in ("dir", "dir/sub"):
        r = web.post(f"/web/ns/{user.ns}/mkdir", {"csrf": csrf, "folder": "", "name": name})
        if r.status != 303:  # "dir/sub" as a name: make it inside "dir"
            r = web.post(f"/web/ns/{user.ns}/mkdir", {"csrf": csrf, "folder": "dir", "name": "sub"})
        assert r.status == 303
    put(srv, user, "dir/a.txt", b"a\n")
    put(srv, user, "dir/sub/b.txt", b"b\n")
    put(srv, user, "top.txt", b"top\n")
    head = journal_head(srv, user.token, user.ns)
    for path, to in [
        ("dir", "dir/sub/dir"),  # into itself
        ("dir/sub", "dir"),  # onto its parent
        ("dir/a.txt", "top.txt"),  # over a file
        ("dir/a.txt", "dir/sub"),  # over a folder
        ("dir/a.txt", "../a.txt"),
        ("dir/a.txt", "dir/../../a.txt"),
        ("dir/a.txt", "/"),
        ("dir/a.txt", ""),
        ("dir/a.txt", "a\x00b"),
        ("dir/a.txt", "no/such/folder/a.txt"),
        ("", "x"),
        ("../x", "y"),
        ("dir/none.txt", "none.txt"),
    ]:
        r = web.post(f"/web/ns/{user.ns}/move", {"csrf": csrf, "path": path, "to": to})
        assert r.status in (400, 404), (path, to, r.status)
        no_leak(r, srv)
    for path in ("", "/", ".", "dir/..", "dir/"):  # the top, or a folder by another spelling
        r = web.post(f"/web/ns/{user.ns}/delete", {"csrf": csrf, "path": path})
        assert r.status in (400, 404), (path, r.status)
    assert journal_head(srv, user.token, user.ns) == head
    for path, data in (("dir/a.txt", b"a\n"), ("dir/sub/b.txt", b"b\n"), ("top.txt", b"top\n")):
        assert web.get(f"/web/ns/{user.ns}/download?path={quote(path)}").body == data


def test_the_history_of_a_path_never_written_is_404(srv: ServerProc) -> None:
    victim = new_user(srv)
    put(srv, victim, "secret.txt", b"secret\n")
    web, user = signed_in(srv)
    for p in ["never.txt", "../secret.txt", "%c0%ae%c0%ae/secret.txt", "%ff", "a" * 300]:
        r = web.get(f"/web/ns/{user.ns}/history?path={p}")
        assert r.status in (400, 404), (p, r.status)
        assert b"secret\n" not in r.body
        no_leak(r, srv)


def test_a_read_only_session_changes_nothing(srv: ServerProc) -> None:
    owner = new_user(srv)
    reader = new_user(srv)
    t = team(srv, owner.name, reader.name, read_only=True)
    jid = put(srv, owner, "doc.txt", b"doc\n", ns=t.id)
    ro_token = new_token(srv, reader.name, "ro-device", read_only=True)
    web = Web(srv.url)
    r = web.signin(reader.name, ro_token)
    assert r.status == 303
    csrf = web.csrf()
    heads = (journal_head(srv, owner.token, t.id), journal_head(srv, reader.token, reader.ns))
    tokens = web_tokens(srv, reader.name)
    for ns in (t.id, reader.ns):
        for action, fields in [
            ("mkdir", {"folder": "", "name": "x"}),
            ("delete", {"path": "doc.txt"}),
            ("move", {"path": "doc.txt", "to": "moved.txt"}),
            ("restore", {"path": "doc.txt", "jid": str(jid)}),
            ("resolve", {"copy": "doc (conflict from x 2026-01-01 000000).txt", "keep": "copy"}),
            ("share", {"user": owner.name, "role": "rw"}),
        ]:
            r = web.post(f"/web/ns/{ns}/{action}", {**fields, "csrf": csrf})
            assert r.status in (403, 404), (ns, action, r.status)
        r = web.upload(f"/web/ns/{ns}/upload", {"csrf": csrf, "folder": ""}, [("files", "u", b"u")])
        assert r.status == 403, (ns, r.status)
    r = web.post("/web/tokens", {"csrf": csrf, "device": "mine", "role": "rw", "days": "7"})
    assert r.status == 403
    r = web.post("/web/tokens/revoke", {"csrf": csrf, "device": "laptop"})
    assert r.status == 403
    assert (
        journal_head(srv, owner.token, t.id),
        journal_head(srv, reader.token, reader.ns),
    ) == heads
    assert web_tokens(srv, reader.name) == tokens


# -- floods and errors ------------------------------------------------------------------------


def _multipart(parts: list[tuple[bytes, bytes]], boundary: bytes = b"xyzzy") -> tuple[bytes, str]:
    """A multipart body of raw (headers, content) parts."""
    out = bytearray()
    for headers, content in parts:
        out += b"--" + boundary + b"\r\n" + headers + b"\r\n\r\n" + content + b"\r\n"
    out += b"--" + boundary + b"--\r\n"
    return bytes(out), "multipart/form-data; boundary=" + boundary.decode()


def test_upload_floods_are_refused_in_bounded_memory(srv: ServerProc) -> None:
    web, user = signed_in(srv)
    csrf = web.csrf()
    url = f"/web/ns/{user.ns}/upload"
    head = journal_head(srv, user.token, user.ns)
    field = b'Content-Disposition: form-data; name="%s"'
    file = b'Content-Disposition: form-data; name="files"; filename="f%d"'
    csrf_part = (field % b"csrf", csrf.encode())
    floods = {
        "many files": [csrf_part] + [(file % i, b"x") for i in range(150)],
        "many fields": [csrf_part] + [(field % b"f%d" % i, b"v") for i in range(5000)],
        "a huge field": [(field % b"folder", b"d" * (8 * MiB)), csrf_part],
        "a huge field name": [(field % (b"n" * (8 * MiB)), b"v"), csrf_part],
        "a huge file name": [csrf_part, (file.replace(b"f%d", b"f" * (8 * MiB)), b"x")],
        "many part headers": [
            csrf_part,
            (b"\r\n".join([b"X-A: b"] * 100_000) + b"\r\n" + file % 1, b"x"),
        ],
        "a header line": [csrf_part, (b"X-A: " + b"b" * (8 * MiB) + b"\r\n" + file % 1, b"x")],
    }
    with measured(srv) as use:
        for what, parts in floods.items():
            body, ctype = _multipart(parts)
            r = web.request("POST", url, body, {"Content-Type": ctype})
            assert 400 <= r.status < 500, (what, r.status, r.text[:200])
            no_leak(r, srv)
        # Declared sizes: past the limit, or none at all (chunked).
        r = web.request("POST", url, b"", {"Content-Type": ctype, "Content-Length": str(2**31)})
        assert r.status == 413
        chunked: Any = iter([b"x" * 1000])  # http.client sends an iterable chunked
        r = web.request("POST", url, chunked, {"Content-Type": ctype})
        assert r.status in (400, 411)
        body, _ = _multipart([csrf_part])
        r = web.request("POST", url, body, {"Content-Type": "multipart/form-data"})  # no boundary
        assert 400 <= r.status < 500, r.status
    assert use.rss_grew < 60 * MiB and use.cpu < 10, use
    assert journal_head(srv, user.token, user.ns) == head


def test_a_stalled_upload_times_out_like_any_body(launch: Launch) -> None:
    """An upload whose body stops coming holds a connection, which the
    connection cap cannot take back while a request is in progress: it must
    time out as the API's and WebDAV's bodies do (``--body-timeout``)."""
    srv = launch(["--body-timeout", "1"])
    web, user = signed_in(srv)
    csrf = web.csrf()
    body, ctype = _multipart([(b'Content-Disposition: form-data; name="csrf"', csrf.encode())])
    host, port = host_port(srv)
    sock = socket.create_connection((host, port), timeout=10)
    try:
        sock.sendall(
            f"POST /web/ns/{user.ns}/upload HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Cookie: linesync_session={web.cookies['linesync_session']}\r\n"
            f"Content-Type: {ctype}\r\nContent-Length: {len(body) + 10**6}\r\n"
            f"X-CSRF-Token: {csrf}\r\n\r\n".encode()
            + body[: len(body) // 2]
        )
        started = time.monotonic()
        sock.settimeout(8)
        try:
            got = sock.recv(65536)  # the answer, or the close (b"")
        except TimeoutError:
            got = b"(nothing)"
        assert got.startswith(b"HTTP/1.1 408") or got == b"", got[:200]
        assert time.monotonic() - started < 6
    finally:
        sock.close()


def test_a_folder_of_long_paths_is_listed_in_bounded_memory(srv: ServerProc) -> None:
    web, user = signed_in(srv)
    chain = [f"d{i:03d}" + "x" * 246 for i in range(15)]
    folders = ["/".join(chain[: i + 1]) for i in range(len(chain))]
    deep = folders[-1]

    async def fill() -> None:
        async with Remote(srv.url, user.token) as r:
            await r.commit(user.ns, [dir_op(f) for f in folders])
            await put_file(r, user.ns, f"{deep}/seed", b"x")  # the chunk, once
            for start in range(0, 2000, 500):
                ops = [
                    file_op(f"{deep}/{i:06d}" + "y" * 200, b"x") for i in range(start, start + 500)
                ]
                assert all(x.status == "ok" for x in await r.commit(user.ns, ops))

    asyncio.run(fill())
    pid = pid_of(srv)
    before = rss(pid)
    reset_peak_rss(pid)
    r = web.get(f"/web/ns/{user.ns}/browse?path={quote(deep)}")
    grew = peak_rss(pid) - before
    assert r.status == 200
    assert len(r.body) < 16 * MiB and grew < 64 * MiB, (len(r.body), grew)


def test_a_flood_of_cookies_costs_no_more_than_a_request(srv: ServerProc) -> None:
    """Cookies as big as a request's head may be (64 KiB: the listener
    refuses more, tests/attack/test_connections.py), sent without any
    session, must not buy a fraction of a CPU second each."""
    web = Web(srv.url)
    flood = "a=b; " * 11_000  # 55 KB
    with measured(srv) as use:
        for path in ("/web/", "/web/signin", "/web/tokens", "/web/no-such-page"):
            r = web.get(path, headers={"Cookie": flood})
            assert r.status in (200, 303, 404), (path, r.status)
    assert use.cpu < 0.3, use


def test_error_pages_leak_nothing(srv: ServerProc) -> None:
    web, user = signed_in(srv)
    csrf = web.csrf()
    answers = [
        web.get("/web/no/such/page"),
        web.get(f"/web/ns/{user.ns}/download?path=%ff%fe"),
        web.get(f"/web/ns/{user.ns}/diff?path=a&a=x&b=1"),
        web.get(f"/web/ns/{user.ns}/browse?path=" + "a/" * 3000),
        web.get("/web/ns/99999999999999999999999/browse"),
        web.get("/web/ns/-1/browse"),
        web.request(
            "POST",
            "/web/tokens",
            b"csrf=%ff%fe&device=\xff",
            {"Content-Type": "application/x-www-form-urlencoded"},
        ),
        web.request(
            "POST",
            "/web/tokens",
            b"&".join([b"a=1"] * 5000),
            {"Content-Type": "application/x-www-form-urlencoded"},
        ),
        web.post(f"/web/ns/{user.ns}/restore", {"csrf": csrf, "path": "a", "jid": "1" * 40}),
        web.request("PUT", "/web/tokens", b"x"),
        web.request("DELETE", f"/web/ns/{user.ns}/browse"),
        web.get("/web/static/../../server/web/auth.py"),
        web.get("/web/static/%2e%2e/%2e%2e/context.py"),
    ]
    for r in answers:
        assert r.status < 500, (r.status, r.text[:300])
        no_leak(r, srv)
        assert "import " not in r.text and "def " not in r.text  # no source served
    assert re.search(r"lst_[A-Za-z0-9_-]{32}", "".join(r.text for r in answers)) is None
