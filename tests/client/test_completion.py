"""`linesync completion bash`: a real bash sources the script and completes
a subcommand, an option and an option's choices by running linesync."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent  # .venv/bin, with the linesync command in it


def _complete(line: str, tmp_path: Path) -> list[str]:
    """What bash offers for ``line`` (the cursor at its end)."""
    if shutil.which("bash") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("bash is missing")
        pytest.skip("bash is missing")
    words = line.split(" ")
    script = f"""
set -e
source <(linesync completion bash)
COMP_LINE={line!r}
COMP_POINT=${{#COMP_LINE}}
COMP_WORDS=({" ".join(repr(w) for w in words)})
COMP_CWORD={len(words) - 1}
COMP_TYPE=9
_python_argcomplete linesync {words[-1]!r} {words[-2]!r}
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "HOME": str(tmp_path)}  # fmt: skip
    done = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", script],
        capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return [w.strip() for w in done.stdout.splitlines() if w.strip()]


def test_bash_completes_a_subcommand(tmp_path: Path) -> None:
    got = _complete("linesync sy", tmp_path)
    assert got == ["sync"], got
    got = _complete("linesync con", tmp_path)
    assert set(got) == {"config", "conflicts"}, got


def test_bash_completes_an_option_and_its_choices(tmp_path: Path) -> None:
    got = _complete("linesync sync --re", tmp_path)
    assert got == ["--retry-for"], got
    got = _complete("linesync completion ", tmp_path)
    assert {w for w in got if not w.startswith("-")} == {"bash", "zsh", "fish"}, got
    got = _complete("linesync config ", tmp_path)
    assert {w for w in got if not w.startswith("-")} == {"show", "path"}, got


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_every_shell_gets_a_script_and_help_says_how_to_install_it(shell: str) -> None:
    done = subprocess.run(
        [str(BIN / "linesync"), "completion", shell], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "linesync" in done.stdout and "_ARGCOMPLETE" in done.stdout, done.stdout[:300]
    helped = subprocess.run(
        [str(BIN / "linesync"), "completion", "--help"], capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert f"linesync completion {shell}" in helped.stdout, helped.stdout
    assert "install it" in helped.stdout
