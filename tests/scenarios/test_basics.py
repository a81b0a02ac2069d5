"""Scenarios, section "Basics": one side changes something, the others follow.

Each test: a real server (one per module), two or three client folders of a
fresh user, real files; the clients sync until they settle; then every folder
holds the same tree and no saved version is lost.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import time
import unicodedata
from pathlib import Path

import pytest

from tests.scenarios.helpers import (
    Big,
    World,
    assert_same_trees,
    clash_copies,
    conflict_copies,
    files,
    lines,
    settle,
    tree,
    write,
)

KIB = 1024


def text(n: int, tag: str = "") -> str:
    return "".join(lines(n, tag))


def mtime_ns(p: Path) -> int:
    return os.lstat(p).st_mtime_ns


def bump_mtime(p: Path, seconds: float = 5.0) -> int:
    """Move a file's mtime on (the bytes stay); the new mtime."""
    new = mtime_ns(p) + int(seconds * 1e9)
    os.utime(p, ns=(new, new))
    return new


# -- files ------------------------------------------------------------------------------


def test_new_file(world: World) -> None:
    a, b, c = world.pair("laptop", "desktop", "phone")
    write(a.folder / "soup.md", text(20))
    settle(a, b, c)
    t = assert_same_trees(a, b, c)
    assert t["soup.md"] == ("file", text(20).encode(), False)


def test_edited_file(world: World) -> None:
    a, b = world.pair()
    old = text(40)
    write(a.folder / "soup.md", old)
    settle(a, b)
    new = old.replace("line 017", "line 017 with MORE salt")
    write(b.folder / "soup.md", new)
    settle(b, a)
    t = assert_same_trees(a, b)
    assert t["soup.md"][1] == new.encode()
    world.assert_kept([a, b], "soup.md", old.encode(), new.encode())


def test_deleted_file(world: World) -> None:
    a, b = world.pair()
    write(a.folder / "soup.md", text(5))
    write(a.folder / "keep.md", "keep me\n")
    settle(a, b)
    (b.folder / "soup.md").unlink()
    settle(b, a)
    t = assert_same_trees(a, b)
    assert "soup.md" not in t and "keep.md" in t
    # The deleted version is still in the journal's history.
    world.assert_kept([a, b], "soup.md", text(5).encode())


def test_empty_file_stays_empty_and_is_not_a_delete(world: World) -> None:
    a, b = world.pair()
    write(a.folder / "empty.txt", b"")
    write(a.folder / "sub" / "also-empty", b"")
    settle(a, b)
    t = assert_same_trees(a, b)
    assert t["empty.txt"] == ("file", b"", False)
    assert t["sub/also-empty"] == ("file", b"", False)
    # A later sync of either side keeps them (an empty file is not a tombstone).
    settle(b, a)
    assert assert_same_trees(a, b) == t
    (hist,) = world.history(a, "empty.txt")
    assert hist.kind.value == "file" and hist.size == 0


def test_file_emptied_to_zero_bytes(world: World) -> None:
    a, b = world.pair()
    old = text(30)
    write(a.folder / "draft.txt", old)
    settle(a, b)
    time.sleep(0.01)
    with open(b.folder / "draft.txt", "r+b") as f:
        f.truncate(0)
    settle(b, a)
    t = assert_same_trees(a, b)
    assert t["draft.txt"] == ("file", b"", False)
    world.assert_kept([a, b], "draft.txt", old.encode())


# -- folders ----------------------------------------------------------------------------


def test_new_empty_folder(world: World) -> None:
    a, b = world.pair()
    (a.folder / "Inbox").mkdir()
    settle(a, b)
    t = assert_same_trees(a, b)
    assert t == {"Inbox": ("dir",)}


def test_nested_folders_created_in_one_go(world: World) -> None:
    a, b = world.pair()
    (a.folder / "a" / "b" / "c" / "d" / "e").mkdir(parents=True)
    write(a.folder / "a" / "b" / "c" / "note.txt", "deep\n")
    (a.folder / "x" / "y").mkdir(parents=True)
    settle(a, b)
    t = assert_same_trees(a, b)
    for d in ("a", "a/b", "a/b/c", "a/b/c/d", "a/b/c/d/e", "x", "x/y"):
        assert t[d] == ("dir",), d
    assert t["a/b/c/note.txt"][1] == b"deep\n"


def test_folder_deleted_with_its_contents(world: World) -> None:
    a, b = world.pair()
    for i in range(5):
        write(a.folder / "old" / f"n{i}.txt", f"note {i}\n")
        write(a.folder / "old" / "sub" / f"m{i}.txt", f"more {i}\n")
    for i in range(20):  # most of the tree stays: this is no mass delete
        write(a.folder / "stay" / f"s{i}.txt", f"stay {i}\n")
    settle(a, b)
    before = tree(a.folder)
    shutil.rmtree(b.folder / "old")
    settle(b, a)
    t = assert_same_trees(a, b)
    assert t == {p: n for p, n in before.items() if not p.startswith("old")}
    world.assert_kept([a, b], "old/sub/m3.txt", b"more 3\n")


def test_remote_delete_leaves_no_empty_ghost_folders(world: World) -> None:
    a, b, c = world.pair("laptop", "desktop", "phone")
    write(a.folder / "trip" / "day1" / "morning" / "plan.md", "walk\n")
    write(a.folder / "trip" / "day1" / "evening.md", "dinner\n")
    write(a.folder / "trip" / "day2" / "plan.md", "train\n")
    (a.folder / "trip" / "empty" / "deeper").mkdir(parents=True)
    settle(a, b, c)
    shutil.rmtree(a.folder / "trip")
    settle(a, b, c)
    t = assert_same_trees(a, b, c)
    assert t == {}, f"ghost folders left behind: {sorted(t)}"
    for cl in (b, c):
        assert not (cl.folder / "trip").exists(), f"{cl.folder.name} keeps an empty trip/"


def test_remote_delete_leaves_no_ghost_folder_when_only_os_junk_is_left(world: World) -> None:
    """The folder deleted elsewhere holds only OS temporaries here (``.DS_Store``,
    ``Thumbs.db``, never synced): it goes too, and the sync settles."""
    a, b = world.pair()
    write(a.folder / "album" / "photo1.jpg", random.Random(1).randbytes(4 * KIB))
    write(a.folder / "album" / "2024" / "photo2.jpg", random.Random(2).randbytes(4 * KIB))
    write(a.folder / "keep.txt", "keep\n")
    settle(a, b)
    write(b.folder / "album" / ".DS_Store", b"\x00\x00\x00\x01Bud1")
    write(b.folder / "album" / "2024" / "Thumbs.db", b"thumbs")
    shutil.rmtree(a.folder / "album")
    settle(a, b)
    t = assert_same_trees(a, b)
    assert sorted(t) == ["keep.txt"], f"ghost folders left behind: {sorted(t)}"


# -- moves ------------------------------------------------------------------------------


def test_rename_a_file(world: World) -> None:
    user = world.user()
    pa, pb = world.proxy(), world.proxy()
    a = world.client(user, "laptop", via=pa)
    b = world.client(user, "desktop", via=pb)
    data = random.Random(3).randbytes(300 * KIB)
    write(a.folder / "photo.jpg", data)
    settle(a, b)
    pa.reset()
    pb.reset()
    (a.folder / "photo.jpg").rename(a.folder / "holiday photo.jpg")
    ra = a.sync_once()
    up = pa.reset()
    rb = b.sync_once()
    down = pb.reset()
    assert ra.moved == 1 and ra.uploaded == 0, ra
    assert rb.downloaded == 0 and rb.moved == 1, rb
    assert up.total < 8 * KIB, f"a rename sent {up}: content travelled again"
    assert down.total < 8 * KIB, f"a rename cost the receiver {down}"
    settle(a, b)
    t = assert_same_trees(a, b)
    assert t == {"holiday photo.jpg": ("file", data, False)}
    (entry,) = world.history(a, "holiday photo.jpg")
    assert entry.moved_from == "photo.jpg"


def test_rename_a_folder_with_100_files(world: World) -> None:
    """The mover sends no content and the receiver renames locally: well under
    64 KiB on the wire each, for 100 files of 2 KiB of random bytes (200 KiB)."""
    user = world.user()
    pa, pb = world.proxy(), world.proxy()
    a = world.client(user, "laptop", via=pa)
    b = world.client(user, "desktop", via=pb)
    rnd = random.Random(100)
    contents = {f"notes/n{i:03d}.bin": rnd.randbytes(2 * KIB) for i in range(100)}
    for p, data in contents.items():
        write(a.folder / p, data)
    settle(a, b)
    assert assert_same_trees(a, b)["notes/n042.bin"][1] == contents["notes/n042.bin"]
    pa.reset()
    pb.reset()

    (a.folder / "notes").rename(a.folder / "archive 2024")
    ra = a.sync_once()
    up = pa.reset()
    rb = b.sync_once()
    down = pb.reset()

    assert ra.uploaded == 0 and ra.converged, ra
    assert up.total < 64 * KIB, f"the mover sent {up} for a folder rename"
    assert rb.downloaded == 0, f"the receiver downloaded {rb.downloaded} files it holds: {rb}"
    assert down.total < 64 * KIB, f"the receiver moved {down} for a folder rename"
    settle(a, b)
    t = assert_same_trees(a, b)
    assert "notes" not in t
    assert files(t) == {
        p.replace("notes/", "archive 2024/", 1): data for p, data in contents.items()
    }


def test_move_a_folder_under_another_folder(world: World) -> None:
    user = world.user()
    pa, pb = world.proxy(), world.proxy()
    a = world.client(user, "laptop", via=pa)
    b = world.client(user, "desktop", via=pb)
    rnd = random.Random(7)
    contents = {f"projects/p{i}.bin": rnd.randbytes(8 * KIB) for i in range(20)}
    contents["projects/sub/deep.bin"] = rnd.randbytes(8 * KIB)
    for p, data in contents.items():
        write(a.folder / p, data)
    (a.folder / "archive").mkdir()
    settle(a, b)
    pa.reset()
    pb.reset()

    (a.folder / "projects").rename(a.folder / "archive" / "projects")
    ra = a.sync_once()
    up = pa.reset()
    rb = b.sync_once()
    down = pb.reset()

    assert ra.uploaded == 0, ra
    assert up.total < 32 * KIB, f"the mover sent {up}: content travelled again"
    assert rb.downloaded == 0, f"the receiver downloaded files it holds: {rb}"
    assert down.total < 32 * KIB, f"the receiver got {down}: content travelled again"
    settle(a, b)
    t = assert_same_trees(a, b)
    assert files(t) == {f"archive/{p}": d for p, d in contents.items()}
    assert "projects" not in t


def test_case_only_rename(world: World) -> None:
    a, b = world.pair()
    write(a.folder / "Recipe.cook", text(10))
    settle(a, b)
    (a.folder / "Recipe.cook").rename(a.folder / "recipe.cook")
    ra = a.sync_once()
    assert ra.converged and not ra.problems, ra
    rb = b.sync_once()
    assert rb.downloaded == 0 and rb.moved == 1, rb
    settle(a, b)
    t = assert_same_trees(a, b)
    assert t == {"recipe.cook": ("file", text(10).encode(), False)}
    assert sorted(os.listdir(b.folder)) == [".linesync", "recipe.cook"]


def test_files_moved_and_edited_at_once_send_only_what_changed(world: World) -> None:
    """Files moved into a new folder and edited before the next sync: the
    planner sees a delete and a new file (the bytes differ, so not a move),
    yet only the edited lines and the blocklists travel, not the files again
    (200 KB of text each): the mover knows the server holds the deleted
    version's chunks, and the server knows the receiver does."""
    user = world.user()
    pa, pb = world.proxy(), world.proxy()
    a = world.client(user, "laptop", via=pa)
    b = world.client(user, "desktop", via=pb)
    notes = {f"n{i}.md": text(256 * KIB // 60, tag=f"n{i}").encode() for i in range(3)}
    for name, data in notes.items():
        write(a.folder / name, data)
    settle(a, b)
    pa.reset()
    pb.reset()

    f = a.folder
    (f / "docs").mkdir()
    for name, data in notes.items():
        (f / name).rename(f / "docs" / name)
        lines = data.split(b"\n")
        lines[len(lines) // 2] = b"edited while moving"
        write(f / "docs" / name, b"\n".join(lines))
    ra = a.sync_once()
    up = pa.reset()
    rb = b.sync_once()
    down = pb.reset()

    assert ra.converged and rb.converged, (ra, rb)
    # Each file's blocklist (about 80 ids, 3.4 KB) goes up and comes down; its
    # chunks did too before (64 KiB inline up, 256 KiB offered down).
    assert up.total < 6 * KIB * len(notes), f"the mover sent {up}"
    assert down.total < 6 * KIB * len(notes), f"the receiver took {down}"
    settle(a, b)
    t = assert_same_trees(a, b)
    for name in notes:
        assert b"edited while moving" in t[f"docs/{name}"][1] and name not in t


def test_three_files_rotated_send_no_content(world: World) -> None:
    """a -> b, b -> c, c -> a (through a spare name) in one sync: each path
    changes content, so the planner commits three new versions, but neither
    side sends the 768 KiB again: the mover knows the server holds the
    replaced versions' chunks, and the server knows the receiver does."""
    user = world.user()
    pa, pb = world.proxy(), world.proxy()
    a = world.client(user, "laptop", via=pa)
    b = world.client(user, "desktop", via=pb)
    rnd = random.Random(33)
    blobs = {name: rnd.randbytes(256 * KIB) for name in ("a.bin", "b.bin", "c.bin")}
    for name, data in blobs.items():
        write(a.folder / name, data)
    settle(a, b)
    pa.reset()
    pb.reset()

    f = a.folder
    (f / "a.bin").rename(f / "spare.bin")
    (f / "c.bin").rename(f / "a.bin")
    (f / "b.bin").rename(f / "c.bin")
    (f / "spare.bin").rename(f / "b.bin")
    ra = a.sync_once()
    up = pa.reset()
    rb = b.sync_once()
    down = pb.reset()

    assert ra.converged and rb.converged, (ra, rb)
    assert up.total < 4 * KIB, f"the mover sent {up}"  # was 83 KB: chunks inline
    assert down.total < 4 * KIB, f"the receiver took {down}"  # was 266 KB
    settle(a, b)
    t = assert_same_trees(a, b)
    assert t["a.bin"][1] == blobs["c.bin"] and t["b.bin"][1] == blobs["a.bin"]
    assert t["c.bin"][1] == blobs["b.bin"]


# -- names ------------------------------------------------------------------------------

NAMES = [
    "a name with spaces.txt",
    "  leading and trailing spaces  .md",
    "Crème brûlée/Zutaten für Großmütter.md",
    "日本語のノート/レシピ.txt",
    "Ελληνικά και русский.txt",
    "🍰 cake 🎂/🧁.md",
    "flag 🇫🇷 and family 👨‍👩‍👧.txt",
]


def test_names_with_spaces_non_ascii_and_emoji(world: World) -> None:
    a, b = world.pair()
    for i, name in enumerate(NAMES):
        write(a.folder / name, f"content {i}\n")
    settle(a, b)
    t = assert_same_trees(a, b)
    for i, name in enumerate(NAMES):
        assert t[name] == ("file", f"content {i}\n".encode(), False), name
    # And back: edit every one of them on the other side.
    for i, name in enumerate(NAMES):
        write(b.folder / name, f"content {i}, edited\n")
    settle(b, a)
    t = assert_same_trees(a, b)
    for i, name in enumerate(NAMES):
        assert t[name][1] == f"content {i}, edited\n".encode(), name


def test_nfd_name_next_to_nfc_name_in_one_folder(world: World) -> None:
    """``café.txt`` in NFC and in NFD (e + combining accent) side by side on one
    disk: one of them becomes a name-clash copy, nothing is overwritten."""
    a, b = world.pair()
    nfc = unicodedata.normalize("NFC", "café.txt")
    nfd = unicodedata.normalize("NFD", "café.txt")
    assert nfc != nfd
    write(a.folder / nfc, b"the NFC one\n")
    write(a.folder / nfd, b"the NFD one\n")
    settle(a, b)
    t = assert_same_trees(a, b)
    got = files(t)
    assert sorted(got.values()) == [b"the NFC one\n", b"the NFD one\n"], got
    assert nfc in got
    (copy,) = [p for p in got if p != nfc]
    assert copy in clash_copies(t) and copy.endswith(".txt"), copy
    assert "laptop" in copy


def test_nfd_name_and_nfc_name_created_on_two_devices(world: World) -> None:
    a, b = world.pair()
    nfc = unicodedata.normalize("NFC", "Crème brûlée.md")
    nfd = unicodedata.normalize("NFD", "Crème brûlée.md")
    write(a.folder / nfd, b"from the mac (NFD)\n")
    write(b.folder / nfc, b"from linux (NFC)\n")
    settle(a, b)
    t = assert_same_trees(a, b)
    got = files(t)
    assert sorted(got.values()) == [b"from linux (NFC)\n", b"from the mac (NFD)\n"], got
    assert nfc in got
    assert all(p.endswith(".md") for p in got)
    # Edits, renames and deletes reach the side that keeps the NFD name on disk.
    write(b.folder / nfc, b"edited on linux\n")
    settle(b, a)
    assert files(assert_same_trees(a, b))[nfc] == b"edited on linux\n"
    (b.folder / nfc).rename(b.folder / "Tarte Tatin.md")
    settle(b, a)
    assert files(assert_same_trees(a, b))["Tarte Tatin.md"] == b"edited on linux\n"


def test_new_files_arrive_in_a_folder_whose_name_is_nfd_on_disk(world: World) -> None:
    """A folder created on a Mac keeps its NFD name on the Mac's disk; files the
    other devices add to it must arrive there."""
    a, b = world.pair()
    nfd = unicodedata.normalize("NFD", "Señor Pérez")
    nfc = unicodedata.normalize("NFC", "Señor Pérez")
    write(a.folder / nfd / "old.md", b"old\n")
    settle(a, b)
    assert (b.folder / nfc / "old.md").read_bytes() == b"old\n"
    write(b.folder / nfc / "new.md", b"added on linux\n")
    write(b.folder / nfc / "sub" / "deeper.md", b"deeper\n")
    settle(b, a)
    t = assert_same_trees(a, b)
    assert t[f"{nfc}/new.md"][1] == b"added on linux\n"
    assert t[f"{nfc}/sub/deeper.md"][1] == b"deeper\n"


def test_names_differing_only_by_case(world: World) -> None:
    """``Notes.txt`` and ``notes.txt`` cannot live side by side on macOS or
    Windows: one becomes a conflict copy, never an overwrite."""
    a, b = world.pair()
    write(a.folder / "Notes.txt", b"upper\n")
    write(b.folder / "notes.txt", b"lower\n")
    settle(a, b)
    t = assert_same_trees(a, b)
    got = files(t)
    assert sorted(got.values()) == [b"lower\n", b"upper\n"], got
    assert len(clash_copies(t) + conflict_copies(t)) == 1, sorted(t)


def test_folders_differing_only_by_case(world: World) -> None:
    """``Photos/`` and ``photos/``: one becomes a conflict copy, the sync goes on."""
    a, b = world.pair()
    write(a.folder / "Photos" / "a.txt", b"in Photos\n")
    write(a.folder / "photos" / "b.txt", b"in photos\n")
    write(b.folder / "PHOTOS" / "c.txt", b"in PHOTOS\n")
    settle(a, b)
    t = assert_same_trees(a, b)
    assert sorted(files(t).values()) == [b"in PHOTOS\n", b"in Photos\n", b"in photos\n"]
    folders = [p for p, n in t.items() if n == ("dir",)]
    assert len({f.casefold() for f in folders}) == len(folders), folders


# -- metadata only ------------------------------------------------------------------------


def test_executable_bit_change_only(world: World) -> None:
    user = world.user()
    pa, pb = world.proxy(), world.proxy()
    a = world.client(user, "laptop", via=pa)
    b = world.client(user, "desktop", via=pb)
    data = b"#!/bin/sh\n" + random.Random(5).randbytes(256 * KIB)
    write(a.folder / "run.sh", data)
    settle(a, b)
    pa.reset()
    pb.reset()
    os.chmod(a.folder / "run.sh", 0o755)
    ra = a.sync_once()
    up = pa.reset()
    rb = b.sync_once()
    down = pb.reset()
    assert ra.converged and ra.uploaded == 1, ra
    assert rb.converged and rb.downloaded == 1, rb
    assert up.total < 2 * KIB, f"an exec-bit change sent {up}"
    assert down.total < 2 * KIB, f"an exec-bit change cost the receiver {down}"
    settle(a, b)
    t = assert_same_trees(a, b)
    assert t["run.sh"] == ("file", data, True)
    assert os.stat(b.folder / "run.sh").st_mode & 0o111
    # And back, from the other side.
    os.chmod(b.folder / "run.sh", 0o644)
    settle(b, a)
    assert assert_same_trees(a, b)["run.sh"] == ("file", data, False)


def test_mtime_change_only_touch(world: World) -> None:
    user = world.user()
    pa, pb = world.proxy(), world.proxy()
    a = world.client(user, "laptop", via=pa)
    b = world.client(user, "desktop", via=pb)
    data = random.Random(6).randbytes(256 * KIB)
    write(a.folder / "scan.pdf", data)
    settle(a, b)
    pa.reset()
    pb.reset()
    new = bump_mtime(a.folder / "scan.pdf", 3600)
    ra = a.sync_once()
    up = pa.reset()
    rb = b.sync_once()
    down = pb.reset()
    assert ra.converged, ra
    assert up.total < 2 * KIB, f"a touch sent {up}: content was uploaded"
    assert down.total < 2 * KIB, f"a touch cost the receiver {down}"
    assert rb.converged, rb
    settle(a, b)
    assert assert_same_trees(a, b)["scan.pdf"] == ("file", data, False)
    assert mtime_ns(b.folder / "scan.pdf") == new


# -- symlinks ---------------------------------------------------------------------------


def test_symlink_to_a_file_inside_the_folder(world: World) -> None:
    a, b = world.pair()
    write(a.folder / "recipes" / "bread.md", "flour, water, salt\n")
    os.symlink("recipes/bread.md", a.folder / "favourite.md")
    os.symlink("recipes", a.folder / "shortcut")
    settle(a, b)
    t = assert_same_trees(a, b)
    assert t["favourite.md"] == ("link", "recipes/bread.md")
    assert t["shortcut"] == ("link", "recipes")
    assert (b.folder / "favourite.md").is_symlink()
    assert (b.folder / "favourite.md").read_bytes() == b"flour, water, salt\n"
    # Editing through the link edits the target, which syncs as the target.
    write(a.folder / "recipes" / "bread.md", "flour, water, salt, yeast\n")
    settle(a, b)
    t = assert_same_trees(a, b)
    assert t["favourite.md"] == ("link", "recipes/bread.md")
    assert t["recipes/bread.md"][1] == b"flour, water, salt, yeast\n"
    # Retargeted on one side, removed on the other: both reach the other side.
    write(a.folder / "recipes" / "cake.md", "sugar\n")
    (a.folder / "favourite.md").unlink()
    os.symlink("recipes/cake.md", a.folder / "favourite.md")
    settle(a, b)
    assert assert_same_trees(a, b)["favourite.md"] == ("link", "recipes/cake.md")
    (a.folder / "shortcut").unlink()
    settle(a, b)
    assert "shortcut" not in assert_same_trees(a, b)


def test_symlink_pointing_outside_is_not_followed(world: World, tmp_path: Path) -> None:
    a, b = world.pair()
    outside = tmp_path / "outside"
    secret = b"outside secret " + random.Random(9).randbytes(4 * KIB)
    write(outside / "secret.txt", secret)
    write(outside / "dir" / "inner.txt", b"inner secret\n")
    os.symlink(outside / "secret.txt", a.folder / "abs-link.txt")
    os.symlink("../../outside/dir", a.folder / "rel-dir-link")
    settle(a, b)
    t = assert_same_trees(a, b)
    assert t == {
        "abs-link.txt": ("link", str(outside / "secret.txt")),
        "rel-dir-link": ("link", "../../outside/dir"),
    }
    # The target's bytes never went to the server.
    for data in (secret, b"inner secret\n"):
        assert not world.in_history(a, "abs-link.txt", data)
    assert [e.kind.value for e in world.history(a, "abs-link.txt")] == ["symlink"]
    assert world.history(a, "rel-dir-link/inner.txt") == []
    assert world.server_lacks(a, secret), "the outside target's bytes reached the server"


def test_broken_symlink(world: World) -> None:
    a, b = world.pair()
    os.symlink("does/not/exist.txt", a.folder / "dangling")
    settle(a, b)
    t = assert_same_trees(a, b)
    assert t == {"dangling": ("link", "does/not/exist.txt")}
    assert (b.folder / "dangling").is_symlink() and not (b.folder / "dangling").exists()
    # Retargeting it syncs too.
    (b.folder / "dangling").unlink()
    os.symlink("still/missing.txt", b.folder / "dangling")
    settle(b, a)
    assert assert_same_trees(a, b) == {"dangling": ("link", "still/missing.txt")}
    # And deleting it syncs too.
    (b.folder / "dangling").unlink()
    settle(b, a)
    assert assert_same_trees(a, b) == {}


# -- kind changes -----------------------------------------------------------------------


def test_file_replaced_by_a_folder_of_the_same_name(world: World) -> None:
    a, b = world.pair()
    write(a.folder / "thing", "I was a file\n")
    settle(a, b)
    (a.folder / "thing").unlink()
    write(a.folder / "thing" / "inside.txt", "now a folder\n")
    settle(a, b)
    t = assert_same_trees(a, b)
    assert t == {"thing": ("dir",), "thing/inside.txt": ("file", b"now a folder\n", False)}
    world.assert_kept([a, b], "thing", b"I was a file\n")


def test_folder_replaced_by_a_file_of_the_same_name(world: World) -> None:
    a, b = world.pair()
    write(a.folder / "thing" / "inside.txt", "in a folder\n")
    write(a.folder / "thing" / "sub" / "deeper.txt", "deeper\n")
    settle(a, b)
    shutil.rmtree(a.folder / "thing")
    write(a.folder / "thing", "I am a file now\n")
    settle(a, b)
    t = assert_same_trees(a, b)
    assert t == {"thing": ("file", b"I am a file now\n", False)}
    world.assert_kept([a, b], "thing/sub/deeper.txt", b"deeper\n")


# -- big and odd content ------------------------------------------------------------------


def test_large_binary_file_of_200_mb(world: World) -> None:
    a, b = world.pair()
    rnd = random.Random(200)
    size = 200 * 2**20 + 12345
    with open(a.folder / "disk.img", "wb") as f:
        left = size
        while left:
            n = min(left, 8 * 2**20)
            f.write(rnd.randbytes(n))
            left -= n
    settle(a, b)
    t = assert_same_trees(a, b)
    node = t["disk.img"]
    assert isinstance(node[1], Big) and node[1].size == size


def test_text_file_of_one_10_mb_line(world: World) -> None:
    a, b = world.pair()
    rnd = random.Random(10)
    alphabet = "abcdefghijklmnopqrstuvwxyz ,.;"
    line = "".join(rnd.choices(alphabet, k=10 * 2**20)).encode()
    write(a.folder / "one-line.txt", line)
    settle(a, b)
    assert assert_same_trees(a, b)["one-line.txt"][1] == line
    # An edit in the middle of the line, from the other side.
    edited = line[: 5 * 2**20] + b"EDIT" + line[5 * 2**20 + 4 :] + b"\n"
    write(b.folder / "one-line.txt", edited)
    settle(b, a)
    assert assert_same_trees(a, b)["one-line.txt"][1] == edited


def test_file_that_is_not_utf8_with_a_text_extension(world: World) -> None:
    a, b = world.pair()
    latin1 = "".join(f"Crème brûlée n°{i}, très bon\n" for i in range(200)).encode("latin-1")
    data = latin1 + b"\xff\xfe\x00\x01 binary tail \x80\x81\n"
    write(a.folder / "old-notes.txt", data)
    settle(a, b)
    assert assert_same_trees(a, b)["old-notes.txt"][1] == data
    edited = data.replace("n°100,".encode("latin-1"), "n°100 (édité),".encode("latin-1"))
    assert edited != data
    write(b.folder / "old-notes.txt", edited)
    settle(b, a)
    t = assert_same_trees(a, b)
    assert t["old-notes.txt"][1] == edited
    assert conflict_copies(t) == []
    world.assert_kept([a, b], "old-notes.txt", data, edited)


def test_a_folder_move_costs_each_side_about_one_entry(world: World) -> None:
    """A 100-file folder move: the mover foresees the entries the server writes
    (no list afterwards) and the receiver's list folds them into the move's own
    entry (PROTOCOL §4.16), so neither side hears of each file."""
    user = world.user()
    pa, pb = world.proxy(), world.proxy()
    a = world.client(user, "laptop", via=pa)
    b = world.client(user, "desktop", via=pb)
    contents = {f"notes/sub{i % 3}/n{i:03d}.md": text(3, tag=f"n{i}") for i in range(100)}
    for p, data in contents.items():
        write(a.folder / p, data)
    settle(a, b)
    pa.reset()
    pb.reset()

    (a.folder / "notes").rename(a.folder / "archive")
    ra = a.sync_once()
    up = pa.reset()
    rb = b.sync_once()
    down = pb.reset()
    assert ra.moved == 100 and ra.uploaded == 0 and ra.converged, ra
    assert rb.moved == 100 and rb.downloaded == 0 and rb.converged, rb
    # Measured: 441 B up and 313 B down for the mover (one commit), 449 B for
    # the receiver (one list); 202 entries listed one by one were 3.1 KB gzip.
    assert up.total < KIB, f"the mover's folder move cost {up}"
    assert down.total < KIB, f"the receiver's folder move cost {down}"
    settle(a, b)
    t = assert_same_trees(a, b)
    assert files(t) == {"archive" + p[len("notes") :]: d.encode() for p, d in contents.items()}


def test_a_folder_move_over_changes_the_receiver_missed_still_lands_them(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """The receiver has not heard of an edit, a new file and a deletion inside
    the folder (made on a third device) when the folder moves: the folded move
    does not match its view, so it lists the move entry by entry, and ends with
    every change at the new place. The mover had not heard of them either: it
    cannot foresee what the server moved, and lists."""
    user = world.user()
    a, b, c = (world.client(user, d) for d in ("laptop", "desktop", "phone"))
    for i in range(12):
        write(a.folder / f"notes/n{i:02d}.md", text(4, tag=f"n{i}"))
    settle(a, b, c)
    write(c.folder / "notes/n03.md", "edited on the phone\n")
    write(c.folder / "notes/new.md", "new on the phone\n")
    (c.folder / "notes/n07.md").unlink()
    assert c.sync_once().converged

    (a.folder / "notes").rename(a.folder / "kept")
    ra = a.sync_once()
    assert ra.converged and not ra.problems, ra
    with caplog.at_level(logging.INFO, logger="linesync.client"):
        rb = b.sync_once()
    assert rb.converged and not rb.problems, rb
    assert "kept: a folded folder move" in caplog.text, "the receiver's view was taken as matching"
    settle(a, b, c)
    t = assert_same_trees(a, b, c)
    assert "notes" not in t and "kept/n07.md" not in t
    assert t["kept/n03.md"][1] == b"edited on the phone\n"
    assert t["kept/new.md"][1] == b"new on the phone\n"
    assert len(files(t)) == 12
