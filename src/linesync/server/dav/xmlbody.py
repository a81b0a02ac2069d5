"""WebDAV request bodies parsed, and multistatus answers rendered, as pure
functions. Parsing goes through defusedxml: a DTD, an entity declaration or
an external reference refuses the body (no entity expansion, no XML bombs).
A body is also bounded in depth and in elements and attributes (what its tree
holds in memory, and what the serializer's recursion meets later, when a
dead property or a lock's owner is rendered). Property names are Clark names
(``{namespace}local``)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html import escape
from typing import Literal

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from linesync.server.dav.rules import DavError

DAV = "DAV:"
MAX_BODY = 2**20  # bytes of request XML at most
MAX_DEPTH = 64  # nested elements at most
MAX_ITEMS = 10_000  # elements and attributes of one body at most
MAX_OWNER = 4096  # bytes of a lock's DAV:owner (kept as long as the lock)
# Properties a PROPFIND names at most: each listed resource answers every one
# (a hundred resources rendered at a time), missing ones too.
MAX_PROPFIND_NAMES = 256
ET.register_namespace("D", DAV)

STATUS_TEXT = {
    200: "OK",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    423: "Locked",
    424: "Failed Dependency",
    507: "Insufficient Storage",
}


def dav(local: str) -> str:
    return "{" + DAV + "}" + local


class _Bounded(ET.TreeBuilder):
    """A tree builder that refuses a tree deeper than MAX_DEPTH or holding more
    than MAX_ITEMS elements and attributes, as it is built."""

    def __init__(self) -> None:
        super().__init__()
        self.depth = 0
        self.items = 0

    def start(self, tag: str, attrs: dict[str, str]) -> ET.Element:
        self.depth += 1
        self.items += 1 + len(attrs)
        if self.depth > MAX_DEPTH:
            raise DavError(400, f"request XML is nested deeper than {MAX_DEPTH} elements")
        if self.items > MAX_ITEMS:
            raise DavError(400, f"request XML holds more than {MAX_ITEMS} elements and attributes")
        return super().start(tag, attrs)

    def end(self, tag: str) -> ET.Element:
        self.depth -= 1
        return super().end(tag)


def parse(body: bytes) -> ET.Element:
    """The root element of a request body; DavError 400 for anything that is
    not well-formed, namespace-valid XML without a DTD, or past the bounds."""
    if len(body) > MAX_BODY:
        raise DavError(413, f"request XML is larger than {MAX_BODY} bytes")
    try:
        parser = SafeET.DefusedXMLParser(
            target=_Bounded(), forbid_dtd=True, forbid_entities=True, forbid_external=True
        )
        parser.feed(body)
        root = parser.close()
    except DefusedXmlException:
        raise DavError(400, "request XML with a DTD or entities is refused") from None
    except ET.ParseError as exc:
        raise DavError(400, f"request body is not well-formed XML: {exc}") from None
    assert isinstance(root, ET.Element)
    return root


@dataclass(frozen=True, slots=True)
class Propfind:
    kind: Literal["allprop", "propname", "prop"]
    names: tuple[str, ...] = ()  # asked for (prop), or included (allprop)


def parse_propfind(body: bytes) -> Propfind:
    if not body.strip():
        return Propfind("allprop")
    root = parse(body)
    if root.tag != dav("propfind"):
        raise DavError(400, "PROPFIND body must be a DAV:propfind element")
    kinds = [c for c in root if c.tag in (dav("allprop"), dav("propname"), dav("prop"))]
    if len(kinds) != 1:
        raise DavError(400, "DAV:propfind needs one of allprop, propname or prop")
    top = kinds[0]
    if top.tag == dav("propname"):
        return Propfind("propname")
    if top.tag == dav("allprop"):
        include = root.find(dav("include"))
        names = tuple(dict.fromkeys(c.tag for c in include)) if include is not None else ()
    else:
        names = tuple(dict.fromkeys(c.tag for c in top))
    if len(names) > MAX_PROPFIND_NAMES:
        raise DavError(400, f"a PROPFIND names at most {MAX_PROPFIND_NAMES} properties")
    return Propfind("allprop" if top.tag == dav("allprop") else "prop", names)


@dataclass(frozen=True, slots=True)
class PropChange:
    name: str
    value: ET.Element | None  # None: remove


def parse_proppatch(body: bytes) -> list[PropChange]:
    root = parse(body)
    if root.tag != dav("propertyupdate"):
        raise DavError(400, "PROPPATCH body must be a DAV:propertyupdate element")
    out: list[PropChange] = []
    for action in root:
        if action.tag not in (dav("set"), dav("remove")):
            continue
        prop = action.find(dav("prop"))
        if prop is None:
            raise DavError(400, "DAV:set and DAV:remove hold a DAV:prop")
        for p in prop:
            out.append(PropChange(p.tag, p if action.tag == dav("set") else None))
    if not out:
        raise DavError(400, "PROPPATCH changes no property")
    return out


@dataclass(frozen=True, slots=True)
class LockInfo:
    scope: Literal["exclusive", "shared"]
    owner: str | None  # the DAV:owner element, serialized


def parse_lockinfo(body: bytes) -> LockInfo:
    root = parse(body)
    if root.tag != dav("lockinfo"):
        raise DavError(400, "LOCK body must be a DAV:lockinfo element")
    scope = root.find(dav("lockscope"))
    kind = root.find(dav("locktype"))
    if scope is None or kind is None or len(scope) != 1:
        raise DavError(400, "DAV:lockinfo needs a lockscope and a locktype")
    if kind.find(dav("write")) is None:
        raise DavError(400, "only write locks exist")
    which = scope[0].tag
    if which not in (dav("exclusive"), dav("shared")):
        raise DavError(400, "lockscope is exclusive or shared")
    owner = root.find(dav("owner"))
    text = ET.tostring(owner, encoding="unicode") if owner is not None else None
    if text is not None and len(text.encode()) > MAX_OWNER:
        raise DavError(400, f"a lock's owner is at most {MAX_OWNER} bytes")
    return LockInfo("exclusive" if which == dav("exclusive") else "shared", text)


# -- rendering -----------------------------------------------------------------

HEAD = '<?xml version="1.0" encoding="utf-8"?>\n<D:multistatus xmlns:D="DAV:">'
TAIL = "</D:multistatus>\n"


def tag(name: str, inner: str = "") -> str:
    """An element named by a Clark name, declaring its namespace itself."""
    if name.startswith("{"):
        ns, _, local = name[1:].partition("}")
    else:
        ns, local = "", name
    if ns == DAV:
        open_, close = f"D:{local}", f"D:{local}"
    elif ns:
        open_, close = f'L:{local} xmlns:L="{escape(ns)}"', f"L:{local}"
    else:
        open_, close = f'{local} xmlns=""', local
    return f"<{open_}/>" if not inner else f"<{open_}>{inner}</{close}>"


def text(value: str) -> str:
    return escape(value, quote=False)


def element(elem: ET.Element) -> str:
    """A stored (dead) property, as it was set."""
    return ET.tostring(elem, encoding="unicode", short_empty_elements=True)


def response(href: str, propstats: Sequence[tuple[int, Iterable[str]]]) -> str:
    """One DAV:response: per status, the rendered properties."""
    out = [f"<D:response><D:href>{text(href)}</D:href>"]
    for status, props in propstats:
        body = "".join(props)
        if not body:
            continue
        out.append(
            f"<D:propstat><D:prop>{body}</D:prop>"
            f"<D:status>HTTP/1.1 {status} {STATUS_TEXT.get(status, '')}</D:status></D:propstat>"
        )
    out.append("</D:response>")
    return "".join(out)


def status_response(href: str, status: int) -> str:
    return (
        f"<D:response><D:href>{text(href)}</D:href>"
        f"<D:status>HTTP/1.1 {status} {STATUS_TEXT.get(status, '')}</D:status></D:response>"
    )


def error_body(condition: str, href: str | None = None) -> str:
    inner = f"<D:href>{text(href)}</D:href>" if href else ""
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<D:error xmlns:D="DAV:"><D:{condition}>{inner}</D:{condition}></D:error>\n'
    )


def activelock(
    scope: str, depth: str, owner: str | None, timeout: int, token: str, root: str
) -> str:
    owner_xml = owner or ""
    return (
        "<D:activelock>"
        f"<D:locktype><D:write/></D:locktype><D:lockscope><D:{scope}/></D:lockscope>"
        f"<D:depth>{'infinity' if depth == 'infinity' else '0'}</D:depth>{owner_xml}"
        f"<D:timeout>Second-{timeout}</D:timeout>"
        f"<D:locktoken><D:href>{text(token)}</D:href></D:locktoken>"
        f"<D:lockroot><D:href>{text(root)}</D:href></D:lockroot>"
        "</D:activelock>"
    )


SUPPORTEDLOCK = (
    "<D:supportedlock>"
    "<D:lockentry><D:lockscope><D:exclusive/></D:lockscope>"
    "<D:locktype><D:write/></D:locktype></D:lockentry>"
    "<D:lockentry><D:lockscope><D:shared/></D:lockscope>"
    "<D:locktype><D:write/></D:locktype></D:lockentry>"
    "</D:supportedlock>"
)


def lock_answer(activelocks: str) -> str:
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<D:prop xmlns:D="DAV:"><D:lockdiscovery>{activelocks}</D:lockdiscovery></D:prop>\n'
    )
