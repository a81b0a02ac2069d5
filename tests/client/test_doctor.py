"""``linesync doctor``: the checks as pure functions over facts (tables), and
the whole command against a real server: healthy, unreachable, a revoked
token, a token file others can read, https:// to a plain-HTTP server."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from linesync.cli.main import main as cli_main
from linesync.client import doctor as dr
from linesync.client.api import Client
from linesync.client.doctor import Facts, Reach, Verdict
from tests.support.server import ServerProc

GiB = 2**30
OK = Reach("http://127.0.0.1:8440", "ok", "", 200, "ann", "laptop", (1,), 0.4)
HEALTHY = Facts(
    folder="/home/ann/Notes",
    platform="linux",
    max_user_watches=65536,
    max_user_instances=128,
    dir_count=100,
    state_mode=0o700,
    config_mode=0o600,
    free_bytes=50 * GiB,
    pending_download_bytes=0,
    namespace=1,
    namespace_name="ann",
    reaches=(OK,),
)


def _verdicts(f: Facts) -> dict[str, Verdict]:
    return {c.name: c.verdict for c in dr.run_checks(f)}


def test_a_healthy_setup_passes_every_check() -> None:
    checks = dr.run_checks(HEALTHY)
    assert dr.passed(checks), checks
    assert {c.verdict for c in checks} == {Verdict.OK}


@pytest.mark.parametrize(
    ("dirs", "limit", "verdict"),
    [(100, 65536, Verdict.OK), (60000, 65536, Verdict.WARN), (65536, 65536, Verdict.FAIL),
     (200000, 8192, Verdict.FAIL)],
)  # fmt: skip
def test_inotify_watches(dirs: int, limit: int, verdict: Verdict) -> None:
    c = dr.check_watches(replace(HEALTHY, dir_count=dirs, max_user_watches=limit))
    assert c.verdict is verdict
    if verdict is not Verdict.OK:
        assert "max_user_watches" in c.fix and "sysctl" in c.fix
        assert str(max(524288, 2 * dirs)) in c.fix


@pytest.mark.parametrize(
    ("facts", "verdict"),
    [
        (replace(HEALTHY, max_user_instances=8), Verdict.WARN),
        (replace(HEALTHY, max_user_instances=128), Verdict.OK),
        (replace(HEALTHY, platform="darwin", max_user_instances=None), Verdict.SKIP),
    ],
)
def test_inotify_instances(facts: Facts, verdict: Verdict) -> None:
    assert dr.check_instances(facts).verdict is verdict
    assert dr.check_watches(facts).verdict in (Verdict.OK, Verdict.SKIP)


@pytest.mark.parametrize(
    ("skew", "verdict", "said"),
    [(0.4, Verdict.OK, "within 0 s"), (59.0, Verdict.OK, "within 59 s"),
     (61.0, Verdict.WARN, "61 s behind"), (-3600.0, Verdict.WARN, "3600 s ahead of"),
     (None, Verdict.SKIP, "no answer")],
)  # fmt: skip
def test_clock_skew(skew: float | None, verdict: Verdict, said: str) -> None:
    c = dr.check_clock(replace(HEALTHY, reaches=(replace(OK, skew=skew),)))
    assert c.verdict is verdict and said in c.message
    if verdict is Verdict.WARN:
        assert "timedatectl set-ntp true" in c.fix
    # A refused token still answers with the server's time.
    refused = replace(OK, kind="unauthenticated", skew=skew)
    assert dr.check_clock(replace(HEALTHY, reaches=(refused,))).verdict is verdict
    # No answer at all: nothing to compare with.
    gone = Reach(OK.url, "refused", "connection refused")
    assert dr.check_clock(replace(HEALTHY, reaches=(gone,))).verdict is Verdict.SKIP


@pytest.mark.parametrize(
    ("changes", "verdict", "said"),
    [
        ({}, Verdict.OK, ""),
        ({"config_mode": 0o644}, Verdict.FAIL, "config.json is 0644 (want 0600)"),
        ({"state_mode": 0o755}, Verdict.FAIL, ".linesync is 0755 (want 0700)"),
        ({"config_mode": None}, Verdict.FAIL, "missing"),
    ],
)
def test_state_permissions(changes: dict[str, Any], verdict: Verdict, said: str) -> None:
    checks = {c.name: c for c in dr.check_permissions(replace(HEALTHY, **changes))}
    c = checks["state permissions"]
    assert c.verdict is verdict and said in c.message
    if verdict is Verdict.FAIL and changes.get("config_mode") is not None:
        assert "chmod 600" in c.fix and "revoke" in c.fix


@pytest.mark.parametrize(
    ("readable", "writable", "said"), [(False, True, "cannot read"), (True, False, "cannot write")]
)
def test_folder_permissions(readable: bool, writable: bool, said: str) -> None:
    f = replace(HEALTHY, readable=readable, writable=writable)
    c = {c.name: c for c in dr.check_permissions(f)}["folder permissions"]
    assert c.verdict is Verdict.FAIL and said in c.message and "chmod u+rwx" in c.fix


@pytest.mark.parametrize(
    ("free", "pending", "verdict"),
    [(50 * GiB, 0, Verdict.OK), (GiB // 2, 0, Verdict.WARN), (5 * GiB, 6 * GiB, Verdict.FAIL),
     (GiB // 2, GiB, Verdict.FAIL), (None, 0, Verdict.SKIP)],
)  # fmt: skip
def test_free_space(free: int | None, pending: int, verdict: Verdict) -> None:
    c = dr.check_space(replace(HEALTHY, free_bytes=free, pending_download_bytes=pending))
    assert c.verdict is verdict
    if verdict is Verdict.FAIL:
        assert "to download here" in c.message and "exclude add" in c.fix


@pytest.mark.parametrize(
    ("reach", "server", "token", "fix"),
    [
        (OK, Verdict.OK, Verdict.OK, ""),
        (Reach(OK.url, "refused", "connection refused"), Verdict.FAIL, Verdict.SKIP,
         "is the server running"),
        (Reach(OK.url, "dns", "nas.local: host not found"), Verdict.FAIL, Verdict.SKIP,
         "host name"),
        (Reach(OK.url, "timeout", "no answer in 15 s"), Verdict.FAIL, Verdict.SKIP, "firewall"),
        (Reach(OK.url, "tls", "[SSL: WRONG_VERSION_NUMBER] wrong version number"), Verdict.FAIL,
         Verdict.SKIP, "use http://"),
        (Reach(OK.url, "tls", "certificate verify failed: self-signed certificate"),
         Verdict.FAIL, Verdict.SKIP, "SSL_CERT_FILE"),
        (Reach(OK.url, "not_linesync", "HTTP 404"), Verdict.FAIL, Verdict.SKIP, "http:// vs"),
        (replace(OK, kind="unauthenticated", detail="token revoked"), Verdict.OK, Verdict.FAIL,
         "linesync token create"),
        (replace(OK, namespaces=(7,)), Verdict.OK, Verdict.FAIL, "namespace share ann"),
    ],
)  # fmt: skip
def test_server_and_token(reach: Reach, server: Verdict, token: Verdict, fix: str) -> None:
    f = replace(HEALTHY, reaches=(reach,))
    s = dr.check_server(f)[0]
    t = dr.check_token(f)
    assert (s.verdict, t.verdict) == (server, token)
    assert fix in s.fix + t.fix
    assert dr.passed(dr.run_checks(f)) == (server is token is Verdict.OK)


def test_plain_http_to_another_computer_is_a_warning() -> None:
    far = replace(OK, url="http://nas.example.org:8440")
    checks = dr.check_server(replace(HEALTHY, reaches=(far,)))
    assert [c.verdict for c in checks] == [Verdict.OK, Verdict.WARN]
    assert "https" in checks[1].fix
    for url in ("http://localhost:8440", "http://[::1]:8440", "https://nas.example.org"):
        assert len(dr.check_server(replace(HEALTHY, reaches=(replace(OK, url=url),)))) == 1


# -- the command, against a real server ------------------------------------------------


def _doctor(folder: Path) -> tuple[int, dict[str, Any], str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli_main(["doctor", str(folder), "--json"])
    data = json.loads(out.getvalue())
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli_main(["doctor", str(folder)]) == code
    return code, {c["name"]: c for c in data["checks"]}, out.getvalue()


@pytest.fixture
def folder(server: ServerProc, tmp_path: Path) -> Path:
    token = server.new_token("admin", "alpha")
    return Client.init(tmp_path / "A", server=server.url, token=token).folder


def test_doctor_on_a_healthy_folder(folder: Path, server: ServerProc) -> None:
    (folder / "a" / "b").mkdir(parents=True)
    (folder / "a" / "big.bin").write_bytes(b"x" * 5000)
    code, checks, text = _doctor(folder)
    assert checks[f"server {server.url}"]["verdict"] == "ok"
    assert checks["token"]["verdict"] == "ok" and "device alpha" in checks["token"]["message"]
    assert checks["clock"]["verdict"] == "ok"  # same machine: within a second or two
    assert checks["state permissions"]["verdict"] == "ok"
    assert checks["folder permissions"]["verdict"] == "ok"
    assert checks["free space"]["verdict"] in ("ok", "warn")
    if Path("/proc/sys/fs/inotify/max_user_watches").exists():
        assert "3 folders to watch" in checks["inotify watches"]["message"]
    all_ok = all(c["verdict"] in ("ok", "skip") for c in checks.values())
    assert code == (0 if all_ok else 1)
    assert ("all checks passed" in text) == all_ok


def test_doctor_when_the_server_is_down(folder: Path, server: ServerProc) -> None:
    server.stop()
    code, checks, text = _doctor(folder)
    assert code == 1
    c = checks[f"server {server.url}"]
    assert c["verdict"] == "fail" and "not reachable" in c["message"]
    assert "is the server running" in c["fix"]
    assert checks["token"]["verdict"] == "skip" and checks["clock"]["verdict"] == "skip"
    assert "FAIL" in text and "what to do: is the server running" in text


def test_doctor_with_a_revoked_token(folder: Path, server: ServerProc) -> None:
    server.admin("token", "revoke", "admin", "--device", "alpha")
    code, checks, text = _doctor(folder)
    assert code == 1
    assert checks[f"server {server.url}"]["verdict"] == "ok"
    t = checks["token"]
    assert t["verdict"] == "fail" and "refuses the token" in t["message"]
    assert "linesync token create" in t["fix"] and "config.json" in t["fix"]
    assert checks["clock"]["verdict"] == "skip"  # (a refusal carries no Date)


def test_doctor_finds_a_token_file_others_can_read(folder: Path, server: ServerProc) -> None:
    config = folder / ".linesync" / "config.json"
    for server_up in (True, False):
        config.chmod(0o644)
        if not server_up:
            server.stop()  # (its look at the server, through the index, tightens them)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert cli_main(["doctor", str(folder), "--json"]) == 1
        c = {c["name"]: c for c in json.loads(out.getvalue())["checks"]}["state permissions"]
        assert c["verdict"] == "fail" and "0644" in c["message"]
        assert "revoke" in c["fix"]
        if server_up:
            assert "tightened them now" in c["fix"] and config.stat().st_mode & 0o777 == 0o600
        else:
            assert "chmod 600" in c["fix"] and config.stat().st_mode & 0o777 == 0o644


def test_https_to_a_plain_http_server_is_explained(server: ServerProc) -> None:
    url = server.url.replace("http://", "https://")
    r = asyncio.run(dr.reach(url, server.token))
    assert r.kind == "tls", r
    check = dr.check_server(replace(HEALTHY, reaches=(r,)))[0]
    assert check.verdict is Verdict.FAIL and "use http://" in check.fix


def test_a_clock_two_minutes_off_is_caught_from_the_servers_date(server: ServerProc) -> None:
    """The server's Date header against a local clock that runs 120 s late (an
    injected clock: the one seam; the server and its answer are real)."""
    import time

    r = asyncio.run(dr.reach(server.url, server.token, clock=lambda: time.time() - 120))
    assert r.kind == "ok" and r.skew is not None and 118 <= r.skew <= 122, r
    c = dr.check_clock(replace(HEALTHY, reaches=(r,)))
    assert c.verdict is Verdict.WARN and "s behind the server's" in c.message
    r = asyncio.run(dr.reach(server.url, server.token))
    assert r.skew is not None and abs(r.skew) <= 2
    assert dr.check_clock(replace(HEALTHY, reaches=(r,))).verdict is Verdict.OK
