"""Wake long-polls when a namespace's journal moves on.

The metadata store tells the notifier of every commit (``subscribe``): its own
process's, and with a shared store (PostgreSQL) every other process's too.

A waiter is one future, kept by the namespace's :class:`Wake` until it comes
or the waiter gives up: ten thousand parked long-polls cost ten thousand small
futures, not ten thousand tasks or events."""

from __future__ import annotations

import asyncio


class Wake:
    """A namespace's next commit: the futures waiting for it, and once it came
    (``fired``), which commits did: (session, their JIDs), so that a long-poll
    of the session that committed need not answer with what that session's
    commit answer already told it."""

    __slots__ = ("commits", "fired", "_waiters")

    def __init__(self) -> None:
        self.commits: list[tuple[str | None, range]] = []
        self.fired = False
        self._waiters: dict[asyncio.Future[None], None] = {}

    def add(self, fut: asyncio.Future[None]) -> None:
        """Settle ``fut`` when this fires (at once if it has)."""
        if self.fired:
            settle(fut)
        else:
            self._waiters[fut] = None

    def discard(self, fut: asyncio.Future[None]) -> None:
        self._waiters.pop(fut, None)

    def fire(self) -> None:
        self.fired = True
        waiters, self._waiters = self._waiters, {}
        for fut in waiters:
            settle(fut)


def settle(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class Notifier:
    def __init__(self) -> None:
        self._wakes: dict[int, Wake] = {}
        self.closing = False
        self.waiting = 0  # long-polls parked (server/longpoll.py)

    def event(self, ns_id: int) -> Wake:
        """The namespace's next commit. Take it *before* reading the journal: a
        commit landing between the read and the wait then still wakes."""
        wake = self._wakes.get(ns_id)
        if wake is None:
            wake = self._wakes[ns_id] = Wake()
            if self.closing:
                wake.fire()
        return wake

    def publish(
        self, ns_id: int | None, session: str | None = None, jids: range = range(0)
    ) -> None:
        """Wake the namespace's waiters (``None``: every namespace's, after
        notifications may have been lost)."""
        if ns_id is None:
            wakes, self._wakes = list(self._wakes.values()), {}
        else:
            wake = self._wakes.pop(ns_id, None)
            wakes = [wake] if wake is not None else []
        for wake in wakes:
            wake.commits.append((session, jids))
            wake.fire()

    def close(self) -> None:
        """The server is stopping: every long-poll answers now, and new ones at once."""
        self.closing = True
        wakes, self._wakes = list(self._wakes.values()), {}
        for wake in wakes:
            wake.fire()
