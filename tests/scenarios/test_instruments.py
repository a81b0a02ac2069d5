"""The scenarios' own instruments, checked on their own."""

from __future__ import annotations

import os
from pathlib import Path

from tests.scenarios.helpers import conflict_copies, tree, write
from tests.support.proxy import ThreadProxy


def test_tree_skips_state_and_never_follows_links(tmp_path: Path) -> None:
    write(tmp_path / ".linesync" / "x", "state")
    write(tmp_path / "d" / "f", "x")
    os.symlink("d", tmp_path / "l")
    os.symlink("/etc", tmp_path / "outside")
    os.chmod(tmp_path / "d" / "f", 0o755)
    assert tree(tmp_path) == {
        "d": ("dir",),
        "d/f": ("file", b"x", True),
        "l": ("link", "d"),
        "outside": ("link", "/etc"),
    }


def test_conflict_copies_are_found_anywhere_in_the_tree() -> None:
    t = {
        "a/b (conflict from x 2024-01-01 000000).md": ("file", b"", False),
        "a/b.md": ("file", b"", False),
    }
    assert conflict_copies(t) == ["a/b (conflict from x 2024-01-01 000000).md"]


def test_thread_proxy_counts_bytes(srv: object) -> None:
    import urllib.request

    from tests.support.server import ServerProc

    assert isinstance(srv, ServerProc)
    p = ThreadProxy(srv.url)
    try:
        with urllib.request.urlopen(p.url + "/healthz") as resp:
            resp.read()
        assert p.counts.up > 0 and p.counts.down > 0
        assert p.reset().total > 0 and p.counts.total == 0
    finally:
        p.close()
