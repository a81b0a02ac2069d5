"""The server is unreachable for a while during `watch`: the client retries with
growing backoff, deletes nothing, and catches up once the server is back on the
same address. Offline edits on both sides then meet without conflict copies."""

from __future__ import annotations

import asyncio
import re

from linesync.client.api import Client
from linesync.client.remote import Remote
from linesync.protocol.schemas import Entry
from tests.client.conftest import files
from tests.support.server import ServerProc
from tests.support.watch import wait_until, watching

_RETRY = re.compile(r"^server unreachable \(.*\); retrying in (\d+) s$", re.S)

BEFORE: dict[str, bytes] = {
    "keep.md": b"untouched by anyone\n",
    "gone.md": b"the user deletes this one on A\n",
    "edit_a.md": b"line 1\nline 2\nline 3\n",
    "edit_b.md": b"alpha\nbeta\ngamma\n",
    "sub/deep.md": b"a file in a folder\n",
}
EDIT_A = b"line 1\nline 2, edited on A while the server was down\nline 3\n"
NEW_A = b"created on A while the server was down\n"
EDIT_B = b"alpha\nbeta, edited on B while the server was down\ngamma\n"


def _server_view(server: ServerProc, ns: int) -> dict[str, Entry]:
    """The server's current entry per path (tombstones included, if listed)."""

    async def go() -> dict[str, Entry]:
        out: dict[str, Entry] = {}
        async with Remote(server.url, server.token) as r:
            cursor: str | None = None
            for _ in range(100):
                resp = await r.list_changes(ns, cursor)
                for e in resp.entries:
                    out[e.path] = e
                cursor = resp.cursor
                if not resp.more:
                    break
        return out

    return asyncio.run(go())


def _retry_delays(messages: list[str]) -> list[int]:
    return [int(m.group(1)) for m in map(_RETRY.match, messages) if m is not None]


def _restart_on_same_port(server: ServerProc) -> None:
    """`ServerProc.start` passes `--port 0`; a later `--port` in `extra` wins, so
    the server comes back on the address the watching client already uses."""
    url = server.url
    port = int(url.rsplit(":", 1)[1])
    server.extra = [*server.extra, "--port", str(port)]
    server.start()
    assert server.url == url, (server.url, url)


def test_server_outage_during_watch_retries_with_backoff_deletes_nothing_and_catches_up(
    pair: tuple[Client, Client], server: ServerProc
) -> None:
    a0, b = pair
    for path, content in BEFORE.items():
        (a0.folder / path).parent.mkdir(parents=True, exist_ok=True)
        (a0.folder / path).write_bytes(content)
    assert a0.sync_once().converged
    assert b.sync_once().converged
    assert files(a0.folder) == files(b.folder) == BEFORE
    assert server.url.startswith("http://127.0.0.1:")

    reports: list[str] = []
    a = Client(a0.folder, report=reports.append)
    ns = a.config.namespace

    with watching(a) as (watch,):
        # The first round of the watch loop runs at once: wait for it.
        assert wait_until(lambda: any(r.converged for r in watch.results), 30), (
            reports,
            watch.results,
        )
        online_results = len(watch.results)

        # -- the outage --------------------------------------------------------
        outage_from = len(reports)
        server.stop()
        (a.folder / "gone.md").unlink()
        (a.folder / "edit_a.md").write_bytes(EDIT_A)
        (a.folder / "new.md").write_bytes(NEW_A)
        (b.folder / "edit_b.md").write_bytes(EDIT_B)  # B is not watching
        expected_a_offline = {
            **{p: c for p, c in BEFORE.items() if p != "gone.md"},
            "edit_a.md": EDIT_A,
            "new.md": NEW_A,
        }

        # Keep it down until A has retried three times (after 1, 2 and 4 s) and
        # failed each time: it then announces an 8 s wait.
        assert wait_until(lambda: 8 in _retry_delays(reports[outage_from:]), 40), reports
        assert watch.alive(), watch.error
        during = reports[outage_from:]
        delays = _retry_delays(during)
        assert delays[:4] == [1, 2, 4, 8], during
        assert delays == [min(2**i, 60) for i in range(len(delays))], during
        assert all(_RETRY.match(m) for m in during), during  # only "unreachable" reports
        assert len(watch.results) == online_results  # no sync round completed offline
        # Nothing deleted on A except what the user deleted; nothing changed on B.
        assert files(a.folder) == expected_a_offline
        assert files(b.folder) == {**BEFORE, "edit_b.md": EDIT_B}

        # -- the server is back, on the same URL -------------------------------
        _restart_on_same_port(server)

        def a_caught_up() -> bool:
            view = _server_view(server, ns)
            new, edited, gone = view.get("new.md"), view.get("edit_a.md"), view.get("gone.md")
            return (
                new is not None
                and new.kind.value == "file"
                and new.size == len(NEW_A)
                and edited is not None
                and edited.size == len(EDIT_A)
                and edited.device == "alpha"
                and (gone is None or gone.kind.value != "file")
            )

        # A's next retry is at most 8 s away; it must upload A's offline changes.
        assert wait_until(a_caught_up, 30, step=0.25), (reports, _server_view(server, ns))
        view = _server_view(server, ns)
        assert {p for p, e in view.items() if e.kind.value == "file"} == set(expected_a_offline)

        # B comes online: it gets A's changes and sends its own offline edit.
        rb = b.sync_once()
        assert rb.converged, rb
        assert rb.deleted_local == 1 and rb.deleted_remote == 0, rb  # gone.md, nothing else
        assert rb.conflicts == [], rb

        # A's watch picks up B's edit without anyone running sync on A.
        assert wait_until(lambda: (a.folder / "edit_b.md").read_bytes() == EDIT_B, 30), (
            reports,
            watch.results[online_results:],
        )

    after = watch.results[online_results:]
    assert after, reports
    assert sum(r.deleted_local for r in after) == 0, after  # A deleted nothing itself
    assert sum(r.deleted_remote for r in after) == 1, after  # the user's deletion, once
    assert all(r.conflicts == [] for r in after), after

    # -- final state: both folders the same, only the user's deletion applied ---
    assert b.sync_once().converged
    expected = {**expected_a_offline, "edit_b.md": EDIT_B}
    assert files(a.folder) == expected
    assert files(b.folder) == expected
    assert not any("(conflict from " in p for p in files(a.folder)), sorted(files(a.folder))
    assert {p for p, e in _server_view(server, ns).items() if e.kind.value == "file"} == set(
        expected
    )
