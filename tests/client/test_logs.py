"""Client commands log to a rotating file (0600) and, when asked, to stderr;
a token reaches neither."""

from __future__ import annotations

import logging
import os
import stat
import sys
from pathlib import Path

import pytest

from linesync.cli.logs import logging_to, redact
from linesync.client.config import FolderConfig
from tests.support.api import cli
from tests.support.server import ServerProc


@pytest.fixture
def log_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in list(os.environ):
        if var.startswith("LINESYNC_"):
            monkeypatch.delenv(var)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp_path / "state" / "linesync"


def _logs(log_dir: Path) -> str:
    return "".join(p.read_text() for p in sorted(log_dir.glob("linesync.log*")))


def _folder(tmp_path: Path, token: str = "lst_x", url: str = "http://127.0.0.1:9") -> Path:
    folder = tmp_path / "notes"
    FolderConfig(url, token, 1, "admin", "laptop").save(folder)
    return folder


def test_stderr_is_quiet_by_default_and_says_more_with_v(log_dir: Path, tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    rc, out, err = cli("conflicts", str(folder))
    assert rc == 0 and out.strip() == "no conflict copies" and err == "", err
    rc, _, err = cli("conflicts", str(folder), "-v")
    assert rc == 0 and "conflicts (pid" in err and "setting " not in err, err
    rc, _, err = cli("conflicts", str(folder), "-vv")
    assert rc == 0 and "setting log_limit = 20 (default)" in err, err
    # The file has the information line of every run, whatever stderr showed.
    log = (log_dir / "linesync.log").read_text()
    assert log.count("conflicts (pid") == 3, log
    mode = stat.S_IMODE((log_dir / "linesync.log").stat().st_mode)
    assert mode == 0o600, oct(mode)
    assert stat.S_IMODE(log_dir.stat().st_mode) & 0o077 == 0


def test_quiet_shows_only_errors_and_the_file_keeps_what_was_printed(
    log_dir: Path, tmp_path: Path
) -> None:
    folder = _folder(tmp_path)  # a server that is not there
    rc, _, err = cli("sync", str(folder), "-q", "-vv", "--retry-for", "0")
    assert rc == 5 and "cannot reach" in err, err
    assert "setting " not in err and "(pid" not in err  # -q wins over -vv on stderr
    log = (log_dir / "linesync.log").read_text()
    assert "cannot reach http://127.0.0.1:9" in log, log  # what the user saw is in the file


def test_the_log_file_rotates_and_every_file_is_private(
    log_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LINESYNC_LOG_MAX_BYTES", "400")
    monkeypatch.setenv("LINESYNC_LOG_BACKUPS", "2")
    monkeypatch.setenv("LINESYNC_LOG_LEVEL", "debug")  # a dozen lines a run
    folder = _folder(tmp_path)
    for _ in range(6):
        assert cli("conflicts", str(folder))[0] == 0
    names = sorted(p.name for p in log_dir.iterdir())
    assert names == ["linesync.log", "linesync.log.1", "linesync.log.2"], names
    for p in log_dir.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, (p, oct(p.stat().st_mode))
        assert p.stat().st_size <= 400 + 300, p  # one record may pass the limit


def test_a_log_file_that_cannot_be_written_is_said_once_and_the_command_runs(
    log_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("LINESYNC_LOG_FILE", str(tmp_path / "a-file" / "linesync.log"))
    rc, out, err = cli("conflicts", str(_folder(tmp_path)))
    assert rc == 0 and "no conflict copies" in out
    assert err.count("cannot write the log file") == 1 and "Traceback" not in err, err


def test_a_token_never_reaches_the_log(
    log_dir: Path, tmp_path: Path, server: ServerProc, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LINESYNC_LOG_LEVEL", "debug")
    token = server.new_token("admin", "laptop")
    secret = token.removeprefix("lst_")
    folder = tmp_path / "A"
    runs = [
        cli("init", str(folder), "--server", server.url, "--token", token, "-vv"),
        cli("sync", str(folder), "-vv"),
        cli("status", str(folder), "-vv"),
        cli("config", "show", "--folder", str(folder)),
    ]
    (folder / "n.md").write_text("x\n")
    runs.append(cli("sync", str(folder), "-vv"))
    runs.append(cli("log", str(folder), "n.md", "-vv"))
    assert [r[0] for r in runs] == [0] * 6, runs
    server.admin("token", "revoke", "admin", "--device", "laptop")
    runs.append(cli("sync", str(folder), "-vv"))  # refused: the error is logged
    assert runs[-1][0] != 0 and "unauthenticated" in runs[-1][2], runs[-1]
    # Whatever logs it, a token-shaped string is masked.
    with logging_to(log_dir / "linesync.log", level="debug", max_bytes=0, backups=0,
                    verbose=2, quiet=False):  # fmt: skip
        logging.getLogger("linesync.client").warning("Authorization: Bearer %s", token)
        logging.getLogger("linesync.client").info("config %s", {"token": token})
        print(f"using {token}", file=sys.stderr)
        print("\x1b[2K\rdownloading 50% (a progress bar)", file=sys.stderr)
    log = _logs(log_dir)
    assert "sync (pid" in log and "unauthenticated" in log, log  # it did log
    assert log.count("****") >= 3, log
    assert secret not in log and token not in log
    assert "using lst_****" in log and "a progress bar" not in log
    for _rc, _out, err in runs:
        assert secret not in err


@pytest.mark.parametrize(
    ("line", "masked"),
    [
        ("Bearer lst_abcDEF123_-xyz", "Bearer ****"),
        ("using lst_abcDEF123_-xyz now", "using lst_**** now"),
        ("Authorization: Bearer abcdefghijkl", "Authorization: Bearer ****"),
        ("token=abcdefghijklmnop", "token=****"),
        ("lst_Zq9", "lst_Zq9"),  # too short to be one
        ("a token create command", "a token create command"),
    ],
)
def test_redact(line: str, masked: str) -> None:
    assert redact(line) == masked
