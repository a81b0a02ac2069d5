""".git folders are left out by default (two devices writing one repository's
.git made conflict copies of .git/index), with a warning on first sight of
each that says what happens and what to do; `!.git` in .linesyncignore syncs
them anyway (finding 11 of the audit)."""

from __future__ import annotations

from pathlib import Path

import pytest

from linesync.client.api import Client
from linesync.client.ignore import IgnoreRules
from tests.client.conftest import files


@pytest.mark.parametrize(
    ("path", "is_dir", "ignored"),
    [
        (".git", True, True),
        (".git", False, True),  # a worktree's .git file points at another folder
        (".git/index", False, True),
        ("proj/.git", True, True),
        ("proj/.git/objects/ab/cdef", False, True),
        ("proj/.gitignore", False, False),
        ("proj/.github", True, False),
        ("proj/.github/workflows/ci.yml", False, False),
        ("proj/git", True, False),
        ("proj/main.py", False, False),
    ],
)
def test_git_folders_are_left_out_by_default(path: str, is_dir: bool, ignored: bool) -> None:
    assert IgnoreRules.default().ignored(path, is_dir) is ignored


def test_a_line_in_linesyncignore_syncs_them_anyway() -> None:
    rules = IgnoreRules("!.git\n")
    assert not rules.ignored("proj/.git", True)
    assert not rules.ignored("proj/.git/index", False)
    assert rules.warnings == []
    only_dirs = IgnoreRules("!.git/\n")
    assert not only_dirs.ignored("proj/.git/index", False)
    assert only_dirs.ignored("wt/.git", False)  # the file form stays out


def _repo(root: Path, name: str) -> None:
    base = root / name
    (base / ".git/objects").mkdir(parents=True)
    (base / ".git/HEAD").write_text("ref: refs/heads/main\n")
    (base / ".git/index").write_bytes(b"DIRC\x00\x00\x00\x02")
    (base / "main.py").write_text("print('hi')\n")


def test_a_repository_syncs_its_files_not_its_git_folder_and_says_so_once(
    pair: tuple[Client, Client],
) -> None:
    a, b = pair
    _repo(a.folder, "proj")
    r = a.sync_once()
    assert r.converged
    told = [p for p in r.problems if ".git" in p]
    assert len(told) == 1 and told[0].startswith("proj/.git: "), r.problems
    assert "not synced" in told[0] and "!.git" in told[0] and ".linesyncignore" in told[0]
    assert b.sync_once().converged
    assert files(b.folder) == {"proj/main.py": b"print('hi')\n"}
    # Both devices work in the repository: its .git changes on both sides,
    # and nothing comes of it (no conflict copies of .git/index).
    _repo(b.folder, "proj2")
    (b.folder / "proj/.git").mkdir()
    (b.folder / "proj/.git/index").write_bytes(b"DIRC from B")
    (a.folder / "proj/.git/index").write_bytes(b"DIRC from A")
    rb, ra = b.sync_once(), a.sync_once()
    assert [p for p in rb.problems if ".git" in p] == [
        p for p in rb.problems if p.startswith(("proj/.git:", "proj2/.git:"))
    ]
    assert len(rb.problems) == 2, rb.problems  # B saw two repositories for the first time
    assert [p for p in ra.problems if ".git" in p] == []  # A was told about proj already
    assert ra.conflicts == [] and rb.conflicts == []
    assert b.sync_once().converged

    def outside_git(c: Client) -> dict[str, bytes]:
        return {p: d for p, d in files(c.folder).items() if "/.git/" not in p}

    assert (
        outside_git(a)
        == outside_git(b)
        == {
            "proj/main.py": b"print('hi')\n",
            "proj2/main.py": b"print('hi')\n",
        }
    )
    assert (a.folder / "proj/.git/index").read_bytes() == b"DIRC from A"
    assert (b.folder / "proj/.git/index").read_bytes() == b"DIRC from B"


def test_with_the_opt_in_line_git_folders_sync_without_a_warning(
    pair: tuple[Client, Client],
) -> None:
    a, b = pair
    (a.folder / ".linesyncignore").write_text("!.git\n")
    _repo(a.folder, "proj")
    r = a.sync_once()
    assert r.converged and r.problems == [], r.problems
    assert b.sync_once().converged
    assert (b.folder / "proj/.git/index").read_bytes() == b"DIRC\x00\x00\x00\x02"
    assert (b.folder / "proj/.git/HEAD").exists()
