"""Wake long-polls when a namespace's journal moves on.

The metadata store tells the notifier of every commit (``subscribe``): its own
process's, and with a shared store (PostgreSQL) every other process's too."""

from __future__ import annotations

import asyncio


class Wake(asyncio.Event):
    """Set when a commit lands; says which commits did: (session, their JIDs),
    so that a long-poll of the session that committed need not answer with
    what that session's commit answer already told it."""

    def __init__(self) -> None:
        super().__init__()
        self.commits: list[tuple[str | None, range]] = []


class Notifier:
    def __init__(self) -> None:
        self._events: dict[int, Wake] = {}
        self.closing = False

    def event(self, ns_id: int) -> Wake:
        ev = self._events.get(ns_id)
        if ev is None:
            ev = self._events[ns_id] = Wake()
            if self.closing:
                ev.set()
        return ev

    def publish(
        self, ns_id: int | None, session: str | None = None, jids: range = range(0)
    ) -> None:
        """Wake the namespace's waiters (``None``: every namespace's, after
        notifications may have been lost)."""
        if ns_id is None:
            events, self._events = list(self._events.values()), {}
        else:
            ev = self._events.pop(ns_id, None)
            events = [ev] if ev is not None else []
        for ev in events:
            ev.commits.append((session, jids))
            ev.set()

    def close(self) -> None:
        """The server is stopping: every long-poll answers now, and new ones at once."""
        self.closing = True
        for ev in self._events.values():
            ev.set()
        self._events.clear()

    async def wait(self, ev: asyncio.Event, timeout: float) -> bool:
        """Wait on an event taken *before* reading the journal; True if it fired."""
        try:
            async with asyncio.timeout(timeout):
                await ev.wait()
            return True
        except TimeoutError:
            return False
