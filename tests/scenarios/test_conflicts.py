"""Scenarios, section "Concurrency and conflicts": both sides change the same
thing, or a file changes while linesync handles it. Every version a user saved
survives (at its path, in a conflict copy, or in the server's history) and the
folders end up holding the same tree."""

from __future__ import annotations

import asyncio
import os
import random
import re
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from linesync.client.api import Client
from linesync.client.localfs import LocalFS
from linesync.client.remote import Remote
from tests.scenarios.helpers import (
    World,
    assert_same_trees,
    conflict_copies,
    files,
    lines,
    settle,
    write,
)

KIB = 1024
STAMP = r"\d{4}-\d{2}-\d{2} \d{6}"


def doc(n: int = 40) -> list[str]:
    return lines(n)


def join(ls: list[str]) -> bytes:
    return "".join(ls).encode()


def edited(ls: list[str], i: int, new: str) -> list[str]:
    out = list(ls)
    out[i] = new
    return out


# -- both sides edit ------------------------------------------------------------------------


def test_both_sides_edit_different_lines_merged_without_conflict_copy(world: World) -> None:
    a, b = world.pair()
    base = doc()
    write(a.folder / "notes.md", join(base))
    settle(a, b)
    ours = edited(base, 5, "line 005 changed on the laptop\n")
    theirs = edited(base, 30, "line 030 changed on the desktop\n")
    write(a.folder / "notes.md", join(ours))
    write(b.folder / "notes.md", join(theirs))
    a.sync_once()
    rb = b.sync_once()
    assert rb.merged == 1 and rb.conflicts == [], rb
    settle(a, b)
    t = assert_same_trees(a, b)
    want = edited(ours, 30, "line 030 changed on the desktop\n")
    assert t["notes.md"][1] == join(want)
    assert conflict_copies(t) == []
    # The laptop's version is in the history; the desktop's lives on in the merge.
    world.assert_kept([a, b], "notes.md", join(base), join(ours))


def test_both_sides_edit_the_same_line_conflict_copy_keeps_the_extension(world: World) -> None:
    a, b = world.pair()
    base = doc()
    write(a.folder / "menu.md", join(base))
    settle(a, b)
    ours = join(edited(base, 10, "line 010: soup, from the laptop\n"))
    theirs = join(edited(base, 10, "line 010: salad, from the desktop\n"))
    write(a.folder / "menu.md", ours)
    write(b.folder / "menu.md", theirs)
    settle(a, b)
    t = assert_same_trees(a, b)
    assert t["menu.md"][1] == ours  # the version the server took first stays at the path
    (copy,) = conflict_copies(t)
    assert t[copy][1] == theirs
    assert re.fullmatch(rf"menu \(conflict from desktop {STAMP}\)\.md", copy), copy
    assert copy.endswith(".md")
    world.assert_kept([a, b], "menu.md", join(base), ours, theirs)


def test_one_side_edits_the_other_deletes_the_edit_survives(world: World) -> None:
    a, b = world.pair()
    for name in ("edit-first.txt", "delete-first.txt"):
        write(a.folder / name, join(doc(10)))
    for i in range(10):
        write(a.folder / "other" / f"{i}.txt", f"{i}\n")
    settle(a, b)
    e1 = join(edited(doc(10), 3, "edited on the laptop\n"))
    e2 = join(edited(doc(10), 4, "edited on the desktop\n"))
    # The edit reaches the server first, then the delete comes in.
    write(a.folder / "edit-first.txt", e1)
    (b.folder / "edit-first.txt").unlink()
    # The delete reaches the server first, then the edit comes in.
    (a.folder / "delete-first.txt").unlink()
    write(b.folder / "delete-first.txt", e2)
    a.sync_once()
    b.sync_once()
    settle(a, b)
    t = assert_same_trees(a, b)
    assert t["edit-first.txt"][1] == e1
    assert t["delete-first.txt"][1] == e2


def test_one_side_deletes_a_folder_the_other_edits_a_file_in_it_the_edit_survives(
    world: World,
) -> None:
    a, b = world.pair()
    for i in range(3):
        write(a.folder / "trip" / f"day{i}.md", f"day {i}\n")
    for i in range(10):
        write(a.folder / "other" / f"{i}.txt", f"{i}\n")
    settle(a, b)
    shutil.rmtree(a.folder / "trip")
    write(b.folder / "trip" / "day1.md", "day 1, with notes from the desktop\n")
    settle(a, b)
    t = assert_same_trees(a, b)
    assert t["trip/day1.md"][1] == b"day 1, with notes from the desktop\n"
    assert "trip/day0.md" not in t


@pytest.mark.parametrize("first", ["replacer", "editor"])
def test_file_replaced_by_a_folder_while_the_other_side_edits_it(world: World, first: str) -> None:
    """Replacing a file by a folder deletes the file; the concurrent edit survives,
    and so does the new folder."""
    a, b = world.pair()
    write(a.folder / "plan", "the plan\n")
    settle(a, b)
    (a.folder / "plan").unlink()
    write(a.folder / "plan" / "step1.md", "step 1\n")
    write(b.folder / "plan", "the plan, edited on the desktop\n")
    settle(*((a, b) if first == "replacer" else (b, a)))
    t = assert_same_trees(a, b)
    on_disk = set(files(t).values())
    assert b"the plan, edited on the desktop\n" in on_disk, sorted(t)
    assert b"step 1\n" in on_disk, sorted(t)


@pytest.mark.parametrize("first", ["replacer", "editor"])
def test_folder_replaced_by_a_file_while_the_other_side_edits_inside_it(
    world: World, first: str
) -> None:
    a, b = world.pair()
    write(a.folder / "plan" / "step1.md", "step 1\n")
    write(a.folder / "plan" / "step2.md", "step 2\n")
    settle(a, b)
    shutil.rmtree(a.folder / "plan")
    write(a.folder / "plan", "the plan is a file now\n")
    write(b.folder / "plan" / "step1.md", "step 1, edited on the desktop\n")
    settle(*((a, b) if first == "replacer" else (b, a)))
    t = assert_same_trees(a, b)
    on_disk = set(files(t).values())
    assert b"step 1, edited on the desktop\n" in on_disk, sorted(t)
    assert b"the plan is a file now\n" in on_disk, sorted(t)


def test_both_sides_create_the_same_new_path_with_different_contents(world: World) -> None:
    a, b = world.pair()
    write(a.folder / "ideas" / "todo.txt", "from the laptop\n")
    write(b.folder / "ideas" / "todo.txt", "from the desktop\n")
    settle(a, b)
    t = assert_same_trees(a, b)
    assert t["ideas/todo.txt"][1] == b"from the laptop\n"
    (copy,) = conflict_copies(t)
    assert copy.startswith("ideas/todo (conflict from desktop ") and copy.endswith(".txt")
    assert t[copy][1] == b"from the desktop\n"


def test_both_sides_create_the_same_binary_path(world: World) -> None:
    a, b = world.pair()
    pa, pb = random.Random(1).randbytes(100 * KIB), random.Random(2).randbytes(100 * KIB)
    write(a.folder / "scan.pdf", pa)
    write(b.folder / "scan.pdf", pb)
    settle(a, b)
    t = assert_same_trees(a, b)
    assert sorted(files(t).values()) == sorted([pa, pb])
    (copy,) = conflict_copies(t)
    assert copy.endswith(".pdf")


def test_both_sides_rename_the_same_file_to_different_names(world: World) -> None:
    a, b = world.pair()
    data = join(doc(20))
    write(a.folder / "draft.md", data)
    write(a.folder / "unrelated.md", "x\n")
    settle(a, b)
    (a.folder / "draft.md").rename(a.folder / "final.md")
    (b.folder / "draft.md").rename(b.folder / "published.md")
    settle(a, b)
    t = assert_same_trees(a, b)
    assert "draft.md" not in t, sorted(t)
    named = [p for p in ("final.md", "published.md") if p in t]
    assert named, f"the renamed file is gone: {sorted(t)}"
    for p in named:
        assert t[p][1] == data
    assert t["unrelated.md"][1] == b"x\n"


# -- a file changes while linesync handles it ------------------------------------------------


def test_edit_while_the_other_side_is_downloading_that_file(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = world.pair()
    base = doc(60)
    write(a.folder / "plan.md", join(base))
    settle(a, b)
    remote_edit = join(edited(base, 20, "laptop edit of line 20\n"))
    local_edit = join(edited(base, 20, "desktop edit of line 20, typed during the download\n"))
    write(a.folder / "plan.md", remote_edit)
    a.sync_once()

    original = LocalFS.put_in_place
    fired: list[str] = []

    def put_in_place(self: LocalFS, tmp: Path, path: str, *args: Any, **kw: Any) -> Any:
        if self.root == b.folder and path == "plan.md" and not fired:
            fired.append(path)  # the user saves just as the download lands
            time.sleep(0.002)
            write(b.folder / "plan.md", local_edit)
        return original(self, tmp, path, *args, **kw)

    monkeypatch.setattr(LocalFS, "put_in_place", put_in_place)
    b.sync_once()
    monkeypatch.undo()
    assert fired, "the download never reached the disk"
    settle(b, a)
    t = assert_same_trees(a, b)
    on_disk = set(files(t).values())
    assert local_edit in on_disk, "the edit made during the download was lost"
    assert remote_edit in on_disk, "the downloaded version was lost"


def test_file_edited_while_being_hashed_is_never_uploaded_half_written(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = world.pair()
    rnd = random.Random(4)
    full = b"".join(
        f"{i:05d} {rnd.randbytes(30).hex()}\n".encode() for i in range(4000)
    )  # ~280 KB of text
    half = full[: len(full) // 2]
    original = LocalFS.read
    calls: list[str] = []

    def read(self: LocalFS, path: str) -> Any:
        if self.root == a.folder and path == "export.csv" and not calls:
            calls.append(path)
            got = original(self, path)  # hashed while the writer is halfway through
            with open(a.folder / "export.csv", "ab") as f:
                f.write(full[len(half) :])  # ... and the writer finishes right after
            return got
        return original(self, path)

    write(a.folder / "export.csv", b"")
    settle(a, b)
    monkeypatch.setattr(LocalFS, "read", read)
    time.sleep(0.01)
    write(a.folder / "export.csv", half)
    a.sync_once()
    monkeypatch.undo()
    assert calls
    settle(a, b)
    assert assert_same_trees(a, b)["export.csv"][1] == full
    assert not world.in_history(a, "export.csv", half), "a half-written file was uploaded"


def test_file_edited_while_being_uploaded_is_never_uploaded_half_written(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = world.pair()
    rnd = random.Random(5)
    v1 = rnd.randbytes(512 * KIB)
    v2 = rnd.randbytes(512 * KIB)
    half = v2[: len(v2) // 2]
    original = Remote.upload
    calls: list[int] = []

    async def upload(self: Remote, ns: int, frames: Any) -> Any:
        if not calls:
            calls.append(ns)
            write(a.folder / "video.bin", half)  # a new save starts during the upload
            try:
                return await original(self, ns, frames)
            finally:
                with open(a.folder / "video.bin", "ab") as f:
                    f.write(v2[len(half) :])
        return await original(self, ns, frames)

    write(a.folder / "video.bin", v1)
    monkeypatch.setattr(Remote, "upload", upload)
    a.sync_once()
    monkeypatch.undo()
    assert calls, "no chunk upload happened"
    settle(a, b)
    assert assert_same_trees(a, b)["video.bin"][1] == v2
    assert not world.in_history(a, "video.bin", half), "a half-written file was uploaded"
    world.assert_kept([a, b], "video.bin", v1, v2)


# -- editors' save patterns ---------------------------------------------------------------------


def _save_pattern_setup(world: World) -> tuple[Client, Client, list[str]]:
    a, b = world.pair()
    base = doc(30)
    write(a.folder / "essay.md", join(base))
    settle(a, b)
    return a, b, base


def test_editor_save_write_temp_file_then_rename_over_the_target(world: World) -> None:
    a, b, base = _save_pattern_setup(world)
    v2 = join(edited(base, 7, "saved atomically\n"))
    tmp = a.folder / ".essay.md.sb-1a2b3c"
    write(tmp, v2)
    os.replace(tmp, a.folder / "essay.md")
    settle(a, b)
    t = assert_same_trees(a, b)
    assert t == {"essay.md": ("file", v2, False)}
    # Again, with a sync while the temp file exists (it is seen, then renamed over).
    v3 = join(edited(base, 8, "saved atomically, slowly\n"))
    tmp = a.folder / "essay.md.tmp.4242"
    write(tmp, v3)
    a.sync_once()
    os.replace(tmp, a.folder / "essay.md")
    settle(a, b)
    t = assert_same_trees(a, b)
    assert t == {"essay.md": ("file", v3, False)}
    world.assert_kept([a, b], "essay.md", join(base), v2, v3)


def test_editor_save_delete_then_recreate(world: World) -> None:
    a, b, base = _save_pattern_setup(world)
    v2 = join(edited(base, 3, "recreated\n"))
    (a.folder / "essay.md").unlink()
    write(a.folder / "essay.md", v2)
    settle(a, b)
    assert assert_same_trees(a, b) == {"essay.md": ("file", v2, False)}
    # Again, with a sync in the gap.
    v3 = join(edited(base, 4, "recreated after a sync in between\n"))
    (a.folder / "essay.md").unlink()
    a.sync_once()
    write(a.folder / "essay.md", v3)
    settle(a, b)
    t = assert_same_trees(a, b)
    assert t == {"essay.md": ("file", v3, False)}
    assert conflict_copies(t) == []
    world.assert_kept([a, b], "essay.md", join(base), v2, v3)


def test_editor_save_truncate_then_write(world: World) -> None:
    a, b, base = _save_pattern_setup(world)
    v2 = join(edited(base, 12, "rewritten in place\n"))
    time.sleep(0.01)
    with open(a.folder / "essay.md", "r+b") as f:
        f.truncate(0)
        f.write(v2)
    settle(a, b)
    assert assert_same_trees(a, b) == {"essay.md": ("file", v2, False)}
    # Again, with a sync between the truncate and the write.
    v3 = join(edited(base, 13, "rewritten in place, slowly\n"))
    time.sleep(0.01)
    with open(a.folder / "essay.md", "r+b") as f:
        f.truncate(0)
        f.flush()
        a.sync_once()
        f.write(v3)
    settle(a, b)
    t = assert_same_trees(a, b)
    assert t == {"essay.md": ("file", v3, False)}
    assert conflict_copies(t) == []
    world.assert_kept([a, b], "essay.md", join(base), v2, v3)


# -- many saves --------------------------------------------------------------------------------


def test_100_rapid_saves_settle_on_the_last_one_without_conflict_copies(world: World) -> None:
    """100 saves within about a second while both clients watch their folders."""
    a, b = world.pair()
    base = doc(50)
    write(a.folder / "live.md", join(base))
    settle(a, b)
    saves = [join(edited(base, i % 50, f"save number {i}\n")) for i in range(100)]

    def save_all() -> None:
        for data in saves:
            with open(a.folder / "live.md", "r+b") as f:  # an in-place save
                f.truncate(0)
                f.write(data)
            time.sleep(0.005)

    async def go() -> None:
        stop = asyncio.Event()
        tasks = [asyncio.create_task(c.watch(stop)) for c in (a, b)]
        try:
            await asyncio.sleep(0.3)
            started = time.monotonic()
            await asyncio.to_thread(save_all)  # the saves do not wait for the clients
            assert time.monotonic() - started < 3.0
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if (b.folder / "live.md").read_bytes() == saves[-1]:
                    break
                await asyncio.sleep(0.1)
        finally:
            stop.set()
            await asyncio.gather(*tasks)

    asyncio.run(go())
    settle(a, b)
    t = assert_same_trees(a, b)
    assert t["live.md"][1] == saves[-1]
    assert conflict_copies(t) == [], conflict_copies(t)
    assert sorted(t) == ["live.md"]


def test_two_edits_of_the_same_size_within_one_second(world: World) -> None:
    """Same size, same mtime (as on a file system with 1-second timestamps): the
    second edit still syncs, from the side that wrote it and back."""
    a, b = world.pair()
    p = a.folder / "pin.txt"
    write(p, b"pin: 1111\n")
    second = (time.time_ns() // 10**9) * 10**9
    os.utime(p, ns=(second, second))
    settle(a, b)
    write(p, b"pin: 2222\n")
    os.utime(p, ns=(second, second))
    ra = a.sync_once()
    assert ra.uploaded == 1, f"the second same-size edit was not seen: {ra}"
    settle(a, b)
    assert assert_same_trees(a, b)["pin.txt"][1] == b"pin: 2222\n"
    # Right after that download, the other side edits again: same size, same time.
    q = b.folder / "pin.txt"
    theirs = os.stat(q).st_mtime_ns
    write(q, b"pin: 3333\n")
    os.utime(q, ns=(theirs, theirs))
    settle(b, a)
    t = assert_same_trees(a, b)
    assert t["pin.txt"][1] == b"pin: 3333\n"
    world.assert_kept([a, b], "pin.txt", b"pin: 1111\n", b"pin: 2222\n", b"pin: 3333\n")
