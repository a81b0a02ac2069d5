"""A real WebDAV client round trip: rclone (Debian's package) copies a tree of
a few hundred files into a namespace and back out; both copies and a linesync
client synced on the same namespace hold identical bytes."""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path

from tests.dav.davclient import need_tool
from tests.scenarios.helpers import World, settle, tree
from tests.support.server import ServerProc

FILES = 300


def make_tree(root: Path, seed: int = 12) -> None:
    rng = random.Random(seed)
    folders = ["", "notes", "notes/2026", "photos", "recipes/soups", "r\u00e9sum\u00e9s"]
    for i in range(FILES):
        folder = root / folders[i % len(folders)]
        folder.mkdir(parents=True, exist_ok=True)
        if i % 3 == 0:  # binary
            data = rng.randbytes(rng.randrange(0, 70_000))
            (folder / f"blob-{i}.bin").write_bytes(data)
        else:  # text
            n = rng.randrange(1, 400)
            lines = [f"line {j} of file {i}: {rng.random()}\n" for j in range(n)]
            (folder / f"note {i}.md").write_text("".join(lines), encoding="utf-8")
    (root / "empty-folder").mkdir()
    (root / "empty.txt").write_bytes(b"")


def rclone(binary: str, config: Path, *args: str) -> str:
    out = subprocess.run(
        [binary, "--config", str(config), "--retries", "1", "--low-level-retries", "2", *args],
        capture_output=True,
        text=True,
        timeout=240,
        env={k: v for k, v in os.environ.items() if not k.startswith("RCLONE_")},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_rclone_round_trip_matches_a_linesync_client(
    world: World, srv: ServerProc, tmp_path: Path
) -> None:
    binary = need_tool("rclone")
    name = world.user()
    token = world.token(name, "rclone")
    config = tmp_path / "rclone.conf"
    config.write_text("")
    obscured = rclone(binary, config, "obscure", token).strip()
    remote = f":webdav,url='{srv.url}/dav/{name}/',vendor=other,user={name},pass={obscured}:"
    src = tmp_path / "src"
    make_tree(src)
    rclone(binary, config, "copy", "--create-empty-src-dirs", str(src), remote + "tree")
    back = tmp_path / "back"
    rclone(binary, config, "copy", "--create-empty-src-dirs", remote + "tree", str(back))
    expected = tree(src)
    assert len([v for v in expected.values() if v[0] == "file"]) == FILES + 1
    assert tree(back) == expected
    listed = rclone(binary, config, "lsf", "-R", "--files-only", remote + "tree")
    assert len(listed.splitlines()) == FILES + 1
    # A linesync client on the same namespace ends with the same bytes.
    laptop = world.client(name, "laptop")
    settle(laptop)
    assert tree(laptop.folder / "tree") == expected
