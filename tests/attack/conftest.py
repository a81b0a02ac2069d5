"""Fixtures of the hardening suite, and what of it runs on PostgreSQL + S3.

``make test`` runs tests/attack twice: on the embedded stores (SQLite and pack
files in the data directory), and with ``LINESYNC_TEST_STORES=postgres+s3``,
where every server the suite starts (``srv``, ``launch``) gets a fresh
PostgreSQL database and S3 prefix of its own (tests/support/deploy.py).

The second run takes the tests that concern the stores: tokens, their expiry
and memberships (looked up in the database), namespaces and the chunks they
hold, paths and the commit rules (planned on PostgreSQL's prefetched
snapshot), uploads stored in S3 and junk refused without a 5xx. It runs with
``--dist loadfile``: each module's ``srv`` starts once. Left out, each for the
reason given in ``SHARED_LEFT_OUT`` below (times measured on PostgreSQL + S3,
``-n 2``, on this 2-core machine while other work ran on it: the whole suite
took 245 s there, far over the ~50 s this run may add to ``make test``; the
embedded run still runs all of them):

- test_connections.py: sockets, header and body timeouts, the connection cap:
  the listener's work, done before any store is touched;
- test_streaming.py: uploads in progress live in each process's memory
  (server/pending.py), never in the stores; its main test takes 30-47 s;
- test_resources.py: its store-bound tests are load tests, 800 timed uploads
  and the rest too slow here: 1,000 small commits (34-38 s), 2,000 long-polls
  (33-52 s), 5,000 one-MiB bases (11-12 s), a page of huge blocklists (8-13
  s); the other two check query parameters, before any store;
- test_leaks.py: dedup timing (finding 2) takes 67-80 s (800 timed uploads);
  metrics, a client hanging up mid-body and the data directory (which holds
  only the first token here) are about the process, not the stores, and each
  starts a server of its own;
- the decompression bombs of finding 1 (four tests, 17 s): refused while the
  body is decoded, before anything reaches a store; the size limit of a file
  (a commit rule, covered by the paths tests' commits);
- the per-address and per-token rate limits (9 s): counters in memory.

``LINESYNC_TEST_SHARED_ALL=1`` runs everything on PostgreSQL + S3 all the same.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.api import User, new_user
from tests.support.deploy import SharedStores, shared_mode, stores_for
from tests.support.resources import start_server
from tests.support.server import ServerProc

Launch = Callable[..., ServerProc]

HERE = Path(__file__).parent

# Left out of the PostgreSQL + S3 run (see the module's docstring): a module, or a
# test by name (with its parameters, if only one of them is left out).
SHARED_LEFT_OUT = {
    "test_connections.py": "the listener's work, before any store",
    "test_streaming.py": "uploads in progress are in memory; 30-47 s",
    "test_resources.py": "load tests, 8-52 s each; the rest checks parameters",
    "test_leaks.py": "dedup timing 67-80 s; the rest is about the process",
    "test_finding1_an_upload_of_2000_bombs_is_refused_in_bounded_memory": "decoding, no store",
    "test_finding1_a_commit_with_1000_inline_bombs_is_refused_in_bounded_memory": "decoding",
    "test_a_file_over_the_size_limit_is_refused": "a commit rule; a server of its own",
    "test_failed_sign_ins_are_rate_limited_per_address": "a counter in memory",
    "test_rate_limited": "a counter in memory",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With LINESYNC_TEST_STORES=postgres+s3, deselect what ``SHARED_LEFT_OUT`` names
    (unless LINESYNC_TEST_SHARED_ALL=1)."""
    if not shared_mode() or os.environ.get("LINESYNC_TEST_SHARED_ALL") == "1":
        return
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        names = {item.path.name, item.name, getattr(item, "originalname", item.name)}
        left_out = HERE in item.path.parents and bool(names & SHARED_LEFT_OUT.keys())
        (drop if left_out else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture
def user(srv: ServerProc) -> User:
    """A fresh user with a read-write token on the module's server."""
    return new_user(srv)


@pytest.fixture
def launch(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Launch]:
    """Start a fresh server of this test's own (``launch(extra, nofile=, umask=)``),
    for tests that measure the process or need other settings; all are stopped at
    the end of the test. With LINESYNC_TEST_STORES=postgres+s3, each on a fresh
    database and S3 prefix of its own."""
    started: list[ServerProc] = []
    made: list[SharedStores] = []

    def go(
        extra: list[str] | None = None, *, nofile: int | None = None, umask: int | None = None
    ) -> ServerProc:
        stores = stores_for(request)
        if stores is not None:
            made.append(stores)
        data = tmp_path / f"server{len(started)}"
        srv = start_server(data, extra, nofile=nofile, umask=umask, stores=stores)
        started.append(srv)
        return srv

    try:
        yield go
    finally:
        for srv in started:
            srv.stop()
        for stores in made:
            stores.close()
