"""Write-once object storage: the layer under `ObjectPackStore` (objpacks.py).

An `ObjectBackend` holds named, immutable objects: it can create one (never
overwrite it), read byte ranges of it, list and delete. That is all an object
store such as S3 offers cheaply, and all the pack store above needs. Two
implementations: `LocalObjects` (files in a directory; tests and single nodes)
and `S3Objects` (any S3-compatible store, through obstore).

Object names are relative paths of `[A-Za-z0-9._-]` segments separated by `/`;
a segment may not start with `.` (so no `..`, and temporary files stay apart).
Every backend counts its requests in `stats` (what S3 bills: a PUT, a GET, a
LIST page, a DELETE), so a benchmark can tell requests per MB.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import re
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, TypeVar
from urllib.parse import parse_qsl, urlsplit

import obstore
import obstore.exceptions as obx
from obstore.store import S3Store

from linesync.server.stores.packs import ChunkStoreError, fsync_dir, mkdirs

if TYPE_CHECKING:
    from obstore.store import ClientConfig, RetryConfig, S3Config

_T = TypeVar("_T")
Listing = list[tuple[str, int]]  # (name, size) of objects
_NAME_RE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*(/[A-Za-z0-9_-][A-Za-z0-9._-]*)*")
_TMP_PREFIX = ".tmp-"
_PARALLEL_GETS = 16  # ranged GETs of one get_ranges call in flight at once
_LIST_PAGE = 1000  # S3 answers at most 1,000 keys a LIST request


class ObjectNotFoundError(ChunkStoreError):
    """The object does not exist (never written, or deleted)."""


class ObjectExistsError(ChunkStoreError):
    """`put` of a name that is already taken: objects are written once."""


@dataclass
class RequestStats:
    """Requests a backend sent, by kind, and the bytes they carried. A call the
    client library retried counts once; `lists` counts LIST pages (1,000 keys)."""

    puts: int = 0
    put_bytes: int = 0
    gets: int = 0
    get_bytes: int = 0
    lists: int = 0
    deletes: int = 0
    errors: int = 0  # requests that failed (after the client's own retries)


class ObjectBackend(Protocol):
    """Write-once objects. Every method may raise `ChunkStoreError` (I/O, network,
    permissions, a closed backend); invalid names raise ValueError."""

    stats: RequestStats

    async def put(self, name: str, data: bytes) -> None:
        """Create object `name` holding `data`, durable when this returns. Names are
        never reused: if `name` exists this raises `ObjectExistsError` and leaves the
        old object as it was (it never overwrites, silently or not). A reader sees
        either no object or all of `data`, never a part."""
        ...

    async def get_range(self, name: str, offset: int, length: int) -> bytes:
        """Up to `length` bytes from `offset`: fewer only at the end of the object,
        b"" at or past its end. `ObjectNotFoundError` if the object does not exist.
        One request."""
        ...

    async def get_ranges(self, name: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        """`get_range` for each `(offset, length)`, in order: one request per range,
        run concurrently. Callers coalesce neighbouring reads into one range first
        (ObjectPackStore does): the number of ranges is the number of requests."""
        ...

    async def list(self, prefix: str = "", after: str = "") -> Listing:
        """`(name, size)` of every object whose name starts with `prefix` (a plain
        string prefix) and sorts after `after`, sorted by name."""
        ...

    async def delete(self, name: str) -> None:
        """Remove the object; a missing object is not an error."""
        ...

    async def close(self) -> None:
        """Release resources; later calls raise ChunkStoreError. Idempotent."""
        ...


def check_name(name: str) -> str:
    if not isinstance(name, str) or _NAME_RE.fullmatch(name) is None:
        raise ValueError(f"invalid object name: {name!r}")
    return name


def _list_folder(prefix: str) -> str:
    """The folder part of a list prefix ("" for the top), checked like a name."""
    folder = prefix.rpartition("/")[0]
    if folder and _NAME_RE.fullmatch(folder) is None:
        raise ValueError(f"invalid prefix: {prefix!r}")
    return folder


def _check_range(offset: int, length: int) -> None:
    if offset < 0 or length < 0:
        raise ValueError(f"invalid range: offset {offset}, length {length}")


# -- files ----------------------------------------------------------------------------


class LocalObjects:
    """Objects as files under `root` (a name's `/` are directories), for tests
    and single nodes. A put writes a temporary file `.tmp-*` in the target
    directory, fsyncs it, links it to its name (`link` fails if the name exists:
    no overwrite, even between processes), unlinks the temporary name and
    fsyncs the directory. Temporary files left by a crash are never listed.
    Directories are created 0700, files 0600."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.stats = RequestStats()
        self._closed = False

    def _path(self, name: str) -> Path:
        return self.root / check_name(name)

    async def _run(self, fn: Callable[[], _T], what: str) -> _T:
        if self._closed:
            raise ChunkStoreError("object store is closed")
        try:
            return await asyncio.to_thread(fn)
        except ChunkStoreError:
            self.stats.errors += 1
            raise
        except OSError as exc:
            self.stats.errors += 1
            raise ChunkStoreError(f"{what}: {exc}") from exc

    async def put(self, name: str, data: bytes) -> None:
        path = self._path(name)
        self.stats.puts += 1
        self.stats.put_bytes += len(data)
        await self._run(lambda: self._put_sync(name, path, data), f"cannot write {name}")

    @staticmethod
    def _put_sync(name: str, path: Path, data: bytes) -> None:
        mkdirs(path.parent)
        tmp = path.parent / f"{_TMP_PREFIX}{secrets.token_hex(8)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise ObjectExistsError(f"object exists: {name}") from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        fsync_dir(path.parent)

    def _read_sync(self, name: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        try:
            fd = os.open(self._path(name), os.O_RDONLY)
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFoundError(f"no such object: {name}") from None
        try:
            return [os.pread(fd, length, offset) if length else b"" for offset, length in ranges]
        finally:
            os.close(fd)

    async def get_range(self, name: str, offset: int, length: int) -> bytes:
        return (await self.get_ranges(name, [(offset, length)]))[0]

    async def get_ranges(self, name: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        check_name(name)
        for offset, length in ranges:
            _check_range(offset, length)
        self.stats.gets += len(ranges)
        got = await self._run(lambda: self._read_sync(name, ranges), f"cannot read {name}")
        self.stats.get_bytes += sum(map(len, got))
        return got

    async def list(self, prefix: str = "", after: str = "") -> Listing:
        _list_folder(prefix)
        self.stats.lists += 1
        return await self._run(lambda: self._list_sync(prefix, after), "cannot list objects")

    def _list_sync(self, prefix: str, after: str) -> Listing:
        out: Listing = []
        start = self.root / _list_folder(prefix)  # no need to walk other folders
        for top, dirs, files in os.walk(start):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            rel = Path(top).relative_to(self.root).as_posix()
            for f in files:
                name = f if rel == "." else f"{rel}/{f}"
                if f.startswith(".") or not name.startswith(prefix) or name <= after:
                    continue
                with contextlib.suppress(FileNotFoundError):
                    out.append((name, os.stat(os.path.join(top, f)).st_size))
        return sorted(out)

    async def delete(self, name: str) -> None:
        path = self._path(name)
        self.stats.deletes += 1

        def rm() -> None:
            try:
                path.unlink()
            except FileNotFoundError:
                return
            fsync_dir(path.parent)

        await self._run(rm, f"cannot delete {name}")

    async def close(self) -> None:
        self._closed = True


# -- S3 -------------------------------------------------------------------------------

_S3_CODE = re.compile(r"<Code>([^<]*)</Code>")
_S3_MESSAGE = re.compile(r"<Message>([^<]*)</Message>")
_HTTP_416 = re.compile(r"\b416 Range Not Satisfiable\b")

DEFAULT_RETRY: RetryConfig = {
    "max_retries": 3,
    "retry_timeout": timedelta(seconds=20),
    "backoff": {"init_backoff": timedelta(milliseconds=100), "max_backoff": timedelta(seconds=2)},
}


def _describe(exc: Exception) -> str:
    """One line out of obstore's multi-line error text: S3's error code and
    message when the server sent them, else the first line."""
    text = str(exc) or type(exc).__name__
    code, message = _S3_CODE.search(text), _S3_MESSAGE.search(text)
    first = text.splitlines()[0].split(": <?xml")[0]
    if code:
        return f"{code[1]}: {message[1] if message else ''} ({first})"
    return first


def _s3_error(what: str, name: str, bucket: str, exc: Exception) -> ChunkStoreError:
    if isinstance(exc, FileNotFoundError | obx.NotFoundError):
        return ObjectNotFoundError(f"no such object: {name}")
    if isinstance(exc, obx.AlreadyExistsError | obx.PreconditionError):
        return ObjectExistsError(f"object exists: {name}")
    verb = (
        "denied"
        if isinstance(exc, obx.PermissionDeniedError | obx.UnauthenticatedError)
        else "failed"
    )
    return ChunkStoreError(f"S3 {what} {name!r} in bucket {bucket} {verb}: {_describe(exc)}")


class S3Objects:
    """Objects in an S3 bucket (any S3-compatible store), under `prefix` (a
    folder path ending in `/`, or "").

    Puts are single requests (never multipart) with `If-None-Match: *`, so a
    name is never overwritten (`conditional_put=False` for stores without
    conditional writes: then uniqueness rests on the names alone). Credentials
    left out are taken the usual AWS ways (AWS_* environment variables, ...).
    Plain HTTP is refused unless `allow_http`. Requests the client library
    retries (5xx, dropped connections) follow `retry` (default: `DEFAULT_RETRY`).
    """

    def __init__(
        self,
        bucket: str,
        *,
        endpoint: str | None = None,
        region: str | None = None,
        prefix: str = "",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
        allow_http: bool = False,
        conditional_put: bool = True,
        timeout: timedelta = timedelta(seconds=60),
        connect_timeout: timedelta = timedelta(seconds=5),
        retry: RetryConfig | None = None,
    ) -> None:
        if prefix and not (prefix.endswith("/") and _NAME_RE.fullmatch(prefix[:-1])):
            raise ValueError(f"invalid prefix {prefix!r}: a folder path ending in /, or empty")
        self.bucket, self.endpoint, self.prefix = bucket, endpoint, prefix
        self.conditional_put = conditional_put
        self.stats = RequestStats()
        self._closed = False
        config: S3Config = {}  # what is left out, obstore takes from AWS_* variables
        if endpoint is not None:
            config["endpoint"] = endpoint
        if region is not None:
            config["region"] = region
        if access_key_id is not None:
            config["access_key_id"] = access_key_id
        if secret_access_key is not None:
            config["secret_access_key"] = secret_access_key
        if session_token is not None:
            config["session_token"] = session_token
        client: ClientConfig = {
            "allow_http": allow_http,
            "timeout": timeout,
            "connect_timeout": connect_timeout,
        }
        try:
            self._store = S3Store(
                bucket,
                prefix=prefix.rstrip("/") or None,
                config=config,
                client_options=client,
                retry_config=retry if retry is not None else DEFAULT_RETRY,
            )
        except Exception as exc:
            raise ChunkStoreError(
                f"cannot configure S3 bucket {bucket}: {_describe(exc)}"
            ) from None

    def __repr__(self) -> str:  # never a secret
        return f"S3Objects({self.bucket!r}, endpoint={self.endpoint!r}, prefix={self.prefix!r})"

    async def _call(self, what: str, name: str, call: Awaitable[_T]) -> _T:
        try:
            return await call
        except Exception as exc:
            self.stats.errors += 1
            raise _s3_error(what, name, self.bucket, exc) from None

    def _check_open(self) -> None:
        if self._closed:
            raise ChunkStoreError("object store is closed")

    async def put(self, name: str, data: bytes) -> None:
        check_name(name)
        self._check_open()
        self.stats.puts += 1
        self.stats.put_bytes += len(data)
        mode: Literal["create", "overwrite"] = "create" if self.conditional_put else "overwrite"
        call = obstore.put_async(self._store, name, data, mode=mode, use_multipart=False)
        await self._call("PUT", name, call)

    async def get_range(self, name: str, offset: int, length: int) -> bytes:
        check_name(name)
        _check_range(offset, length)
        self._check_open()
        if length == 0:
            return b""
        self.stats.gets += 1
        try:
            got = await obstore.get_range_async(self._store, name, start=offset, length=length)
        except obx.GenericError as exc:
            if _HTTP_416.search(str(exc)):  # S3's answer to a range at or past the end
                return b""
            self.stats.errors += 1
            raise _s3_error("GET", name, self.bucket, exc) from None
        except Exception as exc:
            self.stats.errors += 1
            raise _s3_error("GET", name, self.bucket, exc) from None
        data = bytes(got)
        self.stats.get_bytes += len(data)
        return data

    async def get_ranges(self, name: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        limit = asyncio.Semaphore(_PARALLEL_GETS)

        async def one(offset: int, length: int) -> bytes:
            async with limit:
                return await self.get_range(name, offset, length)

        return list(await asyncio.gather(*(one(o, n) for o, n in ranges)))

    async def list(self, prefix: str = "", after: str = "") -> Listing:
        folder = _list_folder(prefix)
        self._check_open()
        out: Listing = []

        async def collect() -> None:
            stream = obstore.list(
                self._store, folder or None, offset=after or None, chunk_size=_LIST_PAGE
            )
            async for page in stream:
                self.stats.lists += 1
                out.extend((m["path"], m["size"]) for m in page if m["path"].startswith(prefix))

        await self._call("LIST", prefix, collect())
        return sorted(out)

    async def delete(self, name: str) -> None:
        check_name(name)
        self._check_open()
        self.stats.deletes += 1
        await self._call("DELETE", name, obstore.delete_async(self._store, name))

    async def close(self) -> None:
        self._closed = True


# -- URLs -----------------------------------------------------------------------------

_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_S3_PARAMS = {
    "endpoint",
    "region",
    "prefix",
    "access_key_id",
    "secret_access_key",
    "session_token",
    "allow_http",
    "conditional_put",
}
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _flag(key: str, value: str) -> bool:
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ValueError(f"chunk store URL: {key} must be true or false, not {value!r}")


def open_object_backend(url: str) -> LocalObjects | S3Objects:
    """The backend a chunk store URL names:

    - ``file:///absolute/path``: `LocalObjects` in that directory;
    - ``s3://BUCKET[/PREFIX/]?endpoint=URL&region=R&prefix=P/&allow_http=1&...``:
      `S3Objects`. Credentials come from the AWS_* environment variables (or the
      other usual AWS sources) unless given as ``access_key_id``,
      ``secret_access_key`` and ``session_token`` (a URL is easily logged: prefer
      the environment). Plain-HTTP endpoints are allowed on loopback addresses,
      elsewhere only with ``allow_http=1``. ``conditional_put=0`` for stores that
      do not support ``If-None-Match``.

    ValueError, naming the problem, for anything else.
    """
    if not isinstance(url, str):
        raise ValueError("chunk store URL: not a string")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "file":
        if parts.netloc not in ("", "localhost") or parts.query or parts.fragment:
            raise ValueError(f"chunk store URL {url!r}: use file:///absolute/path")
        if not parts.path.startswith("/"):
            raise ValueError(f"chunk store URL {url!r}: the path must be absolute")
        return LocalObjects(Path(parts.path))
    if scheme != "s3":
        raise ValueError(f"chunk store URL {url!r}: the scheme must be s3:// or file://")
    bucket = parts.netloc
    if "@" in bucket or not _BUCKET_RE.fullmatch(bucket) or ".." in bucket:
        raise ValueError(f"chunk store URL {url!r}: {bucket!r} is not a valid S3 bucket name")
    if parts.fragment:
        raise ValueError(f"chunk store URL {url!r}: no #fragment allowed")
    params: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False):
        if key not in _S3_PARAMS:
            known = ", ".join(sorted(_S3_PARAMS))
            raise ValueError(f"chunk store URL: unknown parameter {key!r} (known: {known})")
        if key in params:
            raise ValueError(f"chunk store URL: {key} given twice")
        params[key] = value
    path_prefix = parts.path.strip("/")
    if path_prefix and "prefix" in params:
        raise ValueError("chunk store URL: give the prefix in the path or as ?prefix=, not both")
    prefix = (params.pop("prefix", "") or path_prefix).strip("/")
    if prefix and not _NAME_RE.fullmatch(prefix):
        raise ValueError(f"chunk store URL: invalid prefix {prefix!r}")
    endpoint = params.pop("endpoint", None)
    allow_http = _flag("allow_http", params.pop("allow_http", "0"))
    if endpoint is not None:
        ep = urlsplit(endpoint)
        try:
            ep.port  # noqa: B018 (a bad port raises)
        except ValueError:
            raise ValueError(f"chunk store URL: bad port in endpoint {endpoint!r}") from None
        if ep.scheme not in ("http", "https") or not ep.hostname or ep.query or ep.fragment:
            raise ValueError(
                f"chunk store URL: endpoint {endpoint!r} must be http(s)://host[:port]"
            )
        if ep.scheme == "http" and not allow_http and not _is_loopback(ep.hostname):
            raise ValueError(
                f"chunk store URL: endpoint {endpoint!r} is plain HTTP on a remote host; "
                "use https, or add allow_http=1 if the network is trusted"
            )
        allow_http = allow_http or ep.scheme == "http"
    return S3Objects(
        bucket,
        endpoint=endpoint,
        region=params.pop("region", None) or None,
        prefix=prefix + "/" if prefix else "",
        access_key_id=params.pop("access_key_id", None),
        secret_access_key=params.pop("secret_access_key", None),
        session_token=params.pop("session_token", None),
        allow_http=allow_http,
        conditional_put=_flag("conditional_put", params.pop("conditional_put", "1")),
    )
