"""Protocol version negotiation (PROTOCOL.md §1.4). Pure: no I/O.

Both sides name the protocol versions they speak in a ``Linesync-Protocol``
header: a comma-separated list of whole numbers (today ``1``). The server
announces its own on every response; a client sends its own on every
request. The server refuses a request whose versions it shares none of:

    no version in common, the server's newest is newer -> 426 client_too_old
    no version in common, the client's newest is newer -> 400 client_too_new

A request without the header is accepted (curl, WebDAV, browsers, and
clients from before negotiation: they speak version 1). The client checks
the server's header on every answer the same way, so a mismatch is one
clear line for the user whichever side is older. A missing header means a
server from before negotiation, which speaks version 1.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

HEADER = "Linesync-Protocol"
CURRENT = 1
# What this server accepts, and what this client speaks.
SERVER_SPEAKS: tuple[int, ...] = (1,)
CLIENT_SPEAKS: tuple[int, ...] = (1,)
# A peer that sends no header predates negotiation: it speaks version 1.
LEGACY: tuple[int, ...] = (1,)

UPGRADE_CLIENT = "upgrade linesync on this device (pip install -U linesync)"
UPGRADE_SERVER = "upgrade the server, or install the linesync version it runs on this device"
CLIENT_TOO_OLD = "client_too_old"
CLIENT_TOO_NEW = "client_too_new"

MAX_HEADER = 100
MAX_VERSION = 9999


def format_versions(versions: Iterable[int]) -> str:
    """The header value: ``1`` or ``1, 2``."""
    return ", ".join(str(v) for v in versions)


def parse_versions(text: str) -> tuple[int, ...]:
    """A header value as sorted distinct versions; ValueError if it is not a
    comma-separated list of whole numbers from 0 to 9999."""
    if len(text) > MAX_HEADER:
        raise ValueError(f"{HEADER} is longer than {MAX_HEADER} characters")
    out: set[int] = set()
    for part in text.split(","):
        item = part.strip()
        if not (item.isascii() and item.isdigit()) or len(item) > 4:
            raise ValueError(
                f"{HEADER} must be protocol version numbers separated by commas, like 1 "
                f"(got {text!r})"
            )
        out.add(int(item))
    return tuple(sorted(out))


def _words(versions: tuple[int, ...]) -> str:
    if len(versions) == 1:
        return f"version {versions[0]}"
    return f"versions {format_versions(versions)}"


@dataclass(frozen=True)
class Refusal:
    """Why two sides cannot talk: a protocol error code, the HTTP status the
    server answers with, and a message for the user."""

    code: str
    status: int
    message: str


def server_verdict(header: str | None, speaks: tuple[int, ...] | None = None) -> Refusal | None:
    """The server's decision on a request's ``Linesync-Protocol`` header:
    None to serve it, else the refusal to answer with. ``speaks``: default
    SERVER_SPEAKS."""
    speaks = SERVER_SPEAKS if speaks is None else speaks
    if header is None:
        return None
    try:
        theirs = parse_versions(header)
    except ValueError as exc:
        return Refusal("bad_request", 400, str(exc))
    if set(theirs) & set(speaks):
        return None
    if max(theirs) < max(speaks):  # whoever speaks the highest version is the newer
        return Refusal(
            CLIENT_TOO_OLD,
            426,
            f"this linesync is too old for the server: the server speaks protocol "
            f"{_words(speaks)}, this client {_words(theirs)}; {UPGRADE_CLIENT}",
        )
    return Refusal(
        CLIENT_TOO_NEW,
        400,
        f"the server is older than this linesync: it speaks protocol {_words(speaks)}, "
        f"this client {_words(theirs)}; {UPGRADE_SERVER}",
    )


def client_verdict(
    header: str | None, server: str, speaks: tuple[int, ...] | None = None
) -> Refusal | None:
    """The client's decision on the server's ``Linesync-Protocol`` answer
    header (``server``: its URL, for the message): None if they share a
    version. A header that is not a version list is ignored (a proxy's).
    ``speaks``: default CLIENT_SPEAKS."""
    speaks = CLIENT_SPEAKS if speaks is None else speaks
    try:
        theirs = LEGACY if header is None else parse_versions(header)
    except ValueError:
        return None
    if set(theirs) & set(speaks):
        return None
    if max(theirs) > max(speaks):
        return Refusal(
            CLIENT_TOO_OLD,
            426,
            f"the server at {server} is newer than this linesync: it speaks protocol "
            f"{_words(theirs)}, this client {_words(speaks)}; {UPGRADE_CLIENT}",
        )
    return Refusal(
        CLIENT_TOO_NEW,
        400,
        f"the server at {server} is older than this linesync: it speaks protocol "
        f"{_words(theirs)}, this client {_words(speaks)}; {UPGRADE_SERVER}",
    )
