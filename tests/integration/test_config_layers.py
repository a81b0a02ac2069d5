"""Server settings from a TOML file and the environment, under the command
line: `linesync serve --config FILE`, LINESYNC_* variables, --flags."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from linesync.server.config import ConfigError, from_env, from_file

MiB = 2**20


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LINESYNC_")}
    return subprocess.run(
        [sys.executable, "-m", "linesync", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, **(env or {})},
    )


def test_a_file_gives_places_and_limits(tmp_path: Path) -> None:
    f = tmp_path / "server.toml"
    f.write_text(
        'data = "/srv/x"\ndb = "postgresql://u@h/d"\nport = 9000\n'
        '[limits]\nmax_upload_body = "32MiB"\nrate_per_second = 50\n'
    )
    layer = from_file(f)
    assert layer.places == {"data": "/srv/x", "db": "postgresql://u@h/d", "port": 9000}
    assert layer.limits == {"max_upload_body": 32 * MiB, "rate_per_second": 50.0}


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("port = 'eighty'", "port must be a int"),
        ("port = true", "port must be a int"),
        ("colour = 'blue'", "unknown setting 'colour'"),
        ("[limits]\nmax_chunk = 'lots'", "is not a number"),
        ("[limits]\nno_such = 1", "unknown limit"),
        ("limits = 5", "must be a table"),
        ("data = ", "not valid TOML"),
    ],
)
def test_a_bad_file_is_refused_naming_the_file(tmp_path: Path, text: str, says: str) -> None:
    f = tmp_path / "server.toml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=says) as info:
        from_file(f)
    assert str(f) in str(info.value)


def test_the_environment_gives_places_and_limits() -> None:
    env = {
        "LINESYNC_DB": "postgresql://u@h/d",
        "LINESYNC_PORT": "9001",
        "LINESYNC_LIMIT_MAX_LIST_PAGE": "200",
        "LINESYNC_UNRELATED": "x",
    }
    layer = from_env(env)
    assert layer.places == {"db": "postgresql://u@h/d", "port": 9001}
    assert layer.limits == {"max_list_page": 200}
    with pytest.raises(ConfigError, match="LINESYNC_LIMIT_NOPE"):
        from_env({"LINESYNC_LIMIT_NOPE": "1"})
    with pytest.raises(ConfigError, match="LINESYNC_PORT"):
        from_env({"LINESYNC_PORT": "high"})


def test_the_command_line_beats_the_environment_beats_the_file(tmp_path: Path) -> None:
    """Admin commands find their data where the layers say."""
    by_file, by_env, by_flag = tmp_path / "file", tmp_path / "env", tmp_path / "flag"
    conf = tmp_path / "server.toml"
    conf.write_text(f'data = "{by_file}"\n')
    for d in (by_file, by_env, by_flag):
        d.mkdir()
    made = _run("user", "add", "filed", "--config", str(conf))
    assert made.returncode == 2 and f"no server data in {by_file}" in made.stderr
    # (no database yet anywhere: say where it looked)
    env = {"LINESYNC_CONFIG": str(conf), "LINESYNC_DATA": str(by_env)}
    assert f"no server data in {by_env}" in _run("user", "list", env=env).stderr
    flag = _run("user", "list", "--data", str(by_flag), env=env)
    assert f"no server data in {by_flag}" in flag.stderr


def test_serve_takes_its_limits_from_the_file(tmp_path: Path) -> None:
    conf = tmp_path / "server.toml"
    conf.write_text("[limits]\nmax_connections = 0\n")
    out = _run("serve", "--data", str(tmp_path / "d"), "--port", "0", "--config", str(conf))
    assert out.returncode == 2 and "greater than 0" in out.stderr
    assert "Traceback" not in out.stderr
    missing = _run("serve", "--config", str(tmp_path / "nope.toml"))
    assert missing.returncode == 2 and "nope.toml" in missing.stderr
    assert "Traceback" not in missing.stderr
