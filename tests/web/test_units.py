"""The web interface's pure helpers: sessions, CSRF, origins, folder listings,
conflict names, diffs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from linesync.client.naming import conflict_name
from linesync.core import paths
from linesync.protocol.schemas import Kind
from linesync.server.model import Row
from linesync.server.web import diffs, security, tree

# -- CSRF and sessions -----------------------------------------------------------


def test_csrf_token_is_derived_from_the_session_and_checked() -> None:
    a, b = "lst_" + "a" * 32, "lst_" + "b" * 32
    assert security.csrf_token(a) == security.csrf_token(a)
    assert security.csrf_token(a) != security.csrf_token(b)
    assert len(security.csrf_token(a)) == 64
    assert security.csrf_ok(a, security.csrf_token(a))
    for bad in [None, "", security.csrf_token(b), security.csrf_token(a)[:-1], "é" * 64]:
        assert not security.csrf_ok(a, bad)
    assert not security.csrf_ok("", security.csrf_token(""))


@given(st.text(min_size=1, max_size=40), st.text(max_size=80))
def test_csrf_accepts_only_its_own_token(session: str, given_token: str) -> None:
    assert security.csrf_ok(session, given_token) == (given_token == security.csrf_token(session))


@pytest.mark.parametrize(
    ("origin", "referer", "ok"),
    [
        (None, None, True),
        ("http://host:8440", None, True),
        ("HTTP://HOST:8440", None, True),
        (None, "http://host:8440/web/tokens", True),
        ("http://host:8441", None, False),
        ("https://host:8440", None, True),  # TLS ends at a proxy
        ("ftp://host:8440", None, False),
        ("http://evil.example", None, False),
        ("null", None, False),
        ("http://host:8440.evil.example", None, False),
        (None, "http://evil.example/http://host:8440/", False),
        (None, "/web/tokens", False),
        ("http://evil.example", "http://host:8440/", False),  # Origin decides when present
        ("http://host:8440", "http://evil.example/", True),
    ],
)
def test_same_origin(origin: str | None, referer: str | None, ok: bool) -> None:
    assert security.same_origin(origin, referer, "host:8440") is ok


def test_cookie_header_flags() -> None:
    c = security.cookie_header("linesync_session", "v", 60, secure=False)
    assert c == "linesync_session=v; Path=/; Max-Age=60; SameSite=Strict; HttpOnly"
    assert security.cookie_header("n", "v", 60, secure=True).endswith("; HttpOnly; Secure")
    assert "Max-Age=0" in security.cookie_header("n", "", -5, secure=False)


def test_a_session_never_outlives_its_token() -> None:
    assert security.session_seconds(1000.0, None) == security.SESSION_SECONDS
    assert security.session_seconds(1000.0, 1000.0 + 3600) == 3600
    assert security.session_seconds(1000.0, 1000.0 + 10**9) == security.SESSION_SECONDS
    assert security.session_seconds(1000.0, 900.0) == 0


def test_device_names() -> None:
    names = {security.new_device() for _ in range(50)}
    assert len(names) == 50
    assert all(len(n) == 12 and n.startswith("web-") for n in names)


# -- folders -----------------------------------------------------------------------


def row(jid: int, path: str, kind: Kind = Kind.FILE, size: int = 1) -> Row:
    return Row(jid=jid, path=path, kind=kind, size=size)


def test_children_of_a_folder() -> None:
    rows = [
        row(1, "b.txt"),
        row(2, "A", Kind.DIRECTORY),
        row(3, "A/x.txt"),
        row(4, "A/Sub", Kind.DIRECTORY),
        row(5, "A/Sub/deep.txt"),
        row(6, "a.txt"),
        row(7, "gone.txt", Kind.TOMBSTONE),
        row(8, "AB.txt"),
    ]
    assert [i.name for i in tree.children(rows, "")] == ["A", "a.txt", "AB.txt", "b.txt"]
    assert [i.name for i in tree.children(rows, "", deleted=True)] == [
        "A",
        "a.txt",
        "AB.txt",
        "b.txt",
        "gone.txt",
    ]
    assert [i.path for i in tree.children(rows, "A")] == ["A/Sub", "A/x.txt"]
    assert [i.path for i in tree.children(rows, "A/Sub")] == ["A/Sub/deep.txt"]
    assert tree.children(rows, "Nope") == []


@given(
    st.sampled_from(["notes.txt", "plan", ".bashrc", "a.tar.gz", "Ünïcode.md", "x (1).txt"]),
    st.sampled_from(["", "A", "A/B c"]),
    st.sampled_from(["phone", "my laptop", "ü-dev", ""]),
    st.integers(1, 5),
    st.integers(0, 2_000_000_000),
)
def test_conflict_names_of_the_client_are_recognized(
    name: str, folder: str, device: str, n: int, when: int
) -> None:
    path = f"{folder}/{name}" if folder else name
    copy = conflict_name(path, device, when=when, n=n)
    c = tree.conflict_of(copy)
    assert c is not None and c.original == paths.normalize(path)
    assert tree.conflict_of(path) is None


def test_other_copies_are_not_conflicts() -> None:
    for p in [
        "a (merged from x 2026-01-01 000000).txt",
        "a (conflict from x).txt",
        "(conflict from x 2026-01-01 000000).txt",
        "a (conflict from x 2026-01-01).txt",
    ]:
        assert tree.conflict_of(p) is None, p


def test_conflict_copies_follow_their_original() -> None:
    c1 = conflict_name("plan.txt", "phone", when=1)
    c2 = conflict_name("plan.txt", "tablet", when=2)
    rows = [row(1, c2), row(2, "zeta.txt"), row(3, "plan.txt"), row(4, c1), row(5, "alpha.txt")]
    assert [i.path for i in tree.children(rows, "")] == [
        "alpha.txt",
        "plan.txt",
        c1,
        c2,
        "zeta.txt",
    ]
    assert [(c.path, o.path if o else None) for c, o in tree.conflicts(rows)] == [
        (c1, "plan.txt"),
        (c2, "plan.txt"),
    ]
    alone = [row(1, c1)]
    assert [(c.path, o) for c, o in tree.conflicts(alone)] == [(c1, None)]


def test_crumbs_and_folder_paths() -> None:
    assert tree.crumbs("") == []
    assert tree.crumbs("a/b/c") == [("a", "a"), ("b", "a/b"), ("c", "a/b/c")]
    assert tree.clean_folder(None) == "" and tree.clean_folder("/") == ""
    assert tree.clean_folder("/a/b/") == "a/b"
    for bad in ["a/../b", "a//b", "a\\b", "a/\x00"]:
        with pytest.raises(paths.PathError):
            tree.clean_folder(bad)


def test_attachment_names() -> None:
    assert tree.attachment("a.txt") == "attachment; filename=\"a.txt\"; filename*=UTF-8''a.txt"
    h = tree.attachment('ü "x"\r\n.txt')
    assert h.startswith('attachment; filename="_ _x___.txt"') and "\r" not in h and "\n" not in h
    assert "%C3%BC" in h


def test_sizes_and_times() -> None:
    assert tree.human_size(0) == "0 B"
    assert tree.human_size(1023) == "1023 B"
    assert tree.human_size(1536) == "1.5 KiB"
    assert tree.human_size(5 * 2**30) == "5.0 GiB"
    assert tree.when(0) == "1970-01-01 00:00" and tree.when(None) == ""


# -- diffs --------------------------------------------------------------------------


def test_line_diff() -> None:
    d = diffs.line_diff(b"a\nb\nc\n", b"a\nB\nc\nd\n")
    kinds = [(line.kind, line.text) for line in d.lines]
    assert kinds[0][0] == "hunk"
    assert ("del", "b") in kinds and ("add", "B") in kinds and ("add", "d") in kinds
    assert d.added == 2 and d.removed == 1 and d.refused is None
    assert diffs.line_diff(b"same\n", b"same\n").lines == []


def test_diff_line_numbers() -> None:
    old = b"".join(b"%d\n" % i for i in range(100))
    new = old.replace(b"50\n", b"fifty\n")
    d = diffs.line_diff(old, new)
    (deleted,) = [line for line in d.lines if line.kind == "del"]
    (added,) = [line for line in d.lines if line.kind == "add"]
    assert (deleted.old, deleted.new, added.old, added.new) == (51, None, None, 51)
    same = [line for line in d.lines if line.kind == "same"]
    assert len(same) == 6 and all(line.old == line.new for line in same)


def test_diffs_are_bounded() -> None:
    assert diffs.line_diff(b"\x00", b"a").refused == "binary content: not diffed"
    assert diffs.line_diff(b"\xff", b"a").refused == "binary content: not diffed"
    big = b"x" * (diffs.MAX_DIFF_BYTES + 1)
    assert "larger than 1 MiB" in (diffs.line_diff(big, b"").refused or "")
    many = b"\n" * (diffs.MAX_DIFF_LINES + 1)
    assert "lines" in (diffs.line_diff(many, b"").refused or "")


def _replay(a: list[str], b: list[str], ops: list[diffs.Op]) -> list[str]:
    out: list[str] = []
    i = j = 0
    for tag, i1, i2, j1, j2 in ops:
        assert (i1, j1) == (i, j), "opcodes must be contiguous"
        if tag == "equal":
            assert a[i1:i2] == b[j1:j2]
        out += b[j1:j2]
        i, j = i2, j2
    assert (i, j) == (len(a), len(b))
    return out


@given(
    st.lists(st.sampled_from("abcdefg"), max_size=300),
    st.lists(st.sampled_from("abcdexy"), max_size=300),
)
def test_opcodes_always_turn_one_side_into_the_other(a: list[str], b: list[str]) -> None:
    assert _replay(a, b, diffs.opcodes(a, b)) == b


def test_ordinary_edits_are_found_exactly() -> None:
    a = [f"line {i}" for i in range(20_000)]
    b = list(a)
    b[500] = "changed"
    del b[9000:9010]
    b.insert(15000, "new")
    changes = [op for op in diffs.opcodes(a, b) if op[0] != "equal"]
    assert changes == [
        ("replace", 500, 501, 500, 501),
        ("delete", 9000, 9010, 9000, 9000),
        ("insert", 15010, 15010, 15000, 15001),
    ]


@pytest.mark.parametrize("period", [150, 199, 1000])
def test_hostile_diffs_stay_cheap(period: int) -> None:
    """Lines repeating with a period under difflib's junk threshold take it
    minutes (measured: 179 s at period 150 for 20,000 lines); here well under 2 s."""
    import time

    a = "".join(f"l{i % period}\n" for i in range(diffs.MAX_DIFF_LINES)).encode()
    b = "".join(f"l{(i * 7) % period}\n" for i in range(diffs.MAX_DIFF_LINES)).encode()
    t = time.process_time()
    d = diffs.line_diff(a, b)
    assert time.process_time() - t < 2.0
    assert d.refused is None and d.lines
