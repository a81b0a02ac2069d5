"""The web interface and WebDAV on a namespace the size of a real folder
(40,000 files in 440 folders), from outside: what people do there (browse,
PROPFIND, zip a folder, look at conflicts, copy, move and delete a folder)
must cost the server in proportion to what it shows, not to the namespace.

Run on the embedded stores and on PostgreSQL + S3: the folder reads are a
skip scan on each (``MetadataStore.children``). The bounds are on the server
process's CPU seconds and peak RSS for a batch of requests; reading every
current entry per request (as the pages did before) costs several times the
CPU bounds here (measured on the embedded stores: 5.2, 3.6 and 1.6 s against
0.1-0.25 s now)."""

from __future__ import annotations

import asyncio
import html
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from linesync.protocol.schemas import CommitOp, Content, Kind
from tests.dav.davclient import Dav, hrefs
from tests.support.api import Remote, User, new_user
from tests.support.deploy import shared_stores
from tests.support.resources import MB, Meter, pid_of, rss
from tests.support.server import ServerProc
from tests.web.webclient import Web

TOPS, SUBS, FILES = 40, 10, 100  # 40 x 10 folders of 100 files: 40,000 files
# A file of conflicts, in one folder, as a client names them.
CONFLICTS = ["d07/s3/f000 (conflict from phone 2026-12-01 101500).txt"]


@dataclass
class Big:
    srv: ServerProc
    user: User
    web: Web
    dav: Dav


def _tree() -> list[CommitOp]:
    ops = []
    for t in range(TOPS):
        ops.append(CommitOp(path=f"d{t:02}", kind=Kind.DIRECTORY))
        for s in range(SUBS):
            folder = f"d{t:02}/s{s}"
            ops.append(CommitOp(path=folder, kind=Kind.DIRECTORY))
            ops += [
                CommitOp(path=f"{folder}/f{i:03}.txt", kind=Kind.FILE, content=Content(ids=""))
                for i in range(FILES)
            ]
    ops += [CommitOp(path=p, kind=Kind.FILE, content=Content(ids="")) for p in CONFLICTS]
    return ops


@pytest.fixture(scope="module", params=["embedded", "postgres+s3"])
def big(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Big]:
    proc = ServerProc(tmp_path_factory.mktemp("big") / "server")
    stores = None
    if request.param == "postgres+s3":
        stores = shared_stores(request.getfixturevalue("s3_server"))
        stores.apply(proc)
    try:
        srv = proc.start()
        user = new_user(srv)

        async def fill() -> None:
            async with Remote(srv.url, user.token) as r:
                ops = _tree()
                for start in range(0, len(ops), 1000):
                    done = await r.commit(user.ns, ops[start : start + 1000])
                    assert {x.status for x in done} == {"ok"}

        asyncio.run(fill())
        web = Web(srv.url)
        assert web.signin(user.name, user.token).status == 303
        yield Big(srv, user, web, Dav(srv.url, user.name, user.token))
    finally:
        proc.stop()
        if stores is not None:
            stores.close()


DEPTH0 = {"Depth": "0"}


def _report(what: str, m: Meter, base: int) -> None:
    rise = (m.usage.peak_rss - base) / MB
    print(f"\n{what}: server CPU {m.usage.cpu:.2f} s, RSS +{rise:.1f} MB")


def _listed(page: str) -> list[str]:
    return [html.unescape(p) for p in re.findall(r'data-path="([^"]+)"', page)]


def test_browsing_costs_what_the_folder_holds(big: Big) -> None:
    ns = big.user.ns
    pid = pid_of(big.srv)
    base = rss(pid)
    with Meter(pid) as m:
        for _ in range(5):
            top = big.web.get(f"/web/ns/{ns}/browse")
            assert top.status == 200 and _listed(top.text) == [f"d{t:02}" for t in range(TOPS)]
            mid = big.web.get(f"/web/ns/{ns}/browse?path=d07")
            assert _listed(mid.text) == [f"d07/s{s}" for s in range(SUBS)]
            leaf = big.web.get(f"/web/ns/{ns}/browse?path=d07/s3")
            names = _listed(leaf.text)
            # 100 files, the conflict copy right after its original.
            assert len(names) == FILES + 1 and names[:2] == ["d07/s3/f000.txt", CONFLICTS[0]]
            assert 'badge warn">1<' in leaf.text  # the namespace's conflict count
    _report("15 folder pages", m, base)
    assert m.usage.cpu < 1.5  # reading every current entry: 5.2 s
    assert m.usage.peak_rss - base < 40 * MB


def test_propfind_costs_what_the_folder_holds(big: Big) -> None:
    ns = big.user.name
    pid = pid_of(big.srv)
    base = rss(pid)
    with Meter(pid) as m:
        for _ in range(5):
            top = big.dav.req("PROPFIND", big.dav.url(ns), headers={"Depth": "1"})
            assert top.status == 207 and len(hrefs(top)) == TOPS + 1
            leaf = big.dav.req("PROPFIND", big.dav.url(ns, "d07/s3/"), headers={"Depth": "1"})
            assert leaf.status == 207 and len(hrefs(leaf)) == FILES + 2
            one = big.dav.req(
                "PROPFIND", big.dav.url(ns, "d39/s9/f099.txt"), headers={"Depth": "0"}
            )
            assert one.status == 207 and len(hrefs(one)) == 1
    _report("15 PROPFINDs", m, base)
    assert m.usage.cpu < 1.5  # reading every current entry: 3.6 s
    assert m.usage.peak_rss - base < 40 * MB


def test_folder_operations_cost_what_the_folder_holds(big: Big) -> None:
    """Zip, conflicts, and WebDAV COPY, MOVE and DELETE of a 100-file folder."""
    ns, name = big.user.ns, big.user.name
    pid = pid_of(big.srv)
    base = rss(pid)
    dest = f"{big.srv.url}/dav/{name}/"
    with Meter(pid) as m:
        z = big.web.get(f"/web/ns/{ns}/zip?path=d12/s4")
        assert z.status == 200 and z.body.count(b"PK\x03\x04") == FILES
        c = big.web.get(f"/web/ns/{ns}/conflicts")
        assert c.status == 200 and "conflict from phone" in c.text
        to = {"Destination": dest + "copied/", "Depth": "infinity"}
        copy = big.dav.req("COPY", big.dav.url(name, "d12/s4/"), headers=to)
        assert copy.status == 201, copy.body
        moved = big.dav.req("MOVE", big.dav.url(name, "copied/"),
                            headers={"Destination": dest + "d13/moved/"})  # fmt: skip
        assert moved.status == 201, moved.body
        gone = big.dav.req("DELETE", big.dav.url(name, "d13/moved/"))
        assert gone.status == 204, gone.body
    _report("zip, conflicts, COPY, MOVE, DELETE", m, base)
    assert m.usage.cpu < 1.0  # reading every current entry: 1.6 s
    assert m.usage.peak_rss - base < 40 * MB
    after = big.dav.req("PROPFIND", big.dav.url(name, "d13/"), headers={"Depth": "1"})
    assert len(hrefs(after)) == SUBS + 1  # the moved folder is gone again
    still = big.dav.req("PROPFIND", big.dav.url(name, "d12/s4/"), headers={"Depth": "1"})
    assert len(hrefs(still)) == FILES + 1
    ET.fromstring(still.body)  # well-formed
