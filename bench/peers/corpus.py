"""The benchmark's folders, seeded and deterministic, and the changes made to them.

Main corpus: about 2,000 small text files (0.5-8 KB) in nested folders with
non-ASCII, space and emoji names; 20 line-oriented text files of 1-8 MB
(markdown, CSV, logs); 50 binaries of 50 KB-4 MB (random and compressible);
an empty file; a 100-file folder for the move scenario."""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.support import corpus as gen

MIB = 2**20

# Files the scenarios change.
MD = "docs/manual.md"
LOG = "logs/server.log"
BIN4 = "media/random 4MiB.bin"
BIN3 = "media/archive 3MiB.tar"
BIN3_RENAMED = "media/archive 3MiB (renamed).tar"
MOVE_SRC = "projects/old project"
MOVE_DST = "archive/2024/old project"
TOUCHED = "notes/plain/00/note 0000.md"
DELETED = "notes/plain/00/note 0001.md"
SMALL_EDIT = "notes/plain/00/note 0002.md"
EMPTY = "misc/empty.txt"
BIG_FILE = "media/video 200MB.bin"

_TOPICS = [
    "notes/plain",
    "notes/recettes d'été",
    "notes/日本語 メモ",
    "notes/emoji 🎉 ideas",
    "work/meeting notes",
    "work/Ünïcödé ñandú",
    "journal/2024",
    "journal/Привет мир",
]
_NAMES = [
    "note {i:04d}.md",
    "café {i:04d}.txt",
    "😀 idea {i:04d}.md",
    "résumé_{i:04d}.md",
    "todo list {i:04d}.txt",
    "Straße {i:04d}.md",
]
_LOW_ENTROPY = bytes(65 + (i % 16) for i in range(256))


@dataclass(frozen=True)
class Spec:
    small: int = 2000
    texts: int = 20  # line-oriented text files, MD and LOG among them
    binaries: int = 50  # BIN4 and BIN3 among them
    md_size: int = 4_000_000
    log_size: int = 5_000_000
    bin4_size: int = 4 * MIB
    bin3_size: int = 3 * MIB
    text_range: tuple[int, int] = (1_000_000, 8_000_000)
    bin_range: tuple[int, int] = (50_000, 4_000_000)
    move_files: int = 100

    def describe(self) -> str:
        return (
            f"{self.small:,} small text files (0.5-8 KB), {self.texts} text files of "
            f"{self.text_range[0] / 1e6:g}-{self.text_range[1] / 1e6:g} MB, {self.binaries} "
            f"binaries of {self.bin_range[0] / 1e3:g} KB-{self.bin_range[1] / 1e6:g} MB, an "
            f"empty file, a {self.move_files}-file folder"
        )


FULL = Spec()
QUICK = Spec(
    small=200,
    texts=2,
    binaries=5,
    md_size=1_000_000,
    log_size=1_000_000,
    bin4_size=1 * MIB,
    bin3_size=768 * 1024,
    text_range=(1_000_000, 1_000_000),
    bin_range=(50_000, 500_000),
)


def _write(root: Path, rel: str, data: bytes) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)


def csv_table(size: int, seed: int) -> bytes:
    rnd = random.Random(seed)
    cats = ["food", "rent", "travel", "books", "tools", "gifts", "fees"]
    out = ["id,date,account,amount,category,memo"]
    total = len(out[0]) + 1
    n = 0
    while total < size:
        n += 1
        line = (
            f"{n},2024-{rnd.randint(1, 12):02d}-{rnd.randint(1, 28):02d},"
            f"ACC{rnd.randint(1000, 9999)},{rnd.randint(1, 99999) / 100:.2f},"
            f"{rnd.choice(cats)},{rnd.choice(['', 'paid', 'refund', 'split', 'card'])}"
        )
        out.append(line)
        total += len(line) + 1
    return ("\n".join(out) + "\n").encode()


def compressible(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size).translate(_LOW_ENTROPY)


def small_name(i: int) -> str:
    topic = _TOPICS[i % len(_TOPICS)] if i >= 3 else _TOPICS[0]
    sub = (i // len(_TOPICS)) % 10
    return f"{topic}/{sub:02d}/" + _NAMES[(i // 80) % len(_NAMES) if i >= 3 else 0].format(i=i)


def build_small(root: Path, n: int) -> None:
    rnd = random.Random(11)
    for i in range(n):
        _write(root, small_name(i), gen.markdown(rnd.randint(500, 8000), seed=10_000 + i))


def build(root: Path, spec: Spec) -> None:
    """The main corpus, in ``root``."""
    rnd = random.Random(7)
    build_small(root, spec.small)
    _write(root, MD, gen.markdown(spec.md_size, seed=1000))
    _write(root, LOG, gen.log_lines(spec.log_size, seed=1001))
    for i in range(spec.texts - 2):
        size = rnd.randint(*spec.text_range)
        kind = i % 3
        if kind == 0:
            _write(root, f"docs/chapter {i:02d}.md", gen.markdown(size, seed=1100 + i))
        elif kind == 1:
            _write(root, f"data/ledger-{i:02d}.csv", csv_table(size, seed=1100 + i))
        else:
            _write(root, f"logs/app-{i:02d}.log", gen.log_lines(size, seed=1100 + i))
    _write(root, BIN4, gen.random_bytes(spec.bin4_size, seed=2000))
    _write(root, BIN3, gen.random_bytes(spec.bin3_size, seed=2001))
    for i in range(spec.binaries - 2):
        size = rnd.randint(*spec.bin_range)
        if i % 2:
            _write(root, f"media/blob {i:02d}.bin", gen.random_bytes(size, seed=2100 + i))
        else:
            _write(root, f"media/db-{i:02d}.sqlite", compressible(size, seed=2100 + i))
    _write(root, EMPTY, b"")
    for i in range(spec.move_files):
        sub = "src/" if i % 5 == 0 else ""
        _write(root, f"{MOVE_SRC}/{sub}file {i:03d}.txt", gen.markdown(1500, seed=3000 + i))


def build_scale(root: Path, n: int) -> None:
    """``n`` small text files (200 B-2 KB), 100 a folder."""
    rnd = random.Random(99)
    pool = [gen.markdown(2000, seed=50_000 + k) for k in range(256)]
    for i in range(n):
        folder = root / f"s{i // 10_000:02d}" / f"d{(i // 100) % 100:02d}"
        if i % 100 == 0:
            folder.mkdir(parents=True, exist_ok=True)
        body = pool[rnd.randrange(len(pool))][: rnd.randint(200, 2000)]
        (folder / f"f{i:06d}.md").write_bytes(b"# file %d\n" % i + body)


def age(root: Path, base: int = 1_700_000_000) -> None:
    """Give every file a fixed modification time well in the past (deterministic, and
    no tool sees a file written a moment before its first sync)."""
    paths = sorted(p for p in root.rglob("*") if p.is_file())
    for i, p in enumerate(paths):
        os.utime(p, (base + i, base + i))


def copy_tree(src: Path, dst: Path) -> None:
    """A copy with the same contents and times (cp -a: fast, keeps mtimes)."""
    dst.mkdir(parents=True, exist_ok=True)
    if shutil.which("cp"):
        import subprocess

        subprocess.run(["cp", "-a", f"{src}/.", str(dst)], check=True)
    else:  # pragma: no cover
        shutil.copytree(src, dst, dirs_exist_ok=True)


# -- the changes ----------------------------------------------------------------------
@dataclass(frozen=True)
class Change:
    """A change made in A. ``apply`` returns the relative paths it touched (old and
    new); ``mtime`` says the touched file's time must arrive too."""

    key: str
    title: str
    apply: Callable[[Path, int], list[str]]
    kind: str  # content | metadata | move | none
    mtime: bool = False


def _edit_mid(root: Path, run: int) -> list[str]:
    p = root / MD
    p.write_bytes(gen.edit_middle_line(p.read_bytes(), f"Edited on device A, run {run}.".encode()))
    return [MD]


def _insert_top(root: Path, run: int) -> list[str]:
    p = root / MD
    p.write_bytes(f"A new first line, run {run}.\n".encode() + p.read_bytes())
    return [MD]


def _append(root: Path, run: int) -> list[str]:
    with open(root / LOG, "ab") as f:
        f.write(f"1700009999 INFO worker-1 one more line, run {run}\n".encode())
    return [LOG]


def _overwrite_4k(root: Path, run: int) -> list[str]:
    p = root / BIN4
    size = p.stat().st_size
    with open(p, "r+b") as f:
        f.seek(size // 2)
        f.write(random.Random(run).randbytes(4096))
    return [BIN4]


def _touch(root: Path, run: int) -> list[str]:
    p = root / TOUCHED
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 3600 * 10**9))
    return [TOUCHED]


def _rename(root: Path, run: int) -> list[str]:
    (root / BIN3).rename(root / BIN3_RENAMED)
    return [BIN3, BIN3_RENAMED]


def _move(root: Path, run: int) -> list[str]:
    src = root / MOVE_SRC
    old = sorted(p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file())
    (root / MOVE_DST).parent.mkdir(parents=True, exist_ok=True)
    src.rename(root / MOVE_DST)
    return [f"{MOVE_SRC}/{r}" for r in old] + [f"{MOVE_DST}/{r}" for r in old]


def _delete(root: Path, run: int) -> list[str]:
    (root / DELETED).unlink()
    return [DELETED]


def _edit_small(root: Path, run: int) -> list[str]:
    p = root / SMALL_EDIT
    p.write_bytes(gen.edit_middle_line(p.read_bytes(), f"Small edit, run {run}.".encode()))
    return [SMALL_EDIT]


NOOP = "noop"
INITIAL = "initial"

CHANGES = [
    Change("edit-mid", "one line edited mid-file (MD)", _edit_mid, "content"),
    Change("insert-top", "one line inserted at the top (MD)", _insert_top, "content"),
    Change("append-log", "a line appended to the log", _append, "content"),
    Change("binary-4k", "4 KiB overwritten in the random binary", _overwrite_4k, "content"),
    Change("touch", "mtime changed only", _touch, "metadata", mtime=True),
    Change("rename", "the 3 MiB file renamed", _rename, "metadata"),
    Change("move-folder", "the 100-file folder moved", _move, "move"),
    Change("delete", "a file deleted", _delete, "metadata"),
]
EDIT_SMALL = Change("edit-small", "one line edited in a small file", _edit_small, "content")


def titles(spec: Spec) -> dict[str, str]:
    """Scenario titles with the sizes of this corpus."""
    md, log = spec.md_size / 1e6, spec.log_size / 1e6
    return {
        INITIAL: "initial sync",
        NOOP: "nothing changed",
        "edit-mid": f"one line edited mid-file ({md:g} MB markdown)",
        "insert-top": f"one line inserted at the top ({md:g} MB markdown)",
        "append-log": f"a line appended to a {log:g} MB log",
        "binary-4k": f"4 KiB overwritten in a {spec.bin4_size / MIB:g} MiB random binary",
        "touch": "mtime changed only",
        "rename": f"a {spec.bin3_size / MIB:g} MiB file renamed",
        "move-folder": f"a {spec.move_files}-file folder moved",
        "delete": "a file deleted",
        "big-file": "a 200 MB file added",
        "edit-small": "one line edited in a small file",
    }
