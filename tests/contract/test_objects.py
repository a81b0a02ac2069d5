"""Contract suite for `ObjectBackend` (write-once objects), run against
`LocalObjects` and `S3Objects` on a real S3 server (weed mini, tests/support/s3.py);
and the chunk store URLs that name a backend."""

from __future__ import annotations

import asyncio
import os
import random
import stat
from collections.abc import Callable, Coroutine
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest

from linesync.server.stores.objects import (
    LocalObjects,
    ObjectBackend,
    ObjectExistsError,
    ObjectNotFoundError,
    S3Objects,
    open_object_backend,
)
from linesync.server.stores.objpacks import ObjectPackStore, open_chunk_store
from linesync.server.stores.packs import ChunkStoreError
from tests.support.s3 import S3Server

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def data(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


@pytest.fixture(params=["local", "s3"])
def make_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], ObjectBackend]:
    """A factory of backends that all see the same objects (a restart when called again)."""
    if request.param == "local":
        return lambda: LocalObjects(tmp_path / "objects")
    server: S3Server = request.getfixturevalue("s3_server")
    prefix = server.new_prefix()
    return lambda: server.objects(prefix)


def test_put_and_ranged_reads(make_backend: Callable[[], ObjectBackend]) -> None:
    async def body() -> None:
        b = make_backend()
        blob = data(1, 100_000)
        await b.put("packs/a.pack", blob)
        assert b.stats.puts == 1 and b.stats.put_bytes == len(blob)
        assert await b.get_range("packs/a.pack", 0, len(blob)) == blob
        assert await b.get_range("packs/a.pack", 10, 20) == blob[10:30]
        assert await b.get_range("packs/a.pack", 99_990, 100) == blob[99_990:]  # short at the end
        assert await b.get_range("packs/a.pack", 100_000, 10) == b""  # at the end
        assert await b.get_range("packs/a.pack", 200_000, 10) == b""  # past it
        assert await b.get_range("packs/a.pack", 5, 0) == b""
        ranges = [(0, 5), (50_000, 1000), (3, 4), (0, 5), (99_999, 5), (100_001, 1)]
        got = await b.get_ranges("packs/a.pack", ranges)
        assert got == [blob[o : o + n] for o, n in ranges]
        gets = b.stats.gets
        await b.get_ranges("packs/a.pack", [(0, 1), (10, 1), (20, 1)])
        assert b.stats.gets == gets + 3  # one request per range: callers coalesce
        await b.put("empty", b"")
        assert await b.get_range("empty", 0, 10) == b""
        await b.close()

        again = make_backend()  # another instance (a restart) sees the same objects
        assert await again.get_range("packs/a.pack", 7, 3) == blob[7:10]
        await again.close()

    run(body())


def test_names_are_written_once(make_backend: Callable[[], ObjectBackend]) -> None:
    async def body() -> None:
        b = make_backend()
        await b.put("x/once", b"first")
        with pytest.raises(ObjectExistsError):
            await b.put("x/once", b"second, longer")
        assert await b.get_range("x/once", 0, 100) == b"first"
        # Racing writers of one name: exactly one wins, the object is whole.
        results = await asyncio.gather(
            *(b.put("x/race", bytes([i]) * 50_000) for i in range(8)), return_exceptions=True
        )
        assert sum(r is None for r in results) == 1
        assert all(isinstance(r, ObjectExistsError) for r in results if r is not None)
        got = await b.get_range("x/race", 0, 100_000)
        assert len(got) == 50_000 and len(set(got)) == 1
        await b.close()

    run(body())


def test_list_prefix_after_and_delete(make_backend: Callable[[], ObjectBackend]) -> None:
    async def body() -> None:
        b = make_backend()
        assert await b.list() == []
        names = ["packs/p-2.pack", "packs/p-1.pack", "packs/p-10.pack", "other/p-3.pack", "top"]
        for i, name in enumerate(names):
            await b.put(name, b"z" * i)
        sizes = {name: i for i, name in enumerate(names)}
        assert await b.list() == sorted(sizes.items())
        assert await b.list("packs/") == sorted((n, s) for n, s in sizes.items() if "packs/" in n)
        assert [n for n, _ in await b.list("packs/p-1")] == ["packs/p-1.pack", "packs/p-10.pack"]
        assert [n for n, _ in await b.list("packs/", after="packs/p-10")] == [
            "packs/p-10.pack",
            "packs/p-2.pack",
        ]
        assert await b.list("nothing/") == []
        await b.delete("packs/p-1.pack")
        await b.delete("packs/p-1.pack")  # missing: not an error
        await b.delete("never/was")
        with pytest.raises(ObjectNotFoundError):
            await b.get_range("packs/p-1.pack", 0, 1)
        with pytest.raises(ObjectNotFoundError):
            await b.get_ranges("never/was", [(0, 1)])
        assert "packs/p-1.pack" not in dict(await b.list())
        with pytest.raises(ObjectExistsError):  # a deleted name may come back, a taken one not
            await b.put("packs/p-2.pack", b"")
        await b.put("packs/p-1.pack", b"back")
        assert await b.get_range("packs/p-1.pack", 0, 9) == b"back"
        await b.close()

    run(body())


BAD_NAMES = ["", "/abs", "a//b", "../x", "a/../b", ".hidden", "a/.tmp-1", "a/", "sp ace", "é"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_invalid_names_are_refused(make_backend: Callable[[], ObjectBackend], name: str) -> None:
    async def body() -> None:
        b = make_backend()
        for call in (b.put(name, b"x"), b.get_range(name, 0, 1), b.delete(name)):
            with pytest.raises(ValueError):
                await call
        with pytest.raises(ValueError):
            await b.list("../")
        with pytest.raises(ValueError):
            await b.get_range("ok", -1, 1)
        await b.close()

    run(body())


def test_large_object_is_one_request_and_closed_backend_refuses(
    make_backend: Callable[[], ObjectBackend],
) -> None:
    async def body() -> None:
        b = make_backend()
        blob = data(2, 9 * 1024 * 1024)  # past obstore's 5 MiB multipart size: still one PUT
        await b.put("big", blob)
        assert b.stats.puts == 1
        got = await b.get_ranges("big", [(0, 4), (len(blob) - 4, 10)])
        assert got == [blob[:4], blob[-4:]]
        await b.close()
        await b.close()
        for call in (b.put("n", b""), b.get_range("big", 0, 1), b.list(), b.delete("big")):
            with pytest.raises(ChunkStoreError):
                await call

    run(body())


# -- backend specifics ------------------------------------------------------------------


def test_local_objects_files(tmp_path: Path) -> None:
    async def body() -> None:
        b = LocalObjects(tmp_path / "o")
        await b.put("a/b/c", b"data")
        path = tmp_path / "o" / "a" / "b" / "c"
        assert path.read_bytes() == b"data"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert sorted(os.listdir(path.parent)) == ["c"]  # no temporary file left
        (path.parent / ".tmp-crashed").write_bytes(b"half")  # what a crash mid-put leaves
        assert await b.list() == [("a/b/c", 4)]
        with pytest.raises(ObjectExistsError):
            await b.put("a/b/c", b"again")
        assert sorted(os.listdir(path.parent)) == [".tmp-crashed", "c"]
        await b.close()

    run(body())


def test_s3_errors_are_clear(s3_server: S3Server) -> None:
    async def body() -> None:
        fast = {"max_retries": 1, "retry_timeout": timedelta(seconds=2)}
        wrong_key = S3Objects(
            s3_server.bucket,
            endpoint=s3_server.endpoint,
            region="us-east-1",
            access_key_id=s3_server.access_key_id,
            secret_access_key="not-the-secret",
            allow_http=True,
            retry=fast,  # type: ignore[arg-type]
        )
        with pytest.raises(ChunkStoreError, match="denied"):
            await wrong_key.put("x", b"1")
        no_bucket = S3Objects(
            "no-such-bucket-here",
            endpoint=s3_server.endpoint,
            region="us-east-1",
            access_key_id=s3_server.access_key_id,
            secret_access_key=s3_server.secret_access_key,
            allow_http=True,
            retry=fast,  # type: ignore[arg-type]
        )
        with pytest.raises(ChunkStoreError, match="NoSuchBucket"):
            await no_bucket.list()
        down = S3Objects(
            "linesync-test",
            endpoint="http://127.0.0.1:9",  # discard port: nothing listens
            access_key_id="k",
            secret_access_key="s",
            allow_http=True,
            connect_timeout=timedelta(seconds=1),
            retry=fast,  # type: ignore[arg-type]
        )
        for call in (down.put("x", b"1"), down.get_range("x", 0, 1), down.list(), down.delete("x")):
            with pytest.raises(ChunkStoreError, match="127.0.0.1:9") as err:
                await call
            assert "\n" not in str(err.value)
        assert down.stats.errors == 4
        assert "not-the-secret" not in repr(wrong_key)

    run(body())


# -- URLs -------------------------------------------------------------------------------


def test_urls_name_backends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    local = open_object_backend(f"file://{tmp_path}/objs")
    assert isinstance(local, LocalObjects) and local.root == tmp_path / "objs"
    s3 = open_object_backend("s3://my-bucket?endpoint=http://127.0.0.1:8333&region=eu-west-1")
    assert isinstance(s3, S3Objects)
    assert (s3.bucket, s3.endpoint, s3.prefix) == ("my-bucket", "http://127.0.0.1:8333", "")
    assert open_object_backend("s3://b.example/some/dir/").prefix == "some/dir/"  # type: ignore[union-attr]
    s3 = open_object_backend("s3://bkt?prefix=a/b&endpoint=https://s3.example.com")
    assert isinstance(s3, S3Objects) and s3.prefix == "a/b/"
    s3 = open_object_backend(
        "s3://bkt?endpoint=http://10.0.0.5:9000&allow_http=1&access_key_id=K"
        "&secret_access_key=S&conditional_put=false"
    )
    assert isinstance(s3, S3Objects) and not s3.conditional_put
    store = open_chunk_store(f"file://{tmp_path}/store", pack_size_limit=1 << 20, cache_bytes=0)
    assert isinstance(store, ObjectPackStore) and isinstance(store.backend, LocalObjects)


BAD_URLS = {
    "": "scheme",
    "/just/a/path": "scheme",
    "http://bucket": "scheme",
    "gs://bucket": "scheme",
    "file://host/path": "file:///",
    "file:relative/path": "absolute",
    "file:///p?x=1": "file:///",
    "s3://": "bucket name",
    "s3://UPPER": "bucket name",
    "s3://ab": "bucket name",
    "s3://a..b": "bucket name",
    "s3://user@bucket": "bucket name",
    "s3://bucket?colour=red": "unknown parameter 'colour'",
    "s3://bucket?region=a&region=b": "given twice",
    "s3://bucket/p?prefix=q": "not both",
    "s3://bucket?prefix=../up": "invalid prefix",
    "s3://bucket?endpoint=ftp://h": "http(s)://host",
    "s3://bucket?endpoint=127.0.0.1:9000": "http(s)://host",
    "s3://bucket?endpoint=http://h:notaport": "bad port",
    "s3://bucket?endpoint=http://s3.example.com": "plain HTTP",
    "s3://bucket?allow_http=maybe": "true or false",
    "s3://bucket#frag": "fragment",
}


@pytest.mark.parametrize("url", sorted(BAD_URLS))
def test_bad_urls_say_what_is_wrong(url: str) -> None:
    with pytest.raises(ValueError, match=BAD_URLS[url].replace("(", r"\(").replace(")", r"\)")):
        open_object_backend(url)


def test_url_to_a_running_s3(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials from the environment, the rest from the URL."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_access_key)
    prefix = s3_server.new_prefix()

    async def body() -> None:
        b = open_object_backend(s3_server.url(prefix))
        await b.put("hello", b"world")
        assert await s3_server.objects(prefix).get_range("hello", 0, 5) == b"world"
        await b.close()

    run(body())
