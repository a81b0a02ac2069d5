"""Web sessions across server processes sharing PostgreSQL and S3: a session
is a token in the shared database, so any process accepts it, and signing
out at one ends it at all."""

from __future__ import annotations

from tests.support.api import admin, new_user
from tests.support.deploy import Deployment, deployment  # noqa: F401  (a fixture)
from tests.web.webclient import Web


def test_a_session_made_at_one_process_works_and_ends_at_another(
    deployment: Deployment,  # noqa: F811
) -> None:
    a, b = deployment.servers[:2]
    user = new_user(a)
    at_a = Web(a.url)
    assert at_a.signin(user.name, user.token).status == 303
    at_b = Web(b.url, cookies=at_a.cookies)  # the same browser, another process
    page = at_b.get(f"/web/ns/{user.ns}/browse")
    assert page.status == 200
    body = b"written through process b\n"
    r = at_b.upload(
        f"/web/ns/{user.ns}/upload", {"csrf": page.csrf(), "folder": ""}, [("files", "n.txt", body)]
    )
    assert r.status == 303
    assert at_a.get(f"/web/ns/{user.ns}/download?path=n.txt").body == body
    token = at_a.cookies["linesync_session"]
    assert at_b.post("/web/signout", {"csrf": page.csrf()}).status == 303
    again = Web(a.url, cookies={"linesync_session": token})
    assert again.get("/web/").status == 303
    assert '"revoked"' in admin(a, "token", "list", user.name)
