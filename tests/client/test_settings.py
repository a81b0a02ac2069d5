"""The client's settings: default < config file < environment < flag, errors
that name the file, key and what is allowed, and `linesync config show`."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from linesync.client import settings as S
from linesync.client.api import Client
from linesync.client.config import FolderConfig
from tests.support.api import cli
from tests.support.server import ServerProc

F = Path("/home/u/.config/linesync/config.toml")


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test has its own config file, log file and no LINESYNC_* variable."""
    for var in list(os.environ):
        if var.startswith("LINESYNC_"):
            monkeypatch.delenv(var)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))


def _write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "xdg-config" / "linesync" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# -- resolution, pure --------------------------------------------------------------


@pytest.mark.parametrize(
    ("file", "env", "flags", "name", "value", "source"),
    [
        ({}, {}, {}, "retry_for", 120.0, "default"),
        ({"retry_for": 30}, {}, {}, "retry_for", 30.0, f"file {F}"),
        ({"retry_for": 30}, {"LINESYNC_RETRY_FOR": "5.5"}, {}, "retry_for", 5.5, "env LINESYNC_RETRY_FOR"),  # noqa: E501
        ({"retry_for": 30}, {"LINESYNC_RETRY_FOR": "5"}, {"retry_for": 1.0}, "retry_for", 1.0, "flag --retry-for"),  # noqa: E501
        ({}, {"LINESYNC_RETRY_FOR": ""}, {}, "retry_for", 120.0, "default"),
        ({"stream": False}, {}, {}, "stream", False, f"file {F}"),
        ({"stream": False}, {"LINESYNC_STREAM": "yes"}, {}, "stream", True, "env LINESYNC_STREAM"),
        ({}, {"LINESYNC_STREAM": "off"}, {"stream": None}, "stream", False, "env LINESYNC_STREAM"),
        ({}, {}, {"stream": False}, "stream", False, "flag --no-stream"),
        ({"quiet": True}, {}, {"quiet": None}, "quiet", True, f"file {F}"),
        ({"log_limit": 5}, {"LINESYNC_LOG_LIMIT": "7"}, {}, "log_limit", 7, "env LINESYNC_LOG_LIMIT"),  # noqa: E501
        ({"log_limit": 5}, {}, {"log_limit": 9}, "log_limit", 9, "flag --limit"),
        ({"log_level": "DEBUG"}, {}, {}, "log_level", "debug", f"file {F}"),
        ({"log_file": "~/x.log"}, {"HOME": "/h"}, {}, "log_file", Path("~/x.log").expanduser(), f"file {F}"),  # noqa: E501
        ({}, {"XDG_STATE_HOME": "/st"}, {}, "log_file", Path("/st/linesync/linesync.log"), "default"),  # noqa: E501
        ({}, {"XDG_STATE_HOME": "rel", "HOME": "/h"}, {}, "log_file", Path("/h/.local/state/linesync/linesync.log"), "default"),  # noqa: E501
        ({"timeout": 30}, {}, {}, "timeout", 30.0, f"file {F}"),
        ({}, {"LINESYNC_CONNECTIONS": "4"}, {}, "connections", 4, "env LINESYNC_CONNECTIONS"),
        ({}, {}, {"verbose": 2}, "verbose", 2, "flag -v/--verbose"),
        ({}, {}, {}, "progress", None, "default"),
        ({"progress": False}, {}, {"progress": None}, "progress", False, f"file {F}"),
        ({"progress": False}, {"LINESYNC_PROGRESS": "1"}, {}, "progress", True, "env LINESYNC_PROGRESS"),  # noqa: E501
        ({"progress": False}, {}, {"progress": True}, "progress", True, "flag --progress/--no-progress"),  # noqa: E501
    ],
)  # fmt: skip
def test_each_layer_beats_the_one_below(
    file: dict[str, Any], env: dict[str, str], flags: dict[str, Any], name: str, value: Any,
    source: str,
) -> None:  # fmt: skip
    got = S.resolve(file, F, env, flags)[name]
    assert (got.value, got.source) == (value, source)


@pytest.mark.parametrize(
    ("file", "env", "says"),
    [
        ({"retry_fr": 3}, {}, f"{F}: unknown setting 'retry_fr'; the settings are: connections,"),
        ({"server": "http://x"}, {}, "unknown setting 'server'"),
        ({"retry_for": "soon"}, {}, f"{F}: retry_for = 'soon' is not allowed; give a number of seconds from 0 to 604800"),  # noqa: E501
        ({"retry_for": -1}, {}, "give a number of seconds from 0"),
        ({"retry_for": True}, {}, "retry_for = True is not allowed"),
        ({"stream": "maybe"}, {}, "stream = 'maybe' is not allowed; give true or false"),
        ({"stream": 1}, {}, "stream = 1 is not allowed"),
        ({"log_limit": 0}, {}, "log_limit = 0 is not allowed; give a whole number from 1 to 1000"),
        ({"log_limit": 2.5}, {}, "give a whole number from 1 to 1000"),
        ({"log_level": "loud"}, {}, "give one of debug, info, warning, error"),
        ({"log_file": ""}, {}, "give a file path"),
        ({"timeout": 0}, {}, "timeout = 0 is not allowed; give a number of seconds from 1"),
        ({}, {"LINESYNC_RETRY_FOR": "nan"}, "LINESYNC_RETRY_FOR='nan' is not allowed; give a number of seconds"),  # noqa: E501
        ({}, {"LINESYNC_LOG_LIMIT": "ten"}, "LINESYNC_LOG_LIMIT='ten' is not allowed; give a whole number"),  # noqa: E501
        ({}, {"LINESYNC_QUIET": "perhaps"}, "LINESYNC_QUIET='perhaps' is not allowed; give true or false"),  # noqa: E501
    ],
)  # fmt: skip
def test_a_bad_setting_names_where_it_is_and_what_is_allowed(
    file: dict[str, Any], env: dict[str, str], says: str
) -> None:
    with pytest.raises(S.SettingsError) as exc:
        S.resolve(file, F, env, {})
    assert says in str(exc.value), str(exc.value)


@given(
    st.fixed_dictionaries(
        {},
        optional={
            "file": st.integers(0, 999),
            "env": st.integers(0, 999),
            "flag": st.integers(0, 999),
        },
    )
)
def test_the_strongest_layer_present_wins(layers: dict[str, int]) -> None:
    got = S.resolve(
        {"log_limit": layers["file"] + 1} if "file" in layers else {},
        F,
        {"LINESYNC_LOG_LIMIT": str(layers["env"] + 1)} if "env" in layers else {},
        {"log_limit": layers["flag"] + 1} if "flag" in layers else {},
    )["log_limit"]
    strongest = next((k for k in ("flag", "env", "file") if k in layers), None)
    assert got.value == (layers[strongest] + 1 if strongest else S.DEFAULT_LOG_LIMIT)
    assert got.source.split()[0] == {"flag": "flag", "env": "env", "file": "file"}.get(
        strongest or "", "default"
    )


@pytest.mark.parametrize(
    ("env", "path"),
    [
        ({"HOME": "/h"}, "/h/.config/linesync/config.toml"),
        ({"HOME": "/h", "XDG_CONFIG_HOME": "/x"}, "/x/linesync/config.toml"),
        ({"HOME": "/h", "XDG_CONFIG_HOME": "relative"}, "/h/.config/linesync/config.toml"),
        ({"HOME": "/h", "XDG_CONFIG_HOME": "/x", "LINESYNC_CLIENT_CONFIG": "/c.toml"}, "/c.toml"),
    ],
)  # fmt: skip
def test_where_the_file_is_looked_for(env: dict[str, str], path: str) -> None:
    assert S.config_path(env) == Path(path)


def test_every_option_has_an_env_var_help_and_a_default_that_parses() -> None:
    base = S.defaults({"HOME": "/h"})
    for o in S.OPTIONS:
        assert o.env == "LINESYNC_" + o.name.upper()
        assert o.help and o.allowed
        if o.default is not None:
            assert o.parse(base[o.name]) == base[o.name], o.name


def test_a_file_that_is_not_toml_is_named(tmp_path: Path) -> None:
    path = _write_config(tmp_path, "retry_for = = 3\n")
    with pytest.raises(S.SettingsError, match=f"{path} is not valid TOML"):
        S.read_file(path)


# -- the command line ---------------------------------------------------------------


def test_config_path_and_show_tell_where_each_value_came_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rc, out, _ = cli("config", "path")
    path = tmp_path / "xdg-config" / "linesync" / "config.toml"
    assert rc == 0 and out.strip() == str(path)
    _write_config(tmp_path, "retry_for = 30\nlog_level = 'debug'\n")
    monkeypatch.setenv("LINESYNC_LOG_LIMIT", "7")
    rc, out, err = cli("config", "show")
    assert rc == 0, err
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert rows["retry_for"][1:] == ["30.0", "file", str(path)]
    assert rows["log_level"][1:] == ["debug", "file", str(path)]
    assert rows["log_limit"][1:] == ["7", "env", "LINESYNC_LOG_LIMIT"]
    assert rows["stream"][1:] == ["true", "default"]
    log_file = tmp_path / "xdg-state" / "linesync" / "linesync.log"
    assert rows["log_file"][1:] == [str(log_file), "default"]
    assert {o.name for o in S.OPTIONS} <= set(rows)


def test_config_show_with_a_folder_masks_its_token(tmp_path: Path) -> None:
    folder = tmp_path / "notes"
    token = "lst_SECRETsecretSECRETsecret0123456789"
    FolderConfig("http://127.0.0.1:9", token, 3, "alice", "laptop").save(folder)
    rc, out, err = cli("config", "show", "--folder", str(folder))
    assert rc == 0, err
    assert token not in out and "SECRET" not in out
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "lst_…6789" in rows["token"] and "folder config" in rows["token"]
    assert "http://127.0.0.1:9" in rows["server"] and "alice (id 3)" in rows["namespace"]
    rc, _, err = cli("config", "show", "--folder", str(tmp_path / "nope"))
    assert rc == 2 and "is not a linesync folder" in err


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("retry_fr = 3\n", "unknown setting 'retry_fr'"),
        ("retry_for = 'soon'\n", "retry_for = 'soon' is not allowed"),
        ("[sync\n", "is not valid TOML"),
    ],
)
def test_a_bad_file_stops_a_command_before_it_does_anything(
    tmp_path: Path, text: str, says: str
) -> None:
    path = _write_config(tmp_path, text)
    folder = tmp_path / "notes"
    FolderConfig("http://127.0.0.1:9", "lst_x", 3, "alice", "laptop").save(folder)
    for args in (("sync", str(folder)), ("config", "show"), ("status", str(folder))):
        rc, out, err = cli(*args)
        assert rc == 2, (args, out, err)
        assert str(path) in err and says in err, err
        assert "Traceback" not in err


def _closed_port_folder(tmp_path: Path) -> Path:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    folder = tmp_path / "notes"
    FolderConfig(f"http://127.0.0.1:{port}", "lst_x", 3, "alice", "laptop").save(folder)
    return folder


def test_retry_for_from_the_file_the_environment_and_the_flag_takes_effect(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _closed_port_folder(tmp_path)
    _write_config(tmp_path, "retry_for = 0\n")
    started = time.monotonic()
    rc, out, err = cli("sync", str(folder))
    assert rc == 5 and "cannot reach" in err, (out, err)  # no retries: at once
    assert time.monotonic() - started < 10
    monkeypatch.setenv("LINESYNC_RETRY_FOR", "2")  # the environment beats the file
    started = time.monotonic()
    rc, out, err = cli("sync", str(folder))
    assert rc == 5 and "retrying in" in err, (out, err)
    assert 0.5 < time.monotonic() - started < 30
    started = time.monotonic()
    rc, out, err = cli("sync", str(folder), "--retry-for", "0")  # the flag beats both
    assert rc == 5 and "retrying in" not in err, (out, err)
    assert time.monotonic() - started < 10


def test_log_limit_layers_through_linesync_log(
    server: ServerProc, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = Client.init(tmp_path / "A", server=server.url, token=server.new_token("admin", "a"))
    for i in range(4):
        (client.folder / "note.md").write_text(f"version {i}\n")
        assert client.sync_once().converged
    folder = str(client.folder)

    def versions(*extra: str) -> int:
        rc, out, err = cli("log", folder, "note.md", *extra)
        assert rc == 0, err
        return len([line for line in out.splitlines() if line.startswith("jid")])

    assert versions() == 4  # default 20
    _write_config(tmp_path, "log_limit = 2\n")
    assert versions() == 2
    monkeypatch.setenv("LINESYNC_LOG_LIMIT", "3")
    assert versions() == 3
    assert versions("--limit", "1") == 1


def test_config_help_lists_every_setting_with_its_default() -> None:
    rc, out, _ = cli("config", "--help")
    assert rc == 0
    for o in S.OPTIONS:
        assert f"\n  {o.name} (default " in out, o.name
    assert "  retry_for (default 120.0, --retry-for on sync)" in out


def test_a_file_named_in_the_environment_is_used_and_must_exist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    named = tmp_path / "elsewhere.toml"
    monkeypatch.setenv("LINESYNC_CLIENT_CONFIG", str(named))
    rc, out, err = cli("config", "show")
    assert rc == 2 and f"LINESYNC_CLIENT_CONFIG names {named}, which does not exist" in err
    named.write_text("log_limit = 9\n")
    rc, out, err = cli("config", "show")
    assert rc == 0 and f"config file: {named}\n" in out, (out, err)
    assert [line.split()[1:] for line in out.splitlines() if line.startswith("log_limit")] == [
        ["9", "file", str(named)]
    ]
    assert cli("config", "path")[1].strip() == str(named)


def test_the_built_in_defaults_are_the_library_s_own() -> None:
    from linesync.cli import client_args
    from linesync.client import base, remote

    assert S.DEFAULT_RETRY_FOR == client_args.DEFAULT_RETRY_FOR
    assert S.DEFAULT_DOWNLOAD_CONCURRENCY == base.DOWNLOAD_CONCURRENCY
    assert S.DEFAULT_UPLOAD_CONCURRENCY == base.UPLOAD_CONCURRENCY
    assert (S.DEFAULT_TIMEOUT, S.DEFAULT_CONNECTIONS) == (
        remote.DEFAULT_TIMEOUT,
        remote.DEFAULT_CONNECTIONS,
    )


def test_a_command_runs_with_the_settings_where_the_library_reads_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import argparse

    from linesync.cli.config_cmds import configured
    from linesync.client import committing, engine, remote

    monkeypatch.setenv("LINESYNC_DOWNLOAD_CONCURRENCY", "1")
    monkeypatch.setenv("LINESYNC_UPLOAD_CONCURRENCY", "2")
    monkeypatch.setenv("LINESYNC_TIMEOUT", "33")
    monkeypatch.setenv("LINESYNC_CONNECTIONS", "5")
    args = argparse.Namespace(command="sync", retry_for=None, stream=None, quiet=None,
                              progress=None, verbose=None)  # fmt: skip
    with configured(args) as ok:
        assert ok
        assert (engine.DOWNLOAD_CONCURRENCY, committing.UPLOAD_CONCURRENCY) == (1, 2)
        assert (remote.DEFAULT_TIMEOUT, remote.DEFAULT_CONNECTIONS) == (33.0, 5)
        assert remote.Remote("http://h", "t")._timeout.total == 33.0
        assert (args.retry_for, args.stream, args.quiet, args.progress) == (
            120.0,
            True,
            False,
            None,
        )
    assert (engine.DOWNLOAD_CONCURRENCY, committing.UPLOAD_CONCURRENCY) == (4, 3)
    assert (remote.DEFAULT_TIMEOUT, remote.DEFAULT_CONNECTIONS) == (120.0, 16)


def test_a_sync_with_one_transfer_at_a_time_converges(
    server: ServerProc, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = Client.init(tmp_path / "A", server=server.url, token=server.new_token("admin", "a"))
    for i in range(30):
        (a.folder / f"n{i}.md").write_text(f"note {i}\n" * (i + 1))
    (a.folder / "big.bin").write_bytes(os.urandom(3 * 2**20))
    _write_config(tmp_path, "download_concurrency = 1\nupload_concurrency = 1\n")
    rc, out, err = cli("sync", str(a.folder))
    assert rc == 0 and "31 uploaded" in out, (out, err)
    b = tmp_path / "B"
    token = server.new_token("admin", "b")
    assert cli("init", str(b), "--server", server.url, "--token", token)[0] == 0
    rc, out, err = cli("sync", str(b))
    assert rc == 0 and "31 downloaded" in out, (out, err)
    assert (b / "big.bin").read_bytes() == (a.folder / "big.bin").read_bytes()
