"""``linesync token create --expires`` and ``linesync token list``, run in process
on a data directory of their own (no server needed: admin commands work on the
data directory)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import time
from pathlib import Path

import pytest

from linesync.cli.main import main as cli_main
from linesync.cli.main import parse_duration
from linesync.server.stores.sqlite import SqliteStore


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A server data directory with user "alice" and no token."""
    path = tmp_path / "data"

    async def go() -> None:
        store = await SqliteStore.open(path / "meta.sqlite3")
        try:
            await store.create_user("alice")
        finally:
            await store.close()

    asyncio.run(go())
    return path


def cli(data: Path, *args: str) -> tuple[int, str, str]:
    """``linesync ARGS --data DATA`` in this process: exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = cli_main([*args, "--data", str(data)])
        except SystemExit as exc:  # argparse: usage errors and --help
            rc = exc.code if isinstance(exc.code, int) else 1
    return rc, out.getvalue(), err.getvalue()


def tokens(data: Path) -> dict[str, dict[str, object]]:
    rc, out, err = cli(data, "token", "list")
    assert rc == 0, err
    return {str(t["device"]): t for t in json.loads(out)}


# -- parsing ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1),
        ("3600s", 3600),
        ("30m", 30 * 60),
        ("12h", 12 * 3600),
        ("90d", 90 * 86400),
        ("007d", 7 * 86400),
        (" 5m ", 300),
        ("36500d", 36500 * 86400),  # 100 years, the longest
    ],
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text",
    [
        "0s",
        "0d",
        "-1d",
        "-30m",
        "90",  # a bare number: seconds or days? refused rather than guessed
        "1.5h",
        "1e3s",
        "90M",
        "12H",
        "1w",
        "1y",
        "d",
        "",
        " ",
        "5 m",
        "5m5s",
        "abc",
        "٣d",  # a digit, but not an ASCII one
        "36501d",
        "99999999999999999999999d",
    ],
)
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_duration(text)


# -- token create ------------------------------------------------------------------


def test_create_with_expires(data: Path) -> None:
    before = time.time()
    rc, out, err = cli(data, "token", "create", "alice", "--device", "laptop", "--expires", "90d")
    after = time.time()
    assert rc == 0, err
    assert out.strip().startswith("lst_") and len(out.strip().splitlines()) == 1  # token only
    assert "expires at" in err
    rc, out, err = cli(data, "token", "create", "alice", "--device", "phone", "--expires", "12h")
    assert rc == 0, err
    rc, out, err = cli(data, "token", "create", "alice", "--device", "desk")
    assert rc == 0 and err == ""

    listed = tokens(data)
    laptop_expires = listed["laptop"]["expires"]
    assert isinstance(laptop_expires, float)
    assert before + 90 * 86400 <= laptop_expires <= after + 90 * 86400
    assert listed["laptop"]["state"] == listed["phone"]["state"] == "active"
    assert listed["desk"]["expires"] == "never" and listed["desk"]["state"] == "active"


@pytest.mark.parametrize("value", ["0s", "0d", "-1d", "90", "1.5h", "90M", "soon", "", "36501d"])
def test_create_refuses_a_bad_expires(data: Path, value: str) -> None:
    # "--expires=VALUE": a value that starts with "-" is the option's value too.
    rc, out, err = cli(data, "token", "create", "alice", "--device", "x", f"--expires={value}")
    assert rc == 2, (rc, out, err)
    assert out == ""
    assert "argument --expires:" in err and repr(value) in err, err
    assert tokens(data) == {}  # nothing was created


def test_create_help_explains_expires(data: Path) -> None:
    rc, out, _ = cli(data, "token", "create", "--help")
    assert rc == 0
    text = " ".join(out.split())
    assert "--expires DURATION" in text
    assert "s, m, h or d" in text and "90d" in text and "bare number is refused" in text
    assert "never expires" in text


# -- token list --------------------------------------------------------------------


def test_list_shows_expiry_and_state(data: Path) -> None:
    now = time.time()

    async def go() -> None:
        store = await SqliteStore.open(data / "meta.sqlite3")
        try:
            await store.create_token("alice", "old", "rw", expires=now - 60)
            await store.create_token("alice", "soon", "rw", expires=now + 60)
            await store.create_token("alice", "forever", "ro")
            await store.create_token("alice", "gone", "rw", expires=now - 60)
            await store.revoke_tokens("alice", "gone")
        finally:
            await store.close()

    asyncio.run(go())
    listed = tokens(data)
    assert {d: (t["expires"], t["state"]) for d, t in listed.items()} == {
        "old": (pytest.approx(now - 60), "expired"),
        "soon": (pytest.approx(now + 60), "active"),
        "forever": ("never", "active"),
        "gone": (pytest.approx(now - 60), "revoked"),  # revoked wins over expired
    }
    # The rest of each record is unchanged (and never holds the secret).
    assert set(listed["old"]) == {
        "id", "user", "device", "role", "created", "revoked", "expires", "state",
    }  # fmt: skip
