"""Shared moves of the outside attacks on the web interface and WebDAV
(test_web_outside.py, test_dav_outside.py): a WebDAV client that keeps its
connection (for the floods), namespaces shared between fresh users, the
journal's head as the proof that a refused request wrote nothing, and the
server's memory and CPU around an attack."""

from __future__ import annotations

import base64
import http.client
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from tests.attack.helpers import head, run
from tests.dav.davclient import Answer, Dav
from tests.support.api import Api, admin, ns_id, unique
from tests.support.resources import cpu_seconds, pid_of, rss
from tests.support.server import ServerProc

LOCKINFO = (
    b'<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:{scope}/>'
    b"</D:lockscope><D:locktype><D:write/></D:locktype>{owner}</D:lockinfo>"
)


def lockinfo(scope: str = "exclusive", owner: bytes = b"") -> bytes:
    return LOCKINFO.replace(b"{scope}", scope.encode()).replace(b"{owner}", owner)


class KeptDav(Dav):
    """A WebDAV client on one kept-alive connection (reconnecting when the
    server closes it): a flood of small requests without a handshake each."""

    def __init__(self, url: str, user: str, password: str) -> None:
        super().__init__(url, user, password)
        cred = base64.b64encode(f"{user}:{password}".encode()).decode()
        self.auth = f"Basic {cred}"
        self.con: http.client.HTTPConnection | None = None

    def req(  # type: ignore[override]
        self,
        method: str,
        target: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        hdrs = {"Authorization": self.auth, **(headers or {})}
        for attempt in range(2):
            if self.con is None:
                self.con = http.client.HTTPConnection(self.host, self.port, timeout=60)
            try:
                self.con.request(method, target, body=body, headers=hdrs)
                r = self.con.getresponse()
                data = r.read()
            except (http.client.HTTPException, ConnectionError):
                self.close()
                if attempt:
                    raise
                continue
            if r.will_close:
                self.close()
            return Answer(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.con is not None:
            self.con.close()
            self.con = None


@dataclass
class Team:
    """A namespace owned by ``owner`` and shared with ``member`` (read-write
    unless made read-only)."""

    name: str
    id: int
    owner: str
    member: str


def team(srv: ServerProc, owner: str, member: str, read_only: bool = False) -> Team:
    name = unique("team")
    admin(srv, "namespace", "create", name, "--owner", owner)
    args = ["namespace", "share", name, member] + (["--read-only"] if read_only else [])
    admin(srv, *args)
    return Team(name, ns_id(srv, name), owner, member)


def journal_head(srv: ServerProc, token: str, ns: int) -> int:
    async def go() -> int:
        async with Api(srv.url, token) as api:
            return await head(api, ns, token)

    return run(go())


@dataclass
class Usage:
    rss_before: int
    cpu_before: float
    rss_grew: int = 0
    cpu: float = 0.0
    seconds: float = 0.0


@contextmanager
def measured(srv: ServerProc) -> Iterator[Usage]:
    """What the server process's resident memory grew by and the CPU seconds it
    spent (all threads) while the block ran."""
    pid = pid_of(srv)
    u = Usage(rss(pid), cpu_seconds(pid))
    start = time.monotonic()
    yield u
    u.seconds = time.monotonic() - start
    u.rss_grew = rss(pid) - u.rss_before
    u.cpu = cpu_seconds(pid) - u.cpu_before
