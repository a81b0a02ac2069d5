"""Helpers for the HTTP API tests: raw requests, users, chunks and uploads.

Everything here talks to a real server (``tests.support.server.ServerProc``)
over a real socket. ``Api`` is a thin raw client that returns the status,
headers and body of every answer (for error cases); ``linesync.client.remote.
Remote`` is used for the normal calls.
"""

from __future__ import annotations

import base64
import contextlib
import io
import itertools
import json
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from linesync.cli.main import main as cli_main
from linesync.client import remote
from linesync.core.chunking import chunk
from linesync.core.ids import ChunkId, chunk_id, pack_ids, unpack_ids
from linesync.protocol import codec
from linesync.protocol.framing import Frame, FrameReader, encode_frames
from linesync.protocol.schemas import CommitOp, Content, Kind
from tests.support.server import ServerProc

_seq = itertools.count(1)


def unique(prefix: str) -> str:
    """A name no other test in this process uses."""
    return f"{prefix}{os.getpid()}x{next(_seq)}"


# -- admin CLI (in process: same code path as ``linesync ...``, much faster) --


def cli(*args: str) -> tuple[int, str, str]:
    """Run ``linesync ARGS`` in this process: its exit code, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = cli_main(list(args))
        except SystemExit as exc:
            rc = int(exc.code or 0)
    return rc, out.getvalue(), err.getvalue()


def admin(srv: ServerProc, *args: str) -> str:
    """Run ``linesync ARGS --data DIR`` (with the server's ``--db`` and ``--chunks``
    when it has them) in this process; its stdout. Never call it
    from inside a running event loop (use ``asyncio.to_thread``)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), _environ(srv.env):
        rc = cli_main([*args, "--data", str(srv.data), *srv.stores])
    assert rc == 0, f"linesync {' '.join(args)} failed ({rc}): {out.getvalue()}"
    return out.getvalue().strip()


@contextlib.contextmanager
def _environ(extra: dict[str, str]) -> Iterator[None]:
    """``extra`` in this process's environment for the block (the server's S3
    credentials, read by an admin command that opens the chunk store)."""
    saved = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def ns_id(srv: ServerProc, name: str) -> int:
    for ns in json.loads(admin(srv, "namespace", "list")):
        if ns["name"] == name:
            return int(ns["id"])
    raise AssertionError(f"no namespace {name!r}")


@dataclass
class User:
    name: str
    token: str
    ns: int  # home namespace id


def new_user(srv: ServerProc, device: str = "laptop", read_only: bool = False) -> User:
    """A fresh user (with its home namespace) and one token."""
    name = unique("u")
    admin(srv, "user", "add", name)
    return User(name, new_token(srv, name, device, read_only), ns_id(srv, name))


def new_token(srv: ServerProc, user: str, device: str, read_only: bool = False) -> str:
    args = ["token", "create", user, "--device", device]
    if read_only:
        args.append("--read-only")
    return admin(srv, *args).splitlines()[-1]


# -- HTTP ----------------------------------------------------------------------

# Every test connection is closed after one request. The server does not set
# TCP_NODELAY on accepted sockets (see test_api.py::test_keep_alive_is_not_delayed),
# so a second request on a kept-alive connection waits ~40 ms for a delayed ACK;
# fresh connections keep the suite fast without hiding that bug.


def _connector(keep_alive: bool = False) -> aiohttp.TCPConnector:
    return aiohttp.TCPConnector(force_close=not keep_alive, limit=64)


class Remote(remote.Remote):
    """``linesync.client.remote.Remote`` on a connection per request."""

    async def __aenter__(self) -> Remote:
        self._session = aiohttp.ClientSession(
            headers=self._headers,
            timeout=self._timeout,
            skip_auto_headers=remote.SKIP_HEADERS,
            connector=_connector(),
        )
        return self


@dataclass
class Resp:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def code(self) -> str | None:
        """The error code of an error body, else None."""
        try:
            doc = self.json()
        except ValueError:
            return None
        if isinstance(doc, dict) and isinstance(doc.get("error"), dict):
            return doc["error"].get("code")
        return None

    def expect(self, status: int, code: str | None = None) -> Resp:
        assert self.status == status, (self.status, self.body[:500])
        if code is not None:
            assert self.code == code, (self.status, self.body[:500])
            err = self.json()["error"]
            assert isinstance(err["message"], str) and err["message"]
        return self


class Api:
    """A raw client: every answer comes back as a :class:`Resp`, never raised.

    ``keep_alive`` for bodies the server refuses before reading them: on a
    connection the client asked to close, the server closes with the body
    unread and the client sees a reset instead of the answer."""

    def __init__(self, url: str, token: str | None = None, keep_alive: bool = False) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.keep_alive = keep_alive
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Api:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=60),
            skip_auto_headers=("Content-Type",),
            connector=_connector(self.keep_alive),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._session is not None
        await self._session.close()

    async def req(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        data: bytes | None = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        token: str | None | bool = True,
        content_type: str | None = None,
    ) -> Resp:
        assert self._session is not None
        hdrs: dict[str, str] = {}
        tok = self.token if token is True else (token or None)
        if tok:
            hdrs["Authorization"] = f"Bearer {tok}"
        if json_body is not None:
            data = json.dumps(json_body).encode()
            hdrs["Content-Type"] = "application/json"
        if content_type is not None:
            hdrs["Content-Type"] = content_type
        hdrs.update(headers or {})
        body: Any = data
        if isinstance(data, bytes) and len(data) > 2**20:
            body = io.BytesIO(data)  # aiohttp warns about large raw bytes bodies
        async with self._session.request(
            method, self.url + path, data=body, params=params, headers=hdrs
        ) as resp:
            body = await resp.read()
            return Resp(resp.status, {k.lower(): v for k, v in resp.headers.items()}, body)

    async def get(self, path: str, **kw: Any) -> Resp:
        return await self.req("GET", path, **kw)

    async def post(self, path: str, **kw: Any) -> Resp:
        return await self.req("POST", path, **kw)


# -- content -------------------------------------------------------------------


def split(data: bytes) -> list[bytes]:
    """The chunks of ``data`` as the client cuts them."""
    return [bytes(data[c.offset : c.offset + c.length]) for c in chunk(data)]


def ids_of(parts: Iterable[bytes]) -> list[ChunkId]:
    return [chunk_id(p) for p in parts]


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def text(lines: int, seed: str = "") -> bytes:
    """Distinct text of ``lines`` lines (about 40 bytes a line)."""
    return b"".join(f"{seed} line {i:06d} of some note text here\n".encode() for i in range(lines))


def raw_frames(parts: Iterable[bytes]) -> list[Frame]:
    return [Frame(chunk_id(p), codec.Codec.RAW, None, p) for p in parts]


def frames_body(frames: Sequence[Frame]) -> bytes:
    return encode_frames(frames)


def decode_frames(body: bytes) -> list[Frame]:
    reader = FrameReader(max_payload=64 * 2**20)
    frames = reader.feed(body)
    reader.close()
    return frames


def frame_bytes(frame: Frame, base: bytes | None = None) -> bytes:
    """The chunk bytes a downloaded frame carries."""
    return codec.decode(frame.codec, frame.payload, base, 2**20)


def file_op(
    path: str, data: bytes, base_jid: int = 0, mtime_ns: int = 1, exec_: bool = False
) -> CommitOp:
    return CommitOp(
        path=path,
        kind=Kind.FILE,
        base_jid=base_jid,
        size=len(data),
        mtime_ns=mtime_ns,
        exec=exec_,
        content=Content(ids=pack_ids(ids_of(split(data)))),
    )


def dir_op(path: str, base_jid: int = 0) -> CommitOp:
    return CommitOp(path=path, kind=Kind.DIRECTORY, base_jid=base_jid)


def tomb_op(path: str, base_jid: int) -> CommitOp:
    return CommitOp(path=path, kind=Kind.TOMBSTONE, base_jid=base_jid)


async def put_file(remote: Remote, ns: int, path: str, data: bytes, base_jid: int = 0) -> int:
    """Commit ``data`` at ``path``: commit, upload what is missing, commit again."""
    op = file_op(path, data, base_jid)
    (res,) = await remote.commit(ns, [op])
    if res.status == "missing":
        want = set(unpack_ids(res.missing or ""))
        await remote.upload(ns, [f for f in raw_frames(split(data)) if f.chunk_id in want])
        (res,) = await remote.commit(ns, [op])
    assert res.status == "ok" and res.jid, res
    return res.jid


async def upload(remote: Remote, ns: int, data: bytes) -> list[ChunkId]:
    """Upload the chunks of ``data`` (no commit); their ids."""
    parts = split(data)
    await remote.upload(ns, raw_frames(parts))
    return ids_of(parts)


async def missing(remote: Remote, ns: int, ids: Sequence[ChunkId]) -> list[ChunkId]:
    return unpack_ids((await remote.missing(ns, ids)).missing)


async def all_jids(remote: Remote, ns: int) -> list[int]:
    """Every JID 1..head answers entries/{jid}; head+1 does not exist."""
    head = (await remote.head(ns)).jid
    return [(await remote.entry(ns, j)).jid for j in range(1, head + 1)]


def ns_path(ns: int, tail: str) -> str:
    return f"/v1/ns/{ns}/{tail}"


def endpoint_requests(
    ns: int, cid: ChunkId, frames: bytes
) -> list[tuple[str, str, dict[str, Any]]]:
    """One well-formed request per namespace endpoint: (method, path, Api.req kwargs).
    ``cid`` is a chunk id to name; ``frames`` a chunk upload body."""
    from linesync.protocol.framing import MEDIA_TYPE

    return [
        ("GET", ns_path(ns, "head"), {}),
        ("GET", ns_path(ns, "list"), {}),
        (
            "POST",
            ns_path(ns, "commit"),
            {"json_body": {"ops": [{"path": "p", "kind": "directory"}]}},
        ),
        # A copy: entry 1 may be a version of another path (refused without "copy").
        ("POST", ns_path(ns, "restore"), {"json_body": {"path": "p", "jid": 1, "copy": True}}),
        ("POST", ns_path(ns, "chunks/missing"), {"json_body": {"ids": pack_ids([cid])}}),
        (
            "POST",
            ns_path(ns, "pending"),
            {"json_body": {"path": "p", "size": 1, "ids": pack_ids([cid])}},
        ),
        # Its seq is what the announcement above answered (tests put it in).
        ("GET", ns_path(ns, "pending/1"), {}),
        ("POST", ns_path(ns, "chunks"), {"data": frames, "content_type": MEDIA_TYPE}),
        ("POST", ns_path(ns, "chunks/get"), {"json_body": {"ids": pack_ids([cid])}}),
        ("GET", ns_path(ns, "entries/1"), {}),
        ("GET", ns_path(ns, "history"), {"params": {"path": "p"}}),
    ]


WRITE_ENDPOINTS = ("commit", "restore", "chunks/missing", "pending", "chunks")


def endpoint_name(path: str) -> str:
    """``/v1/ns/7/chunks/get`` → ``chunks/get``; ``/v1/ns/7/entries/1`` → ``entries``;
    ``/v1/ns/7/pending/9`` → ``pending/seq``."""
    tail = path.split("/", 4)[4]
    if tail.startswith("pending/"):
        return "pending/seq"
    return "entries" if tail.startswith("entries/") else tail


# -- metrics ---------------------------------------------------------------------------

_SAMPLE = re.compile(
    r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="[^"]*",?)*\})? '
    r"[-+]?(\d+(\.\d+)?([eE][-+]?\d+)?|Inf|NaN)$"
)


def parse_metrics(body: str) -> dict[str, float]:
    """Samples by name and labels (in name order), checking the text format."""
    samples: dict[str, float] = {}
    types: set[str] = set()
    for line in body.splitlines():
        if not line:
            continue
        if line.startswith("#"):
            parts = line.split()
            assert parts[1] in ("TYPE", "HELP"), line
            if parts[1] == "TYPE":
                assert parts[3] in ("counter", "gauge", "histogram", "summary", "untyped")
                assert parts[2] not in types, f"duplicate TYPE for {parts[2]}"
                types.add(parts[2])
            continue
        assert _SAMPLE.match(line), f"not a Prometheus sample: {line!r}"
        name, _, value = line.rpartition(" ")
        samples[_sorted_labels(name)] = float(value)
    return samples


def _sorted_labels(sample: str) -> str:
    """``name{b="1",a="2"}`` as ``name{a="2",b="1"}``: label order means nothing."""
    if "{" not in sample:
        return sample
    name, _, rest = sample.partition("{")
    labels = re.findall(r'[a-zA-Z_][a-zA-Z0-9_]*="[^"]*"', rest)
    return name + "{" + ",".join(sorted(labels)) + "}"
