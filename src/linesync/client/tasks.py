"""Concurrency that never leaves work behind."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def gather_all(*aws: Awaitable[T]) -> list[T]:
    """Like ``asyncio.gather``, but when one fails (or the caller is cancelled)
    the others are cancelled and waited for before the error goes on: no task
    outlives the call. A sync that stops on an error must not leave downloads
    running into the next sync of the same folder."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
