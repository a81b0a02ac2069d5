"""A fresh PostgreSQL database per test, on the machine's server.

PostgreSQL runs on every machine of ours at 127.0.0.1:5432 (trust auth,
database ``test``); ``LINESYNC_TEST_PG`` points elsewhere. Each test gets a
database of its own, created from ``template0`` and dropped afterwards. With
``CI=true`` a missing server fails the test; elsewhere it is skipped, with the
reason shown.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

ADMIN_URL = os.environ.get("LINESYNC_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"PostgreSQL is required in CI: {reason}")
    pytest.skip(f"PostgreSQL not available: {reason}")


def url_for(name: str) -> str:
    parts = urlsplit(ADMIN_URL)
    return urlunsplit(parts._replace(path="/" + name))


async def _admin(sql: str) -> None:
    con = await asyncpg.connect(ADMIN_URL, timeout=10)
    try:
        await con.execute(sql)
    finally:
        await con.close()


def create_database() -> str:
    """A new, empty database; its URL."""
    name = "ls_" + secrets.token_hex(6)
    try:
        asyncio.run(_admin(f"CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8'"))
    except (OSError, asyncpg.PostgresError) as exc:
        _unavailable(f"{ADMIN_URL}: {exc}")
    return url_for(name)


def drop_database(url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    assert name.startswith("ls_"), url
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def pg_url() -> Iterator[str]:
    """The URL of a database made for this test (dropped after it)."""
    url = create_database()
    try:
        yield url
    finally:
        drop_database(url)
