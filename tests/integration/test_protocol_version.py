"""Protocol version negotiation (PROTOCOL.md §1.4): the server names the
versions it speaks on every answer and refuses a client that speaks none of
them; the client turns any mismatch into one clear line for the user. A
request without the header (curl, WebDAV, a browser) is served as before."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from linesync.protocol import version
from tests.support.api import Api, User, cli
from tests.support.server import ServerProc

UPGRADE = "upgrade linesync on this device (pip install -U linesync)"


Answer = tuple[int, dict[str, str], dict[str, object]]


async def _get(url: str, path: str, token: str | None, claim: str | None) -> Answer:
    headers = {} if claim is None else {version.HEADER: claim}
    async with Api(url, token) as api:
        r = await api.get(path, headers=headers)
    return r.status, r.headers, json.loads(r.body)


def test_requests_without_the_header_are_served_and_every_answer_names_the_versions(
    srv: ServerProc, user: User
) -> None:
    status, headers, body = asyncio.run(_get(srv.url, "/healthz", None, None))
    assert status == 200 and body["protocol"] == [1], body
    assert headers["linesync-protocol"] == "1"
    status, headers, body = asyncio.run(_get(srv.url, "/v1/me", user.token, None))
    assert status == 200 and body["protocol"] == [1] and body["user"] == user.name, body
    assert headers["linesync-protocol"] == "1"
    status, headers, body = asyncio.run(_get(srv.url, "/v1/nowhere", user.token, None))
    assert status == 404 and headers["linesync-protocol"] == "1"
    # A long-poll that waited its time out (parked, then answered) names them too.
    _, _, me = asyncio.run(_get(srv.url, "/v1/me", user.token, None))
    (cursor,) = [n["cursor"] for n in me["namespaces"] if n["id"] == user.ns]  # type: ignore[attr-defined]
    started = time.monotonic()
    poll = f"/v1/ns/{user.ns}/list?wait=1&cursor={cursor}"
    status, headers, body = asyncio.run(_get(srv.url, poll, user.token, "1"))
    assert time.monotonic() - started >= 0.9  # it was parked
    assert status == 200 and headers["linesync-protocol"] == "1" and body["entries"] == [], body


@pytest.mark.parametrize(
    ("claim", "status", "code", "says"),
    [
        ("1", 200, None, None),
        ("0, 1", 200, None, None),
        ("1,7", 200, None, None),
        ("0", 426, "client_too_old", UPGRADE),
        ("0, 0", 426, "client_too_old", "the server speaks protocol version 1"),
        ("2", 400, "client_too_new", "upgrade the server"),
        ("2, 3", 400, "client_too_new", "this client versions 2, 3"),
        ("one", 400, "bad_request", "like 1"),
        ("", 400, "bad_request", "like 1"),
        ("1" * 200, 400, "bad_request", "longer than"),
    ],
)  # fmt: skip
def test_the_server_refuses_a_client_that_speaks_none_of_its_versions(
    srv: ServerProc, user: User, claim: str, status: int, code: str | None, says: str | None
) -> None:
    for path, token in (("/v1/me", user.token), ("/healthz", None)):
        got, headers, body = asyncio.run(_get(srv.url, path, token, claim))
        assert got == status, (path, body)
        assert headers["linesync-protocol"] == "1"
        if code is not None:
            err = body["error"]
            assert isinstance(err, dict) and err["code"] == code, body
            assert says is not None and says in err["message"], err


def test_an_old_client_gets_one_clear_line_from_linesync_sync(
    srv: ServerProc, user: User, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "notes"
    rc, out, err = cli("init", str(folder), "--server", srv.url, "--token", user.token)
    assert rc == 0, err
    (folder / "recipe.md").write_text("flour\n")
    monkeypatch.setattr(version, "CLIENT_SPEAKS", (0,))  # this client claims version 0
    rc, out, err = cli("sync", str(folder))
    assert rc == 1, (out, err)
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert UPGRADE in lines[0] and "client_too_old" in lines[0], lines
    assert f"the server at {srv.url} is newer" in lines[0], lines
    # The server refused it: nothing reached the journal.
    status, _, body = asyncio.run(_get(srv.url, f"/v1/ns/{user.ns}/head", user.token, None))
    assert status == 200 and body["jid"] == 0, body
    # Upgraded (the current version again), the same folder syncs.
    monkeypatch.setattr(version, "CLIENT_SPEAKS", version.SERVER_SPEAKS)
    rc, out, err = cli("sync", str(folder))
    assert rc == 0, (out, err)
    assert "1 uploaded" in out


def test_an_old_client_watching_stops_with_the_same_line(
    srv: ServerProc, user: User, tmp_path: Path
) -> None:
    folder = tmp_path / "w"
    assert cli("init", str(folder), "--server", srv.url, "--token", user.token)[0] == 0
    # In a process of its own (it handles signals), claiming version 0.
    claim = (
        "import sys; from linesync.protocol import version; version.CLIENT_SPEAKS = (0,); "
        "from linesync.cli.main import main; sys.exit(main(sys.argv[1:]))"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", claim, "sync", str(folder), "--watch"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail("sync --watch kept running against a server it cannot speak to")
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert UPGRADE in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_init_against_an_older_server_says_so(
    srv: ServerProc, user: User, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(version, "CLIENT_SPEAKS", (2,))  # a client from the future
    folder = tmp_path / "f"
    rc, out, err = cli("init", str(folder), "--server", srv.url, "--token", user.token)
    assert rc == 1 and "Traceback" not in err, (out, err)
    assert f"the server at {srv.url} is older than this linesync" in err, err
    assert "upgrade the server" in err
    assert not (folder / ".linesync").exists()


@contextlib.contextmanager
def _future_server(versions: str) -> Iterator[str]:
    """A server that speaks only protocol ``versions`` (a later linesync's):
    every answer names them, and a request from this client is refused."""

    async def answer(request: web.Request) -> web.Response:
        body = {"error": {"code": "client_too_old", "message": "protocol 2 only"}}
        return web.json_response(body, status=426, headers={version.HEADER: versions})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = runner.addresses[0][1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.run_until_complete(runner.cleanup())
        loop.close()


def test_a_server_that_speaks_only_a_newer_version_makes_the_client_say_so(
    tmp_path: Path,
) -> None:
    with _future_server("2, 3") as url:
        rc, out, err = cli("init", str(tmp_path / "f"), "--server", url, "--token", "lst_x")
    assert rc == 1 and "Traceback" not in err, (out, err)
    line = err.strip()
    assert "\n" not in line, err
    assert f"the server at {url} is newer than this linesync" in line, line
    assert "it speaks protocol versions 2, 3, this client version 1" in line, line
    assert UPGRADE in line


# -- the rule itself, pure -------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "speaks", "code"),
    [
        (None, (1,), None),  # a server from before negotiation speaks 1
        (None, (2,), "client_too_new"),
        ("1", (1,), None),
        ("1, 2", (2, 3), None),
        ("2", (1,), "client_too_old"),
        ("2, 3", (1,), "client_too_old"),
        ("0", (1,), "client_too_new"),
        ("1, 3", (2,), "client_too_old"),  # no overlap: the newest decides
        ("garbage", (1,), None),  # a proxy's header: ignored
    ],
)
def test_the_client_rule(header: str | None, speaks: tuple[int, ...], code: str | None) -> None:
    got = version.client_verdict(header, "http://h", speaks)
    assert (got.code if got else None) == code
    if got is not None:
        assert "http://h" in got.message and "\n" not in got.message


@pytest.mark.parametrize(
    ("text", "versions"),
    [("1", (1,)), (" 2 ,1 ", (1, 2)), ("1,1", (1,)), ("9999", (9999,))],
)
def test_parse_versions(text: str, versions: tuple[int, ...]) -> None:
    assert version.parse_versions(text) == versions
    assert version.parse_versions(version.format_versions(versions)) == versions


@pytest.mark.parametrize("text", ["", "1,", "-1", "1.0", "10000", "²", "1;2", "x" * 101])
def test_parse_versions_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        version.parse_versions(text)
