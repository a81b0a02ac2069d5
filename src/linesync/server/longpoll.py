"""Long-polls parked outside the request stack.

A ``GET …/list?wait=N`` with nothing new to answer would otherwise hold its
whole stack while it waits: the framework's middleware, routing and exception
frames, the request object, the handler's locals. Ten thousand of them cost
more than 20 KiB each. Here the handler instead answers "park me" (it returns
:data:`PARKED` after saving what it needs in the request's :class:`Poll`), the
stack unwinds, and this layer, outermost, waits on one future per poll:

- a commit in the namespace (the :class:`~linesync.server.notify.Wake` the
  handler took before it read the journal) runs the handler again, which
  reads the journal, re-checks the token and answers or parks again;
- the deadline runs the handler again, which answers (nothing new);
- the client hanging up (the listener calls :func:`hang_up`) ends it: nobody
  is left to answer;
- the server stopping answers at once with nothing new and the same cursor,
  without reading anything (thousands of polls must answer within the
  graceful stop's few seconds).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from linesync.protocol.cursor import Cursor
from linesync.protocol.schemas import ListResponse
from linesync.server.notify import Notifier, Wake, settle
from linesync.server.responses import json_response

KEY = "linesync.poll"  # the request scope's Poll


@dataclass(slots=True, eq=False)
class Poll:
    """A list request's state across its passes through the handler."""

    deadline: float = 0.0  # time.monotonic() by which it answers
    cursor: Cursor | None = None  # as checked by the first pass
    own: list[range] = field(default_factory=list)  # this session's JIDs committed meanwhile
    wake: Wake | None = None  # set by a pass that parks
    woke: Wake | None = None  # what the last park waited for (its commits)
    waiter: asyncio.Future[None] | None = None
    gone: bool = False  # the client hung up

    def park(self, wake: Wake, cursor: Cursor, deadline: float) -> Response:
        self.wake, self.cursor, self.deadline = wake, cursor, deadline
        return PARKED


class _Parked(Response):
    """The handler's answer when it parks: nothing is sent."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        return None


PARKED: Response = _Parked(status_code=204)


def hang_up(scope: dict[str, Any]) -> None:
    """The connection carrying this request is gone (called by the listener)."""
    poll = scope.get(KEY)
    if isinstance(poll, Poll):
        poll.gone = True
        if poll.waiter is not None:
            settle(poll.waiter)


def _is_list(scope: Scope) -> bool:
    if scope["type"] != "http" or scope["method"] != "GET":
        return False
    path: str = scope["path"]
    return path.startswith("/v1/ns/") and path.endswith("/list")


class LongPolls:
    """ASGI middleware, outermost: see the module's docstring."""

    def __init__(self, app: ASGIApp, notifier: Notifier, passes: int = 16) -> None:
        self.app = app
        self.notifier = notifier
        # List passes run at once at most: a burst of thousands (clients back
        # after a restart, every poll woken after lost notifications) waits
        # here, small, instead of each holding a request's working memory.
        self.passes = asyncio.Semaphore(passes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not _is_list(scope):
            await self.app(scope, receive, send)
            return
        poll = scope[KEY] = Poll()
        while True:
            async with self.passes:
                await self.app(scope, receive, send)
            wake, poll.wake = poll.wake, None
            if wake is None:
                return  # answered
            await self._wait(poll, wake)
            if poll.gone:
                return
            poll.woke = wake
            if self.notifier.closing:
                assert poll.cursor is not None
                answer = json_response(ListResponse(entries=[], cursor=str(poll.cursor)))
                await answer(scope, receive, send)
                return

    async def _wait(self, poll: Poll, wake: Wake) -> None:
        if poll.gone:
            return
        loop = asyncio.get_running_loop()
        poll.waiter = fut = loop.create_future()
        wake.add(fut)
        timer = loop.call_later(max(0.0, poll.deadline - time.monotonic()), settle, fut)
        self.notifier.waiting += 1
        try:
            await fut
        finally:
            self.notifier.waiting -= 1
            timer.cancel()
            wake.discard(fut)
            poll.waiter = None
