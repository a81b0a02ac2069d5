"""The pure parts of WebDAV: header rules, request XML, locks, dead properties."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from linesync.core import paths
from linesync.protocol.schemas import Kind
from linesync.server.dav import rules, xmlbody
from linesync.server.dav.locks import LockManager
from linesync.server.dav.props import DeadProps
from linesync.server.dav.rules import Condition, DavError, IfList, Target
from linesync.server.model import Row


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("/dav/", Target(None, "")),
        ("/dav", Target(None, "")),
        ("/dav/alice", Target("alice", "")),
        ("/dav/alice/", Target("alice", "")),
        ("/dav/alice/a/b.txt", Target("alice", "a/b.txt")),
        ("/dav/alice/docs/", Target("alice", "docs")),
        ("/dav/alice/res-%e2%82%ac", Target("alice", "res-\u20ac")),
        ("/dav/alice/e%CC%81?x=1", Target("alice", "\u00e9")),  # NFD in, NFC out
        ("/dav/team%20x/a%23b", Target("team x", "a#b")),
    ],
)
def test_targets(raw: str, want: Target) -> None:
    assert rules.parse_target(raw) == want


@pytest.mark.parametrize(
    ("raw", "status"),
    [("/other/x", 404), ("/dav//x", 400), ("/dav/a/%ff", 400), ("/dav/a/b%2Fc", 400)],
)
def test_bad_targets(raw: str, status: int) -> None:
    with pytest.raises(DavError) as exc:
        rules.parse_target(raw)
    assert exc.value.status == status


@pytest.mark.parametrize("raw", ["/dav/a/..", "/dav/a/x/../y", "/dav/a/%00", "/dav/a/a//b",
                                 "/dav/a/" + "n" * 256])  # fmt: skip
def test_path_rules_refuse(raw: str) -> None:
    with pytest.raises(paths.PathError):
        rules.parse_target(raw)


def test_href_round_trips() -> None:
    for ns, path, coll in [
        ("a", "x y/\u00e9#?.txt", False),
        ("team x", "d", True),
        ("a", "", True),
    ]:
        t = rules.parse_target(rules.href(ns, path, coll))
        assert t == Target(ns, path)


def test_destination() -> None:
    d = rules.destination("http://h:1/dav/a/x%20y", "h:1")
    assert d == Target("a", "x y")
    assert rules.destination("/dav/a/z", None) == Target("a", "z")
    for bad, status in [(None, 400), ("ftp://h/dav/a/x", 400), ("http://other/dav/a/x", 502)]:
        with pytest.raises(DavError) as exc:
            rules.destination(bad, "h:1")
        assert exc.value.status == status


def test_depth_and_overwrite() -> None:
    assert rules.depth(None) == "infinity" and rules.depth("Infinity") == "infinity"
    assert rules.depth(None, "1") == "1" and rules.depth(" 0 ") == "0"
    assert rules.overwrite(None) and rules.overwrite("t") and not rules.overwrite("F")
    for bad in ("2", "x"):
        with pytest.raises(DavError):
            rules.depth(bad)
    with pytest.raises(DavError):
        rules.overwrite("maybe")


@pytest.mark.parametrize(
    ("header", "want"),
    [
        (None, None),
        ("bytes=0-9", (0, 10)),
        ("bytes=5-", (5, 100)),
        ("bytes=-10", (90, 100)),
        ("bytes=-1000", (0, 100)),
        ("bytes=90-1000", (90, 100)),
        ("bytes=0-1,5-6", None),  # several ranges: the whole entity
        ("items=0-1", None),
        ("bytes=9-3", None),
    ],
)
def test_ranges(header: str | None, want: tuple[int, int] | None) -> None:
    assert rules.byte_range(header, 100) == want


def test_unsatisfiable_ranges() -> None:
    for header in ("bytes=100-", "bytes=-0"):
        with pytest.raises(DavError) as exc:
            rules.byte_range(header, 100)
        assert exc.value.status == 416
        assert exc.value.headers["content-range"] == "bytes */100"


def test_etags() -> None:
    f = Row(jid=5, path="a", kind=Kind.FILE, chash=bytes(range(32)))
    same = Row(jid=9, path="b", kind=Kind.FILE, chash=bytes(range(32)))
    d = Row(jid=5, path="d", kind=Kind.DIRECTORY)
    assert rules.etag(f) == rules.etag(same) != rules.etag(d) == '"j5"'
    assert rules.match_header("*", rules.etag(f)) and not rules.match_header("*", None)
    assert rules.match_header(f'"x", W/{rules.etag(f)}', rules.etag(f))
    assert not rules.match_header('"x"', rules.etag(f))


def test_timeouts() -> None:
    assert rules.timeout(None) == rules.DEFAULT_TIMEOUT
    assert rules.timeout("Second-60") == 60
    assert rules.timeout("Infinite, Second-4100000000") == rules.MAX_TIMEOUT
    assert rules.timeout("Second-99999999999") == rules.MAX_TIMEOUT
    assert rules.timeout("garbage") == rules.DEFAULT_TIMEOUT


def test_if_header() -> None:
    lists = rules.parse_if(
        '<http://h/dav/a/x> (<opaquelocktoken:1> ["e1"]) (Not <DAV:no-lock> [W/"e2"]) '
        "</dav/a/y> (<opaquelocktoken:2>)"
    )
    assert lists == [
        IfList("/dav/a/x", (Condition(False, "opaquelocktoken:1"), Condition(False, None, '"e1"'))),
        IfList("/dav/a/x", (Condition(True, "DAV:no-lock"), Condition(False, None, 'W/"e2"'))),
        IfList("/dav/a/y", (Condition(False, "opaquelocktoken:2"),)),
    ]
    assert rules.submitted_tokens(lists) == {"opaquelocktoken:1", "opaquelocktoken:2"}
    assert rules.parse_if("(<t:1>)(<t:2>)") == [
        IfList(None, (Condition(False, "t:1"),)),
        IfList(None, (Condition(False, "t:2"),)),
    ]
    for bad in ("<x>", "(", "()", "(<a> junk)"):
        with pytest.raises(DavError):
            rules.parse_if(bad)


def test_untagged_if_lists_name_the_request() -> None:
    lists = rules.parse_if("(<t:1>) (Not <t:2>)")
    assert [lst.resource for lst in lists] == [None, None]


# -- XML ---------------------------------------------------------------------------


def test_propfind_bodies() -> None:
    assert xmlbody.parse_propfind(b"").kind == "allprop"
    pf = xmlbody.parse_propfind(
        b'<D:propfind xmlns:D="DAV:"><D:prop><D:getetag/><x:a xmlns:x="urn:x"/>'
        b"<D:getetag/></D:prop></D:propfind>"
    )
    assert pf.kind == "prop" and pf.names == ("{DAV:}getetag", "{urn:x}a")
    assert xmlbody.parse_propfind(b'<propfind xmlns="DAV:"><propname/></propfind>').kind == (
        "propname"
    )
    for bad in (
        b"<D:propfind xmlns:D='DAV:'/>",
        b"<x/>",
        b"<D:propfind xmlns:D='DAV:'><D:prop>",
        b'<propfind xmlns="DAV:"><prop><bar:foo xmlns:bar=""/></prop></propfind>',
    ):
        with pytest.raises(DavError) as exc:
            xmlbody.parse_propfind(bad)
        assert exc.value.status == 400


def test_dtds_entities_and_size_are_refused() -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><x>&b;</x>'
    )
    external = b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>'
    for body in (bomb, external, b"<!DOCTYPE x><x/>"):
        with pytest.raises(DavError) as exc:
            xmlbody.parse(body)
        assert exc.value.status == 400
    with pytest.raises(DavError) as exc:
        xmlbody.parse(b"<x>" + b" " * xmlbody.MAX_BODY + b"</x>")
    assert exc.value.status == 413


def test_proppatch_keeps_document_order() -> None:
    changes = xmlbody.parse_proppatch(
        b'<D:propertyupdate xmlns:D="DAV:" xmlns:x="urn:x">'
        b"<D:set><D:prop><x:a>1</x:a></D:prop></D:set>"
        b"<D:remove><D:prop><x:a/></D:prop></D:remove>"
        b"<D:set><D:prop><x:b><x:inner>v</x:inner></x:b></D:prop></D:set>"
        b"</D:propertyupdate>"
    )
    assert [(c.name, c.value is None) for c in changes] == [
        ("{urn:x}a", False),
        ("{urn:x}a", True),
        ("{urn:x}b", False),
    ]
    b = changes[2].value
    assert b is not None
    again = ET.fromstring(xmlbody.element(b))
    assert again.tag == "{urn:x}b" and again[0].tag == "{urn:x}inner" and again[0].text == "v"


def test_lockinfo() -> None:
    info = xmlbody.parse_lockinfo(
        b'<D:lockinfo xmlns:D="DAV:"><D:lockscope><D:shared/></D:lockscope>'
        b"<D:locktype><D:write/></D:locktype><D:owner>me</D:owner></D:lockinfo>"
    )
    assert info.scope == "shared" and info.owner is not None and "me" in info.owner
    with pytest.raises(DavError):
        xmlbody.parse_lockinfo(b'<D:lockinfo xmlns:D="DAV:"><D:lockscope/></D:lockinfo>')


def test_rendered_properties_are_namespace_correct() -> None:
    doc = (
        xmlbody.HEAD
        + xmlbody.response(
            "/dav/a/x&y",
            [(200, [xmlbody.tag("{urn:x}a", "1"), xmlbody.tag("plain", "2")]), (404, [])],
        )
        + xmlbody.TAIL
    )
    root = ET.fromstring(doc)
    assert root.find("{DAV:}response/{DAV:}href").text == "/dav/a/x&y"  # type: ignore[union-attr]
    prop = root.find(".//{DAV:}prop")
    assert prop is not None and [c.tag for c in prop] == ["{urn:x}a", "plain"]
    assert len(root.findall(".//{DAV:}propstat")) == 1  # no empty 404 block


# -- locks -------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_locks_cover_conflict_and_expire() -> None:
    clock = Clock()
    m = LockManager(clock)
    coll = m.create(1, "docs", "infinity", "exclusive", None, 60)
    assert m.covering(1, "docs/a/b") == [coll] and m.covering(2, "docs/a") == []
    assert m.covering(1, "docsx") == []
    for path, depth in (("docs/a", "0"), ("", "infinity")):
        with pytest.raises(DavError) as exc:
            m.create(1, path, depth, "shared", None, 60)
        assert exc.value.status == 423
    m.create(1, "", "0", "shared", None, 60)  # the root itself, not what is in it
    with pytest.raises(DavError):
        m.check(1, ["docs/new"], [], set())
    m.check(1, ["docs/new"], [], {coll.token})
    with pytest.raises(DavError):
        m.check(1, [], ["docs"], set())
    clock.t += 61
    assert m.get(coll.token) is None
    m.check(1, ["docs/new"], [], set())


def test_shared_locks_stack_and_refresh() -> None:
    clock = Clock()
    m = LockManager(clock)
    a = m.create(1, "f", "0", "shared", None, 10)
    b = m.create(1, "f", "0", "shared", "<D:owner/>", 10)
    with pytest.raises(DavError):
        m.create(1, "f", "0", "exclusive", None, 10)
    clock.t += 8
    m.refresh(a, 10)
    clock.t += 5
    assert m.get(a.token) is a and m.get(b.token) is None
    m.drop_under(1, "")
    assert m.get(a.token) is None


# -- dead properties -----------------------------------------------------------------


def _el(name: str, value: str) -> ET.Element:
    e = ET.Element(name)
    e.text = value
    return e


def test_dead_props_move_copy_drop() -> None:
    p = DeadProps()
    p.apply(1, "d/f", [("{x}a", _el("{x}a", "1"))])
    p.apply(1, "d", [("{x}b", _el("{x}b", "2"))])
    p.copy(1, "d", "e")
    assert p.get(1, "e/f")["{x}a"].text == "1" and p.get(1, "d/f")["{x}a"].text == "1"
    p.copy(1, "d", "m", move=True)
    assert p.get(1, "d") == {} and p.get(1, "m")["{x}b"].text == "2"
    p.drop(1, "e")
    assert p.get(1, "e/f") == {}
    p.apply(1, "m", [("{x}b", None)])
    assert p.get(1, "m") == {}
    p.drop(1, "m")
    assert p.used == 0


def test_dead_props_are_bounded_all_or_nothing() -> None:
    p = DeadProps(max_bytes=1000)
    with pytest.raises(DavError) as exc:
        p.apply(1, "f", [("{x}a", _el("{x}a", "1")), ("{x}b", _el("{x}b", "z" * 2000))])
    assert exc.value.status == 507
    assert p.get(1, "f") == {} and p.used == 0


def test_one_namespace_cannot_take_every_namespaces_property_room() -> None:
    """A namespace's properties are bounded apart from the server's: its users
    fill their own share (PROPPATCH and COPY alike), others still have room."""
    p = DeadProps(max_bytes=10_000, max_path_bytes=2_000, max_ns_bytes=3_000)
    for i in range(100):
        try:
            p.apply(1, f"f{i}", [("{x}a", _el("{x}a", "z" * 500))])
        except DavError as exc:
            assert exc.status == 507 and "namespace" in exc.args[0]
            break
    else:
        raise AssertionError("namespace 1 was never refused")
    assert p.ns_used[1] <= 3_000 and p.used == p.ns_used[1]
    p.copy(1, "", "copied")  # past its share: the copy leaves them out
    assert p.ns_used[1] <= 3_000
    p.apply(2, "g", [("{x}a", _el("{x}a", "y" * 500))])  # another namespace has room
    assert p.get(2, "g")["{x}a"].text == "y" * 500
    p.drop(1, "")
    assert p.ns_used[1] == 0 and p.used == p.ns_used[2]
