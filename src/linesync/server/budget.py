"""The server-wide budget of request bytes held in memory at once.

Each request reserves what it will hold (a JSON body as declared, an upload's
working set) before it holds it, and gives it back when it is answered. A
request that does not fit waits its turn up to a deadline, then is refused
with 429: under load the server slows requests down instead of buffering
without bound.
"""

from __future__ import annotations

import asyncio
import math

from starlette.requests import Request

from linesync.memory import give_back
from linesync.protocol.errors import Code, LinesyncError

# When the server goes idle after holding this many request bytes in all, it
# hands the allocator's free pages back to the system (see linesync.memory).
TRIM_AFTER = 64 * 2**20


class ByteBudget:
    def __init__(self, capacity: int, timeout: float) -> None:
        self.capacity = capacity
        self.timeout = timeout
        self.used = 0
        self.since_trim = 0  # bytes released since memory was last given back
        self._changed = asyncio.Condition()

    async def acquire(self, n: int) -> None:
        """Reserve ``n`` bytes (at most the capacity), waiting up to the timeout."""
        n = min(n, self.capacity)
        async with self._changed:
            try:
                async with asyncio.timeout(self.timeout):
                    await self._changed.wait_for(lambda: self.used + n <= self.capacity)
            except TimeoutError:
                raise LinesyncError(
                    Code.RATE_LIMITED,
                    "the server is busy with other requests; try again shortly",
                    retry_after=max(1, math.ceil(self.timeout / 2)),
                ) from None
            self.used += n

    async def release(self, n: int) -> None:
        n = min(n, self.capacity)
        async with self._changed:
            self.used -= n
            self.since_trim += n
            self._changed.notify_all()
        if self.used == 0 and self.since_trim >= TRIM_AFTER:
            self.since_trim = 0
            asyncio.get_running_loop().run_in_executor(None, give_back)


class Reservation:
    """What one request holds of a :class:`ByteBudget`; ``close`` returns it all."""

    def __init__(self, budget: ByteBudget) -> None:
        self.budget = budget
        self.held = 0

    async def take(self, n: int) -> None:
        await self.budget.acquire(n)
        self.held += min(n, self.budget.capacity)

    async def close(self) -> None:
        held, self.held = self.held, 0
        if held:
            await self.budget.release(held)


def reservation(request: Request) -> Reservation:
    """What this request holds of the server's budget (the route sets it up)."""
    res: Reservation = request.state.reservation
    return res
