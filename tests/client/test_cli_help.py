"""Every command and subcommand explains itself: `--help` has a description
and at least one example a user can run as it stands."""

from __future__ import annotations

import contextlib
import io
import re

import pytest

from linesync.cli.help_text import walk
from linesync.cli.main import build_parser, main

TREE = walk(build_parser())


def test_the_tree_has_every_command() -> None:
    names = {" ".join(path) for path, _ in TREE}
    for expected in ("", "serve", "user add", "token create", "namespace share", "gc", "init",
                     "sync", "status", "log", "restore", "conflicts", "config show",
                     "config path", "completion"):  # fmt: skip
        assert expected in names, sorted(names)


@pytest.mark.parametrize("path", [p for p, _ in TREE], ids=lambda p: " ".join(p) or "linesync")
def test_every_command_has_a_description_and_an_example(path: tuple[str, ...]) -> None:
    (parser,) = [p for q, p in TREE if q == path]
    assert parser.description and len(parser.description.split()) >= 4, parser.description
    text = parser.format_help()
    parts = re.split(r"^examples?:$", text, maxsplit=1, flags=re.M)
    assert len(parts) == 2, text
    examples = [line.strip() for line in parts[1].splitlines()]
    runnable = [e for e in examples if e.startswith("linesync ")]
    assert runnable, text
    # The examples name this very command (not another one's).
    assert any(e.split()[1 : 1 + len(path)] == list(path) for e in runnable), runnable


@pytest.mark.parametrize("path", [("sync",), ("config", "show"), ("token", "create")])
def test_help_runs_from_the_command_line(path: tuple[str, ...]) -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exc:
        main([*path, "--help"])
    assert exc.value.code == 0
    assert "examples:" in out.getvalue() and f"linesync {' '.join(path)}" in out.getvalue()
