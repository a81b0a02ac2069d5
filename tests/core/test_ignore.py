"""Ignore rules: gitignore syntax, parent directories, defaults."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from linesync.client.ignore import (
    DEFAULT_PATTERNS,
    IGNORE_FILE,
    PROTECTED_PATTERNS,
    REPOSITORY_PATTERNS,
    TEMPORARY_PATTERNS,
    IgnoreRules,
)

RULES_TEXT = """\
# a comment
*.log
!keep.log
build/
/todo.txt
**/cache/**
docs/**/*.tmp
vendor/
!vendor/lib.py
\\#literal
 trailing-space-kept\\ 
"""


@pytest.fixture(scope="module")
def rules() -> IgnoreRules:
    r = IgnoreRules(RULES_TEXT)
    assert r.warnings == []
    return r


@pytest.mark.parametrize(
    ("path", "is_dir", "expected"),
    [
        # plain glob, at any depth
        ("app.log", False, True),
        ("a/b/app.log", False, True),
        ("app.log.txt", False, False),
        # negation
        ("keep.log", False, False),
        ("sub/keep.log", False, False),
        # directory-only pattern
        ("build", True, True),
        ("build", False, False),  # a file named build is not a directory
        ("src/build", True, True),
        ("build/out.bin", False, True),  # inside an ignored directory
        ("build/deep/er/x.txt", False, True),
        ("builder/x", False, False),
        # anchored at the root
        ("todo.txt", False, True),
        ("notes/todo.txt", False, False),
        # ** in the middle and at the end
        ("cache/x", False, True),
        ("a/cache/x/y", False, True),
        ("a/cache", True, False),  # cache/** matches inside, not the directory itself
        ("docs/a.tmp", False, True),
        ("docs/x/y/a.tmp", False, True),
        ("other/a.tmp", False, False),
        # a file inside an ignored directory cannot be un-ignored
        ("vendor/lib.py", False, True),
        ("vendor", True, True),
        # escaped leading hash is a pattern, not a comment
        ("#literal", False, True),
        ("a comment", False, False),
        # escaped trailing space is kept
        (" trailing-space-kept ", False, True),
        # ordinary files
        ("recipes/soup.cook", False, False),
        ("recipes", True, False),
        (IGNORE_FILE, False, False),
        ("sub/" + IGNORE_FILE, False, False),
        # the root itself is never ignored
        ("", True, False),
    ],
)
def test_user_rules(rules: IgnoreRules, path: str, is_dir: bool, expected: bool) -> None:
    assert rules.ignored(path, is_dir) is expected


def test_ignore_everything_except_idiom() -> None:
    rules = IgnoreRules("*\n!*/\n!*.cook\n")
    assert rules.ignored("notes.txt", False)
    assert rules.ignored("a/b/notes.txt", False)
    assert not rules.ignored("a", True)
    assert not rules.ignored("a/b/soup.cook", False)
    assert not rules.ignored("soup.cook", False)


def test_negating_a_parent_then_a_child() -> None:
    rules = IgnoreRules("logs/\n!logs/\n")
    assert not rules.ignored("logs/a.txt", False)
    rules = IgnoreRules("logs/*\n!logs/important/\n")
    assert not rules.ignored("logs/important/a.txt", False)
    assert rules.ignored("logs/other.txt", False)
    assert rules.ignored("logs/other", True)
    assert rules.ignored("logs/other/deep.txt", False)


@pytest.mark.parametrize(
    ("path", "is_dir"),
    [
        (".DS_Store", False),
        ("photos/.DS_Store", False),
        ("Thumbs.db", False),
        ("a/desktop.ini", False),
        ("._resource", False),
        (".notes.md.swp", False),
        (".x.swo", False),
        (".x.swx", False),
        ("draft.txt~", False),
        (".#lock-file", False),
        ("#autosave#", False),
        ("dir/#autosave.txt#", False),
        (".~lock.report.odt#", False),
        ("~$report.docx", False),
        ("movie.mkv.crdownload", False),
        ("iso.part", False),
        (".Trash-1000", True),
        (".Trash-1000/files/a.txt", False),
        (".directory", False),
    ],
)
def test_temporary_defaults(path: str, is_dir: bool) -> None:
    assert IgnoreRules.default().ignored(path, is_dir)


@pytest.mark.parametrize(
    "path",
    [
        ".linesync",
        ".linesync/index.db",
        ".linesync/cache/pack/0001",
        "sub/.linesync/index.db",
        "notes.md.linesync-tmp",
        "a/b/notes.md.linesync-tmp",
        ".linesync-tmp-1234",
        "a/.linesync-tmp-abcd",
    ],
)
def test_protected_defaults(path: str) -> None:
    assert IgnoreRules.default().ignored(path, False)
    assert IgnoreRules.default().ignored(path, True)
    # The user's file cannot un-ignore the client's own state.
    negating = "\n".join("!" + p for p in (*PROTECTED_PATTERNS, path, "**", "*/", ".linesync/**"))
    assert IgnoreRules(negating).ignored(path, False)


def test_user_can_negate_temporary_defaults() -> None:
    rules = IgnoreRules("!*.part\n!.DS_Store\n")
    assert not rules.ignored("video.part", False)
    assert not rules.ignored("sub/.DS_Store", False)
    assert rules.ignored("x.swp", False)  # other defaults stay


@pytest.mark.parametrize(
    "path",
    [
        "notes.md",
        "README",
        ".linesyncignore",
        ".linesync-other",  # not the state folder, not a temp name
        "linesync",
        "part",
        "a.parts",
        "swp",
        "~file",  # only ~$ is an Office lock file
        "file#",
        ".Trash-1000",  # a file, not the trash directory
        "Desktop.ini.bak",
    ],
)
def test_defaults_keep_ordinary_names(path: str) -> None:
    assert not IgnoreRules.default().ignored(path, False)


def test_default_patterns_exposed() -> None:
    assert DEFAULT_PATTERNS == PROTECTED_PATTERNS + TEMPORARY_PATTERNS + REPOSITORY_PATTERNS
    assert ".linesync" in PROTECTED_PATTERNS
    assert IgnoreRules.default().warnings == []


def test_bad_lines_are_skipped_and_reported() -> None:
    rules = IgnoreRules("*.log\n[z-a]\n!\nfoo\\\n*.bak\n")
    assert len(rules.warnings) == 3
    assert "line 2" in rules.warnings[0]
    assert "line 3" in rules.warnings[1]
    assert "line 4" in rules.warnings[2]
    assert rules.ignored("a.log", False)
    assert rules.ignored("b.bak", False)  # lines after a bad one still apply
    assert not rules.ignored("z", False)


def test_bytes_input_crlf_and_bom() -> None:
    rules = IgnoreRules(b"\xef\xbb\xbf*.log\r\n/out/\r\n")
    assert rules.warnings == []
    assert rules.ignored("a.log", False)
    assert rules.ignored("out", True)
    bad = IgnoreRules(b"*.log\n\xff\xfe\n")
    assert bad.warnings and "UTF-8" in bad.warnings[0]
    assert bad.ignored("a.log", False)


def test_unicode_names() -> None:
    # The file is written in NFD (as macOS may save it); paths are NFC.
    nfd = "cre\u0300me/"
    rules = IgnoreRules(f"{nfd}\n*.brouillon\n🍰/\n!🍰/garder.txt\nrecettes/été-*\n")
    assert rules.warnings == []
    assert rules.ignored("crème", True)
    assert rules.ignored("desserts/crème/brûlée.cook", False)
    assert rules.ignored("idée.brouillon", False)
    assert rules.ignored("🍰/garder.txt", False)  # parent ignored
    assert rules.ignored("recettes/été-2024.md", False)
    assert not rules.ignored("recettes/hiver-2024.md", False)
    assert not rules.ignored("crème.cook", False)
    assert not rules.ignored("日本語/ノート.md", False)


def test_every_level_is_checked() -> None:
    rules = IgnoreRules("node_modules/\n")
    assert rules.ignored("web/app/node_modules/pkg/index.js", False)
    assert rules.ignored("web/app/node_modules", True)
    assert not rules.ignored("web/app/node_modules", False)  # a file of that name
    # Repeated calls use the directory cache and agree.
    for _ in range(3):
        assert rules.ignored("web/app/node_modules/pkg/index.js", False)
        assert not rules.ignored("web/app/src/index.js", False)


@pytest.mark.parametrize(
    ("text", "path", "is_dir", "expected"),
    [
        # Cases checked against `git ls-files -o --exclude-standard` / `git check-ignore`.
        ("/b/**/", "b", True, False),  # directories below b, not b itself
        ("/b/**/", "b/e", False, False),  # nor files directly in b
        ("/b/**/", "b/d", True, True),
        ("/b/**/", "b/d/f", False, True),
        ("b/**", "b", True, False),
        ("b/**", "b/f", False, True),
        ("**/", "a", True, True),
        ("**/", "f", False, False),
        ("a  /", "a", True, False),  # spaces before the slash belong to the name
        ("a  /", "a  ", True, True),
        ("a  ", "a", False, True),  # trailing spaces are dropped
        ("s\\ /", "s ", True, True),  # an escaped space is kept
        ("s\\ /", "s", True, False),
        ("\\!a", "!a", False, True),
        ("logs/\n!logs/keep.txt", "logs/keep.txt", False, True),
        ("logs/*\n!logs/keep.txt", "logs/keep.txt", False, False),
        ("*.txt\n!dir/", "dir/a.txt", False, True),  # !dir/ re-includes dir, not its files
        ("a/**/c.txt", "a/c.txt", False, True),
        ("a/**/c.txt", "a/x/y/c.txt", False, True),
        ("a/*", "a/x/y", False, True),
        ("a/*", "a", True, False),
        ("/", "anything", False, False),
    ],
)
def test_git_compatible_edge_cases(text: str, path: str, is_dir: bool, expected: bool) -> None:
    rules = IgnoreRules(text)
    assert rules.warnings == []
    assert rules.ignored(path, is_dir) is expected


def test_never_raises_on_odd_paths() -> None:
    rules = IgnoreRules.default()
    for path in ["", "/", "//", "a//b", "/abs/x", "trailing/", "\\back\\slash", "a/./b", "a/../b"]:
        assert isinstance(rules.ignored(path, False), bool)
        assert isinstance(rules.ignored(path, True), bool)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.text(alphabet="ab*?[]!/\\# .~$-\u00e9", max_size=8), max_size=6),
    st.lists(st.text(alphabet="ab*?[]!\\# .~$-\u00e9", min_size=1, max_size=4), max_size=4),
    st.booleans(),
)
def test_arbitrary_rules_never_raise(lines: list[str], parts: list[str], is_dir: bool) -> None:
    rules = IgnoreRules("\n".join(lines))
    path = "/".join(parts)
    assert isinstance(rules.ignored(path, is_dir), bool)
    assert rules.ignored(".linesync/state", is_dir)  # the client's state, whatever the file says
