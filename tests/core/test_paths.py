from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from linesync.core import paths


@pytest.mark.parametrize(
    "path",
    [
        "a",
        "a/b/c.md",
        "notes/Recipe 1.cook",
        "émoji 🎉/ß.txt",
        "a" * 255,
        "x/" * 100 + "y",
        ".hidden",
        "..x",
        "x..",
    ],
)
def test_valid_paths_are_their_own_normal_form(path: str) -> None:
    assert paths.normalize(path) == path
    assert paths.is_valid(path)


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("", "empty"),
        ("/abs", "absolute"),
        ("a//b", "empty segment"),
        ("a/", "empty segment"),
        ("..", "'..'"),
        ("a/../b", "'..'"),
        ("./a", "'.'"),
        ("a\\b", "backslash"),
        ("a\x00b", "control"),
        ("a\nb", "control"),
        ("a\x7fb", "control"),
        ("a" * 256, "segment is longer"),
        ("a/" * 2100 + "b", "path is longer"),
        ("\ud800", "Unicode"),
    ],
)
def test_invalid_paths_say_why(path: str, why: str) -> None:
    with pytest.raises(paths.PathError, match=why):
        paths.normalize(path)
    assert not paths.is_valid(path)


def test_nfd_is_normalized_to_nfc_but_not_valid_as_sent() -> None:
    nfd = "e\u0301t\u00e9.md"
    assert paths.normalize(nfd) == unicodedata.normalize("NFC", nfd)
    assert not paths.is_valid(nfd)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Recipe.cook", "recipe.cook"),
        ("caf\u00e9", "CAFE\u0301"),
        ("Straße", "STRASSE"),
        ("A/B", "a/b"),
    ],
)
def test_fold_key_collisions(a: str, b: str) -> None:
    assert paths.fold_key(a) == paths.fold_key(b)


def test_fold_key_keeps_different_names_apart() -> None:
    assert paths.fold_key("a.md") != paths.fold_key("b.md")
    assert paths.fold_key("cafe") != paths.fold_key("café")


def test_tree_helpers() -> None:
    assert paths.parent("a/b/c") == "a/b"
    assert paths.parent("a") == ""
    assert paths.ancestors("a/b/c") == ["a", "a/b"]
    assert paths.is_under("a/b", "a")
    assert not paths.is_under("ab", "a")
    assert not paths.is_under("a", "a")
    assert paths.rebase("old/x/y", "old", "new/dir") == "new/dir/x/y"
    assert paths.rebase("old", "old", "new") == "new"
    with pytest.raises(paths.PathError):
        paths.rebase("other/x", "old", "new")


@given(st.text(max_size=60))
def test_normalize_either_accepts_idempotently_or_refuses(text: str) -> None:
    try:
        norm = paths.normalize(text)
    except paths.PathError:
        return
    assert paths.normalize(norm) == norm
    assert ".." not in norm.split("/")
    assert not norm.startswith("/")
