"""The web interface end to end in a real headless Chromium: what a person
does, click by click, against a real server. One browser and one server for
the module; screenshots of the main pages go to docs/screenshots/."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from linesync.core.ids import unpack_ids
from tests.support.api import Remote, admin, file_op, new_token, ns_id, raw_frames, split
from tests.support.server import ServerProc
from tests.web import browser
from tests.web.browser import downloaded, screenshot, wait_for

pytestmark = pytest.mark.timeout(120)

By: Any = None


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    """A fresh server with two people, alice and bob, and alice's notes."""
    proc = ServerProc(tmp_path_factory.mktemp("web") / "server").start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    browser.need_browser()
    global By
    from selenium.webdriver.common.by import By as _By

    By = _By
    downloads = tmp_path_factory.mktemp("downloads")
    d = browser.start(downloads)
    d.downloads = downloads
    try:
        yield d
    finally:
        d.quit()


class Person:
    def __init__(self, srv: ServerProc, name: str) -> None:
        if name not in admin(srv, "user", "list").split():
            admin(srv, "user", "add", name)
        self.name = name
        self.token = new_token(srv, name, "laptop")
        self.ns = ns_id(srv, name)
        self.srv = srv

    def put(self, path: str, data: bytes) -> int:
        """Commit ``data`` at ``path`` as a client would, modified now."""

        async def go() -> int:
            async with Remote(self.srv.url, self.token) as r:
                cur = (await r.history(self.ns, path)).entries
                op = file_op(path, data, cur[0].jid if cur else 0, mtime_ns=time.time_ns())
                (res,) = await r.commit(self.ns, [op])
                if res.status == "missing":
                    want = set(unpack_ids(res.missing or ""))
                    frames = [f for f in raw_frames(split(data)) if f.chunk_id in want]
                    await r.upload(self.ns, frames)
                    (res,) = await r.commit(self.ns, [op])
                assert res.status == "ok" and res.jid, res
                return res.jid

        return asyncio.run(go())

    def mkdir(self, path: str) -> None:
        from tests.support.api import dir_op

        async def go() -> None:
            async with Remote(self.srv.url, self.token) as r:
                (res,) = await r.commit(self.ns, [dir_op(path)])
                assert res.status == "ok", res

        asyncio.run(go())


def go(d: Any, srv: ServerProc, path: str) -> None:
    d.get(srv.url.rstrip("/") + path)


def sign_in(d: Any, srv: ServerProc, who: Person) -> None:
    d.delete_all_cookies()
    go(d, srv, "/web/")
    wait_for(lambda: d.find_elements(By.ID, "signin"), what="the sign-in page")
    d.find_element(By.ID, "user").send_keys(who.name)
    d.find_element(By.ID, "token").send_keys(who.token)
    d.find_element(By.ID, "signin").click()
    wait_for(lambda: d.find_elements(By.ID, "namespaces"), what="the namespaces page")


def text_of(d: Any) -> str:
    return str(d.find_element(By.TAG_NAME, "body").text)


DROP = """
const [name, text, done] = [arguments[0], arguments[1], arguments[arguments.length - 1]];
const dt = new DataTransfer();
dt.items.add(new File([text], name, {type: "text/plain"}));
const zone = document.getElementById("dropzone");
for (const type of ["dragenter", "dragover", "drop"]) {
  zone.dispatchEvent(new DragEvent(type, {bubbles: true, cancelable: true, dataTransfer: dt}));
}
done(true);
"""


def test_a_day_with_the_web_interface(driver: Any, site: ServerProc) -> None:
    d = driver
    alice = Person(site, "alice")
    bob = Person(site, "bob")
    alice.mkdir("Recipes")
    alice.put("Recipes/bread.md", b"# Bread\n\n500 g flour\n350 g water\n10 g salt\n")
    alice.put("todo.txt", b"buy flour\ncall bob\n")
    alice.put("photo.jpg", bytes(range(256)) * 300)

    # Sign in.
    d.delete_all_cookies()
    go(d, site, "/web/")
    wait_for(lambda: d.find_elements(By.ID, "signin"), what="the sign-in page")
    screenshot(d, "signin")
    sign_in(d, site, alice)
    cookies = {c["name"]: c for c in d.get_cookies()}
    session = cookies["linesync_session"]
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert d.execute_script("return document.cookie") == ""  # invisible to scripts

    # Browse into a folder.
    d.find_element(By.LINK_TEXT, "alice").click()
    wait_for(lambda: d.find_elements(By.ID, "files-table"), what="the folder page")
    assert "todo.txt" in text_of(d)
    d.find_element(By.LINK_TEXT, "Recipes/").click()
    wait_for(lambda: "bread.md" in text_of(d), what="the Recipes folder")

    # Upload by drag and drop.
    soup = "# Soup\n\n1 onion\n2 carrots\n1 l water\n"
    d.execute_async_script(DROP, "soup.md", soup)
    wait_for(lambda: d.find_elements(By.LINK_TEXT, "soup.md"), what="the uploaded file")
    screenshot(d, "folder")

    # Download it.
    d.find_element(By.LINK_TEXT, "soup.md").click()
    assert downloaded(d.downloads, "soup.md") == soup.encode()

    # Edit it elsewhere (the API), then look at the history and the diff.
    alice.put("Recipes/soup.md", b"# Soup\n\n2 onions\n2 carrots\n1 l water\nsalt\n")
    d.find_element(By.CSS_SELECTOR, 'tr[data-path="Recipes/soup.md"] td.actions a').click()
    wait_for(lambda: d.find_elements(By.ID, "versions"), what="the history page")
    versions = d.find_elements(By.CSS_SELECTOR, "#versions li.version")
    assert len(versions) == 2
    screenshot(d, "history")
    d.find_element(By.CSS_SELECTOR, "a.diff-link").click()
    wait_for(lambda: d.find_elements(By.ID, "diff"), what="the diff page")
    removed = [e.text for e in d.find_elements(By.CSS_SELECTOR, "tr.del td.code")]
    added = [e.text for e in d.find_elements(By.CSS_SELECTOR, "tr.add td.code")]
    assert any("1 onion" in t for t in removed) and any("2 onions" in t for t in added)
    assert any("salt" in t for t in added)
    screenshot(d, "diff")

    # Restore the first version.
    d.back()
    wait_for(lambda: d.find_elements(By.CSS_SELECTOR, "button.restore"), what="restore button")
    d.find_element(By.CSS_SELECTOR, "button.restore").click()
    wait_for(lambda: d.find_elements(By.ID, "restored"), what="the restored notice")
    assert len(d.find_elements(By.CSS_SELECTOR, "#versions li.version")) == 3
    browser.clear(d.downloads)
    d.find_element(By.CSS_SELECTOR, "#versions li.current a[download]").click()
    assert downloaded(d.downloads, "soup.md") == soup.encode()

    # Create a read-only token, see it once, check it on the API, revoke it.
    d.find_element(By.LINK_TEXT, "Devices & tokens").click()
    wait_for(lambda: d.find_elements(By.ID, "token-form"), what="the tokens page")
    d.find_element(By.ID, "device").send_keys("phone")
    d.find_element(By.ID, "role-ro").click()
    d.find_element(By.ID, "create-token").click()
    box = wait_for(lambda: d.find_elements(By.ID, "new-token"), what="the new token")[0]
    new = box.get_attribute("value")
    assert re.fullmatch(r"lst_[A-Za-z0-9_-]{32}", new)
    assert new not in d.current_url
    from tests.web.webclient import Web

    me = Web(site.url).get("/v1/me", headers={"Authorization": f"Bearer {new}"})
    assert json.loads(me.body)["token_role"] == "ro"
    screenshot(d, "tokens")
    d.find_element(By.LINK_TEXT, "Devices & tokens").click()
    wait_for(lambda: d.find_elements(By.ID, "token-form"), what="the tokens page again")
    assert new not in d.page_source  # shown once only
    d.find_element(By.CSS_SELECTOR, 'tr[data-device="phone"] button').click()
    d.switch_to.alert.accept()
    wait_for(lambda: not d.find_elements(By.CSS_SELECTOR, 'tr[data-device="phone"]'),
             what="the revoked token gone")  # fmt: skip
    assert Web(site.url).get("/v1/me", headers={"Authorization": f"Bearer {new}"}).status == 401

    # Share the namespace with bob, read-only.
    go(d, site, f"/web/ns/{alice.ns}/share")
    d.find_element(By.ID, "share-user").send_keys("bob")
    d.find_element(By.ID, "share-ro").click()
    d.find_element(By.ID, "share-submit").click()
    wait_for(lambda: d.find_elements(By.CSS_SELECTOR, 'tr[data-user="bob"]'), what="bob listed")
    assert "read-only" in d.find_element(By.CSS_SELECTOR, 'tr[data-user="bob"]').text
    screenshot(d, "share")

    # Sign out: the session's token is revoked.
    d.find_element(By.ID, "signout").click()
    wait_for(lambda: d.find_elements(By.ID, "signin"), what="signed out")
    devices = json.loads(admin(site, "token", "list", "alice"))
    web_devices = [t for t in devices if str(t["device"]).startswith("web-")]
    assert web_devices and all(t["state"] == "revoked" for t in web_devices)

    # Bob signs in and sees alice's namespace, but cannot upload to it.
    sign_in(d, site, bob)
    assert "alice" in text_of(d)
    screenshot(d, "namespaces")
    d.find_element(By.LINK_TEXT, "alice").click()
    wait_for(lambda: d.find_elements(By.ID, "files-table"), what="alice's files, as bob")
    assert "todo.txt" in text_of(d) and not d.find_elements(By.ID, "dropzone")
    d.find_element(By.ID, "signout").click()
    wait_for(lambda: d.find_elements(By.ID, "signin"), what="bob signed out")


def test_conflict_copies_resolved_in_the_browser(driver: Any, site: ServerProc) -> None:
    from linesync.client.naming import conflict_name

    d = driver
    carol = Person(site, "carol")
    carol.put("plan.md", b"Monday: bread\nTuesday: soup\n")
    copy = conflict_name("plan.md", "phone", when=1_765_000_000)
    carol.put(copy, b"Monday: pasta\nTuesday: soup\n")
    sign_in(d, site, carol)
    go(d, site, f"/web/ns/{carol.ns}/browse")
    row = d.find_element(By.CSS_SELECTOR, "tr.conflict")
    assert "conflict copy of plan.md" in row.text
    d.find_element(By.ID, "conflicts-link").click()
    wait_for(lambda: d.find_elements(By.CSS_SELECTOR, "#conflicts li.conflict"), what="conflicts")
    screenshot(d, "conflicts")
    d.find_element(By.CSS_SELECTOR, "button.keep-copy").click()
    wait_for(lambda: "No conflict copies" in text_of(d), what="resolved")
    r = carol.srv  # the copy's content is now at plan.md
    from tests.web.webclient import Web

    web = Web(r.url)
    web.signin(carol.name, carol.token)
    assert web.get(f"/web/ns/{carol.ns}/download?path=plan.md").body == (
        b"Monday: pasta\nTuesday: soup\n"
    )


A11Y = """
const bad = [];
for (const el of document.querySelectorAll("input:not([type=hidden]), select, textarea")) {
  const byFor = el.id && document.querySelector('label[for="' + el.id + '"]');
  if (!byFor && !el.closest("label") && !el.getAttribute("aria-label")) bad.push(el.outerHTML);
}
for (const el of document.querySelectorAll("button, a")) {
  if (!el.textContent.trim() && !el.getAttribute("aria-label")) bad.push(el.outerHTML);
}
if (document.querySelectorAll("h1").length !== 1) bad.push("one h1 per page");
if (!document.documentElement.lang) bad.push("a lang attribute");
if (!document.querySelector("main")) bad.push("a main landmark");
return bad;
"""


def accessibility_problems(d: Any) -> list[str]:
    """Form fields without labels, buttons and links without names, headings."""
    return list(d.execute_script(A11Y))


PAGES = ["/web/", "/web/ns/{ns}/browse", "/web/ns/{ns}/browse?path=Recipes",
         "/web/ns/{ns}/history?path=Recipes/bread.md", "/web/tokens", "/web/ns/{ns}/share",
         "/web/ns/{ns}/conflicts"]  # fmt: skip


def test_usable_on_a_phone(driver: Any, site: ServerProc) -> None:
    """At 390x844: no page scrolls sideways, and the main controls are on screen
    and big enough to tap."""
    d = driver
    dave = Person(site, "dave")
    dave.mkdir("Recipes")
    v1 = dave.put("Recipes/bread.md", b"flour\nwater\n")
    v2 = dave.put("Recipes/bread.md", b"flour\nwater\nsalt\n")
    dave.put("a-rather-long-file-name-that-could-push-the-layout-sideways.txt", b"x\n")
    d.set_window_size(*browser.PHONE)
    d.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": browser.PHONE[0], "height": browser.PHONE[1], "deviceScaleFactor": 1,
         "mobile": True},
    )  # fmt: skip
    try:
        d.delete_all_cookies()
        go(d, site, "/web/signin")
        assert not accessibility_problems(d)
        sign_in(d, site, dave)
        diff = f"/web/ns/{{ns}}/diff?path=Recipes/bread.md&a={v1}&b={v2}"
        for page in [*PAGES, diff]:
            go(d, site, page.format(ns=dave.ns))
            wait_for(lambda: d.find_elements(By.ID, "main"), what=page)
            assert not accessibility_problems(d), page
            inner = d.execute_script("return window.innerWidth")
            scroll = d.execute_script("return document.documentElement.scrollWidth")
            assert inner == browser.PHONE[0] and scroll <= inner, (page, scroll, inner)
            for el in d.find_elements(By.CSS_SELECTOR, "main a, main button, main input, "
                                      "main select, header a, header button"):  # fmt: skip
                if not el.is_displayed():
                    continue
                rect = d.execute_script("return arguments[0].getBoundingClientRect().toJSON()", el)
                assert rect["left"] >= 0 and rect["right"] <= inner + 0.5, (page, el.text, rect)
            if page == "/web/ns/{ns}/browse?path=Recipes":
                screenshot(d, "phone-folder")
        # The upload control and sign-out can be tapped (44 px targets).
        go(d, site, f"/web/ns/{dave.ns}/browse")
        label = d.find_element(By.CSS_SELECTOR, "label[for=files]")
        assert label.is_displayed() and label.size["height"] >= 44
        signout = d.find_element(By.ID, "signout")
        assert signout.is_displayed() and signout.size["height"] >= 36
        signout.click()
        wait_for(lambda: d.find_elements(By.ID, "signin"), what="signed out on the phone")
    finally:
        d.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        d.set_window_size(*browser.DESKTOP)
