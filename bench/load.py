"""Load on one server process with embedded defaults: N clients committing small
edits while M long-polls are held. Reports throughput, latency and errors.
Run: `.venv/bin/python bench/load.py [--seconds 60] [--committers 200] [--pollers 1000]`."""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.server import ServerProc  # noqa: E402

from linesync.client.transfer import prepare_file, split  # noqa: E402
from linesync.protocol.schemas import CommitResponse, ListResponse  # noqa: E402
from linesync.server.stores.sqlite import SqliteStore  # noqa: E402


async def make_users(data: Path, n: int) -> list[tuple[int, str]]:
    """Users u000.. with a token each, made directly in the store before it serves."""
    data.mkdir(parents=True, exist_ok=True)
    store = await SqliteStore.open(data / "meta.sqlite3")
    out = []
    try:
        await store.create_user("admin")
        for i in range(n):
            uid = await store.create_user(f"u{i:03d}")
            token = await store.create_token(f"u{i:03d}", "bench", "rw")
            spaces = await store.namespaces_of(uid)
            out.append((spaces[0].id, token))
    finally:
        await store.close()
    return out


class Stats:
    def __init__(self) -> None:
        self.commit_lat: list[float] = []
        self.errors: dict[str, int] = {}
        self.polls_answered = 0

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1


async def committer(
    s: aiohttp.ClientSession, url: str, ns: int, token: str, stop: float, st: Stats
) -> None:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    base_jid = 0
    base_ids = None
    chunks_old: dict[bytes, bytes] = {}
    n = 0
    while time.monotonic() < stop:
        n += 1
        data = b"".join(b"line %d of a small note\n" % i for i in range(40)) + b"edit %d\n" % n
        ids, chunks = split(data)
        prep = prepare_file("note.md", ids, chunks, size=len(data), mtime_ns=n,
                            base_jid=base_jid, base_ids=base_ids,
                            base_chunks=chunks_old.get)  # fmt: skip
        body = {"ops": [prep.op], "chunks": prep.inline}
        t0 = time.perf_counter()
        try:
            async with s.post(f"{url}/v1/ns/{ns}/commit", data=msgspec.json.encode(body),
                              headers=headers) as r:  # fmt: skip
                raw = await r.read()
                if r.status != 200:
                    st.error(f"commit {r.status}")
                    await asyncio.sleep(0.1)
                    continue
        except aiohttp.ClientError as exc:
            st.error(f"commit {type(exc).__name__}")
            continue
        st.commit_lat.append(time.perf_counter() - t0)
        res = msgspec.json.decode(raw, type=CommitResponse).results[0]
        if res.status != "ok":
            st.error(f"commit {res.status}")
            continue
        base_jid, base_ids, chunks_old = res.jid or 0, ids, chunks


async def poller(
    s: aiohttp.ClientSession, url: str, ns: int, token: str, stop: float, st: Stats
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    cursor = ""
    while time.monotonic() < stop:
        params = {"wait": "20"}
        if cursor:
            params["cursor"] = cursor
        try:
            async with s.get(f"{url}/v1/ns/{ns}/list", params=params, headers=headers,
                             timeout=aiohttp.ClientTimeout(total=60)) as r:  # fmt: skip
                raw = await r.read()
                if r.status != 200:
                    st.error(f"list {r.status}")
                    await asyncio.sleep(0.5)
                    continue
        except (aiohttp.ClientError, TimeoutError) as exc:
            if time.monotonic() < stop:
                st.error(f"list {type(exc).__name__}")
            continue
        st.polls_answered += 1
        cursor = msgspec.json.decode(raw, type=ListResponse).cursor


async def run(url: str, users: list[tuple[int, str]], pollers: int, seconds: float) -> Stats:
    st = Stats()
    stop = time.monotonic() + seconds
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn) as s:
        tasks = [asyncio.create_task(committer(s, url, ns, tok, stop, st)) for ns, tok in users]
        tasks += [
            asyncio.create_task(poller(s, url, *users[i % len(users)], stop, st))
            for i in range(pollers)
        ]
        await asyncio.gather(*tasks)
    return st


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--committers", type=int, default=200)
    ap.add_argument("--pollers", type=int, default=1000)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="linesync-load-"))
    try:
        users = asyncio.run(make_users(tmp / "server", args.committers))
        srv = ServerProc(tmp / "server", extra=["--rate", "100000"]).start()
        try:
            st = asyncio.run(run(srv.url, users, args.pollers, args.seconds))
        finally:
            srv.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    lat = sorted(st.commit_lat)
    n = len(lat)
    print(f"{args.committers} committers, {args.pollers} long-polls held, {args.seconds:.0f} s, "
          "one server process (SQLite + packs)")  # fmt: skip
    if n:
        p50, p99 = statistics.median(lat) * 1000, lat[int(0.99 * (n - 1))] * 1000
        print(
            f"commits: {n} ({n / args.seconds:.0f}/s), latency p50 {p50:.1f} ms, p99 {p99:.1f} ms"
        )
    print(f"long-polls answered: {st.polls_answered}")
    print(f"errors: {st.errors or 'none'}")
    return 0 if not st.errors else 1


if __name__ == "__main__":
    raise SystemExit(main())
