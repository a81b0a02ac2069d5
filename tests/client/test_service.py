"""``linesync service``: the systemd unit and launchd plist it writes (their
text, checked by ``systemd-analyze verify`` when that tool is here), where
they go, that no token is ever in them, and install / status / uninstall."""

from __future__ import annotations

import contextlib
import io
import os
import plistlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from linesync.cli.main import main as cli_main
from linesync.client import service as sv
from linesync.client.api import Client
from tests.support.server import ServerProc

TRICKY = [
    "/home/ann/Notes",
    "/home/ann/My Notes",
    '/home/ann/it\'s 100% "mine"',
    "/home/ann/$HOME and ${x}",
    "/home/ann/back\\slash;semi",
]


def _cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli_main(list(args))
    return code, out.getvalue(), err.getvalue()


def _verify(unit: Path, tmp: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        if os.environ.get("CI") == "true":
            pytest.fail("systemd-analyze is missing (apt-get install systemd)")
        pytest.skip("systemd-analyze is not on this machine: the unit was not verified")
    runtime = tmp / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env = dict(os.environ, XDG_RUNTIME_DIR=str(runtime))
    for mode in ([], ["--user"]):
        done = subprocess.run(
            [tool, *mode, "verify", str(unit)], capture_output=True, text=True, env=env,
            timeout=60,
        )  # fmt: skip
        assert done.returncode == 0 and not done.stderr.strip(), (mode, done.stderr)


@pytest.mark.parametrize("folder", TRICKY)
def test_systemd_unit_text(folder: str, tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "linesync"]
    text = sv.systemd_unit(cmd, Path(folder))
    lines = text.splitlines()
    start = [x for x in lines if x.startswith("ExecStart=")]
    assert len(start) == 1 and start[0].startswith(f"ExecStart={sys.executable} -m linesync ")
    assert " sync --watch " in start[0]
    assert "Restart=on-failure" in lines and f"RestartSec={sv.RESTART_SEC}" in lines
    assert "WantedBy=default.target" in lines
    assert sv.folder_of(text) == folder  # quoting and escapes read back
    unit = tmp_path / "linesync-t.service"
    unit.write_text(text)
    _verify(unit, tmp_path)


def test_a_broken_unit_fails_verification(tmp_path: Path) -> None:
    """(The check above can fail: a unit with a relative ExecStart is refused.)"""
    unit = tmp_path / "linesync-bad.service"
    unit.write_text(sv.systemd_unit(["linesync/relative"], Path("/x")))
    with pytest.raises(AssertionError):
        _verify(unit, tmp_path)


@pytest.mark.parametrize("folder", TRICKY)
def test_launchd_plist(folder: str) -> None:
    text = sv.launchd_plist(["/usr/local/bin/linesync"], Path(folder), "org.linesync.x",
                            Path("/Users/ann/Library/Logs/x.log"))  # fmt: skip
    data = plistlib.loads(text.encode())
    assert data["ProgramArguments"] == ["/usr/local/bin/linesync", "sync", "--watch", folder]
    assert data["Label"] == "org.linesync.x" and data["RunAtLoad"] is True
    assert data["KeepAlive"] == {"SuccessfulExit": False}
    assert sv.folder_of(text) == folder


def test_names_and_commands() -> None:
    assert sv.service_name(Path("/home/ann/My Notes")) == "linesync-My-Notes"
    assert sv.service_name(Path("/")) == "linesync-folder"
    assert sv.check_name("work") == "linesync-work"
    with pytest.raises(ValueError, match="not a service name"):
        sv.check_name("../etc/x")
    assert sv.linesync_command("/opt/venv/bin/linesync") == ["/opt/venv/bin/linesync"]
    assert sv.linesync_command("/usr/lib/python3/pytest", "/usr/bin/python3") == [
        "/usr/bin/python3", "-m", "linesync",
    ]  # fmt: skip


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    return home


def test_install_status_uninstall(
    server: ServerProc, tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = server.new_token("admin", "alpha")
    folder = Client.init(tmp_path / "My Notes", server=server.url, token=token).folder
    unit = home / ".config" / "systemd" / "user" / "linesync-My-Notes.service"
    code, out, _ = _cli("service", "install", str(folder), "--dry-run", "--for", "systemd")
    assert code == 0 and not unit.exists()  # a dry run writes nothing
    assert f"# would write {unit}" in out and "ExecStart=" in out
    code, out, _ = _cli("service", "install", str(folder), "--for", "systemd")
    assert code == 0, out
    text = unit.read_text()
    assert token not in text and "lst_" not in text  # the token stays in the folder
    assert sv.folder_of(text) == str(folder)
    assert f"ExecStart={sys.executable} -m linesync sync --watch" in text  # absolute
    assert "systemctl --user daemon-reload && systemctl --user enable --now " in out
    assert "linesync-My-Notes.service" in out
    _verify(unit, tmp_path)
    # The same again is fine; another folder under the same name is refused.
    assert _cli("service", "install", str(folder), "--for", "systemd")[0] == 0
    other = Client.init(tmp_path / "x" / "My Notes", server=server.url, token=token).folder
    code, _, err = _cli("service", "install", str(other), "--for", "systemd")
    assert code == 2 and "already keeps" in err and "--name" in err
    code, out, _ = _cli("service", "install", str(other), "--for", "systemd", "--name", "two")
    assert code == 0 and (unit.parent / "linesync-two.service").exists()
    # XDG_CONFIG_HOME is where the user's systemd looks.
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert _cli("service", "install", str(folder), "--for", "systemd")[0] == 0
    assert (tmp_path / "xdg" / "systemd" / "user" / "linesync-My-Notes.service").exists()
    monkeypatch.delenv("XDG_CONFIG_HOME")
    code, out, _ = _cli("service", "status", str(folder), "--for", "systemd")
    assert code == 0 and f"keeps in sync: {folder}" in out
    code, out, _ = _cli("service", "uninstall", str(folder), "--for", "systemd")
    assert code == 0 and not unit.exists()
    assert "systemctl --user disable --now linesync-My-Notes.service" in out
    code, out, _ = _cli("service", "status", str(folder), "--for", "systemd")
    assert code == 1 and "does not exist" in out
    code, _, err = _cli("service", "uninstall", str(folder), "--for", "systemd")
    assert code == 1 and "no service" in err


def test_launchd_install_goes_to_launch_agents(
    server: ServerProc, tmp_path: Path, home: Path
) -> None:
    token = server.new_token("admin", "alpha")
    folder = Client.init(tmp_path / "Notes", server=server.url, token=token).folder
    code, out, _ = _cli("service", "install", str(folder), "--for", "launchd")
    assert code == 0, out
    plist = home / "Library" / "LaunchAgents" / "org.linesync.linesync-Notes.plist"
    data = plistlib.loads(plist.read_bytes())
    assert data["ProgramArguments"][-3:] == ["sync", "--watch", str(folder)]
    assert token not in plist.read_text()
    assert f"launchctl load -w {plist}" in out


def test_install_refuses_a_folder_that_is_not_synced(tmp_path: Path, home: Path) -> None:
    code, _, err = _cli("service", "install", str(tmp_path), "--for", "systemd")
    assert code == 2 and "not a linesync folder" in err
    assert not (home / ".config").exists()


def test_enable_and_disable_run_the_service_managers_commands(
    server: ServerProc, tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--enable / --disable run what install prints. This machine has no user
    systemd to talk to, so a stand-in ``systemctl`` on the PATH records its
    arguments (and can fail, to show a failure is reported)."""
    token = server.new_token("admin", "alpha")
    folder = Client.init(tmp_path / "Notes", server=server.url, token=token).folder
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    tool = bin_dir / "systemctl"
    tool.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexit ${{FAKE_EXIT:-0}}\n')
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    code, out, _ = _cli("service", "install", str(folder), "--for", "systemd", "--enable")
    assert code == 0, out
    assert calls.read_text().splitlines() == [
        "--user daemon-reload", "--user enable --now linesync-Notes.service",
    ]  # fmt: skip
    code, out, _ = _cli("service", "status", str(folder), "--for", "systemd")
    assert code == 0 and "is-enabled" in out and "is-active" in out
    monkeypatch.setenv("FAKE_EXIT", "1")
    code, _, err = _cli("service", "install", str(folder), "--for", "systemd", "--enable")
    assert code == 1 and "systemctl failed (exit 1)" in err
    monkeypatch.delenv("FAKE_EXIT")
    calls.unlink()
    code, out, _ = _cli("service", "uninstall", str(folder), "--for", "systemd", "--disable")
    assert code == 0 and "removed" in out
    assert calls.read_text().splitlines() == [
        "--user disable --now linesync-Notes.service", "--user daemon-reload",
    ]  # fmt: skip
    assert not (home / ".config" / "systemd" / "user" / "linesync-Notes.service").exists()
