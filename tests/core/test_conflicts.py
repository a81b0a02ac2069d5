"""Names of conflict copies (``linesync.core.conflicts``), both ways: what a
copy's name is made of reads back as it went in (Hypothesis), ordinary names
read as None, and near misses too (a table)."""

from __future__ import annotations

import time

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from linesync.client import naming
from linesync.core import conflicts, paths
from linesync.core.conflicts import (
    KINDS,
    ConflictCopy,
    device_label,
    format_conflict_name,
    parse_conflict_name,
)

# Names: any text a path may hold, the characters a copy's name is made of
# (parentheses, spaces, dots, digits, dashes) much more often than by chance.
_NAME_CHARS = st.one_of(
    st.sampled_from(list(" ().-_0123456789aZ")),
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/\\"),
)
_NAMES = st.text(_NAME_CHARS, min_size=1, max_size=40)
_WHEN = st.integers(0, 2**31 - 1)  # (time.localtime's range everywhere)


@st.composite
def valid_paths(draw: st.DrawFn) -> str:
    parts = draw(st.lists(_NAMES, min_size=1, max_size=3))
    try:
        path = paths.normalize("/".join(parts))
    except paths.PathError:
        assume(False)
        raise
    return path


def _stamp(when: float) -> str:
    return time.strftime("%Y-%m-%d %H%M%S", time.localtime(when))


@settings(max_examples=500, deadline=None)
@given(valid_paths(), st.text(max_size=20), st.sampled_from(KINDS), _WHEN, st.integers(1, 120))
@example("notes.txt", "laptop", "conflict", 0, 1)
@example(".bashrc", "", "conflict", 0, 1)
@example("a.tar.gz", "my phone", "case conflict", 0, 2)
@example("x (conflict from a 2020-01-01 000000).txt", "b", "conflict", 0, 1)
@example("dir.d/file.", "Å", "name clash", 0, 3)
def test_a_name_reads_back_as_it_was_made(
    path: str, device: str, what: str, when: int, n: int
) -> None:
    try:
        name = format_conflict_name(path, device, what, when=when, n=n)
    except paths.PathError:
        assume(False)  # (too long a name for a copy: the client picks another)
        raise
    assert paths.is_valid(name)
    assert name.rpartition("/")[0] == path.rpartition("/")[0]  # beside the original
    got = parse_conflict_name(name, kinds=KINDS)
    want = ConflictCopy(path, device_label(device), _stamp(when), what, n)
    assert got == want, name
    # The extension still says what the file is.
    ext = conflicts.split_ext(path.rpartition("/")[2])[1]
    if ext:
        assert conflicts.split_ext(name.rpartition("/")[2])[1] == ext
    # By default only conflicts are read: other copies' names are ordinary.
    assert parse_conflict_name(name) == (want if what == "conflict" else None)
    # A copy of a copy names the copy as its original.
    try:
        again = format_conflict_name(name, device, when=when)
    except paths.PathError:
        return
    copy = parse_conflict_name(again)
    assert copy is not None and copy.original == name


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30))
def test_a_device_name_reads_back_as_its_label(device: str) -> None:
    label = device_label(device)
    name = format_conflict_name("a.txt", device, when=0)
    got = parse_conflict_name(name)
    assert got is not None and got.device == label and got.original == "a.txt"
    assert device_label(label) == label
    if label == device:  # a device named with letters, digits and -_. only: as it is
        assert got.device == device


@settings(max_examples=300, deadline=None)
@given(valid_paths())
def test_ordinary_names_are_none(path: str) -> None:
    name = path.rpartition("/")[2]
    assume(" from " not in name)
    assert parse_conflict_name(path) is None
    assert parse_conflict_name(path, kinds=KINDS) is None


@pytest.mark.parametrize(
    ("name", "original", "device", "stamp", "n"),
    [
        ("a (conflict from d 2026-01-02 030405).txt", "a.txt", "d", "2026-01-02 030405", 1),
        ("a (conflict from d 2026-01-02 030405 7).txt", "a.txt", "d", "2026-01-02 030405", 7),
        ("dir/.bashrc (conflict from d 2026-01-02 030405)", "dir/.bashrc", "d",
         "2026-01-02 030405", 1),
        ("a (b) (conflict from x.y_z-1 2026-01-02 030405).md", "a (b).md", "x.y_z-1",
         "2026-01-02 030405", 1),
        ("a (conflict from d 2026-01-02 030405).", "a.", "d", "2026-01-02 030405", 1),
        # ordinary names, and near misses
        ("a.txt", None, None, None, None),
        ("(conflict from d 2026-01-02 030405).txt", None, None, None, None),  # no stem
        ("a (conflict from d 2026-01-02 03040).txt", None, None, None, None),  # 5 digits
        ("a (conflict from  2026-01-02 030405).txt", None, None, None, None),  # no device
        ("a (conflict from d e 2026-01-02 030405).txt", None, None, None, None),  # a space
        ("a (Conflict from d 2026-01-02 030405).txt", None, None, None, None),
        ("a (conflict from d 2026-01-02 030405).tar.gz", None, None, None, None),
        ("a (conflict from d 2026-01-02 030405 0).txt", None, None, None, None),
        ("a (name clash from d 2026-01-02 030405).txt", None, None, None, None),
        ("a (conflict by d 2026-01-02 030405).txt", None, None, None, None),
        ("a (conflict from d 2026-01-02 030405)x", None, None, None, None),
    ],
)  # fmt: skip
def test_names_as_a_table(
    name: str, original: str | None, device: str | None, stamp: str | None, n: int | None
) -> None:
    got = parse_conflict_name(name)
    if original is None:
        assert got is None
    else:
        assert got == ConflictCopy(original, str(device), str(stamp), "conflict", int(n or 1))


def test_the_client_names_copies_with_the_core() -> None:
    assert naming.conflict_name is format_conflict_name
    assert naming.parse_conflict_name is parse_conflict_name
    name = naming.conflict_name("notes/todo.md", "work laptop", when=0, n=2)
    assert name == f"notes/todo (conflict from work-laptop {_stamp(0)} 2).md"
