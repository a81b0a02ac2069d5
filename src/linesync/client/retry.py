"""When to try a request again: which failures are worth it, how long to wait,
and when to give up. Pure: the clock, the sleep and the randomness are passed in.

Worth retrying: the server could not be reached or the connection broke
(``unavailable``), it is overloaded or restarting (502, 503, 504), it asked
to slow down (429 ``rate_limited``), or a body was too slow to arrive (408).
Anything else is an answer and is never retried.

The wait doubles from ``first`` up to ``cap``, minus up to a fifth at random
(so that many clients do not come back in step), and is never shorter than
the server's ``Retry-After``. A request is retried until ``retry_for``
seconds have passed since its first failure; a wait that would end past
that gives up at once.
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from linesync.protocol.errors import Code, LinesyncError

RETRIED = frozenset({Code.UNAVAILABLE, Code.RATE_LIMITED, Code.REQUEST_TIMEOUT})
RETRIED_STATUS = frozenset({408, 429, 502, 503, 504})
MAX_RETRY_AFTER = 24 * 3600.0


def retryable(exc: LinesyncError) -> bool:
    return exc.code in RETRIED


def retry_after(exc: LinesyncError) -> float:
    """The wait the server asked for (``Retry-After``, kept in the error's
    detail), in seconds; 0 when it asked for none."""
    value = exc.detail.get("retry_after")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    if not math.isfinite(value) or value <= 0:
        return 0.0
    return min(float(value), MAX_RETRY_AFTER)


def parse_retry_after(header: str | None, now: float | None = None) -> float | None:
    """An HTTP ``Retry-After`` value (seconds, or an HTTP date) in seconds."""
    if header is None:
        return None
    text = header.strip()
    if text.isdigit():
        return min(float(text), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    wait = when.timestamp() - (time.time() if now is None else now)
    return min(max(wait, 0.0), MAX_RETRY_AFTER)


def delay(attempt: int, *, first: float, cap: float, asked: float, jitter: float) -> float:
    """The wait before retry number ``attempt`` (0 for the first retry):
    ``first * 2**attempt`` capped at ``cap``, less ``jitter`` (0..1) of a
    fifth of it, and at least ``asked`` (the server's Retry-After)."""
    base = min(cap, first * 2.0 ** min(attempt, 62))
    return max(base * (1.0 - 0.2 * min(max(jitter, 0.0), 1.0)), asked)


@dataclass(frozen=True)
class RetryPolicy:
    """``retry_for``: seconds a failing request keeps being retried (0: never).
    ``sleep``, ``clock`` and ``jitter`` are seams for tests; ``on_retry`` hears
    each retry: (what failed, seconds until the next try)."""

    retry_for: float = 0.0
    first: float = 0.5
    cap: float = 30.0
    sleep: Callable[[float], Awaitable[None]] | None = None
    clock: Callable[[], float] = time.monotonic
    jitter: Callable[[], float] | None = None
    on_retry: Callable[[LinesyncError, float], None] | None = None

    def next_wait(self, attempt: int, started: float, exc: LinesyncError) -> float | None:
        """Seconds to wait before trying again, or None to give up now."""
        if self.retry_for <= 0 or not retryable(exc):
            return None
        rand = self.jitter() if self.jitter is not None else 0.0
        wait = delay(attempt, first=self.first, cap=self.cap, asked=retry_after(exc), jitter=rand)
        if self.clock() + wait - started > self.retry_for:
            return None
        return wait


class RetriesExhausted(LinesyncError):
    """A request kept failing (the server unreachable, overloaded or asking to
    slow down) for as long as retries were allowed."""

    def __init__(self, url: str, last: LinesyncError, seconds: float, attempts: int) -> None:
        if last.code is Code.RATE_LIMITED:
            what = f"the server at {url} kept asking to slow down"
        else:
            what = f"the server at {url} could not be reached or was unavailable"
        asked = retry_after(last)
        tail = f"; it asks to wait {asked:.0f} s more" if asked else ""
        super().__init__(
            last.code,
            f"{what} for {seconds:.0f} s ({attempts} attempt{'s' if attempts > 1 else ''}; "
            f"last: {last.message}{tail}); nothing was deleted because of it. Try again "
            "later, or allow longer waits with --retry-for SECONDS",
        )
        self.last = last
        self.seconds = seconds
        self.attempts = attempts
