"""What every WebDAV handler shares: the server-wide state (context, locks,
dead properties), one request's call (who, which namespace, which path), and
the checks before a write: If / If-Match / If-None-Match preconditions,
locks, and the commit of a batch of ops."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from starlette.requests import Request

from linesync.core import paths
from linesync.protocol.schemas import CommitOp, CommitResult
from linesync.server.context import Context
from linesync.server.dav import rules, tree
from linesync.server.dav.locks import LockManager
from linesync.server.dav.props import DeadProps
from linesync.server.dav.rules import DavError, IfList
from linesync.server.model import Namespace, Row, TokenInfo

BATCH_OPS = 1000  # ops one commit carries at most (a bigger tree takes several)


@dataclass
class DavState:
    ctx: Context
    locks: LockManager = field(default_factory=LockManager)
    props: DeadProps = field(default_factory=DeadProps)


@dataclass
class Call:
    state: DavState
    request: Request
    token: TokenInfo
    ns: Namespace
    path: str
    if_lists: list[IfList]

    @property
    def ctx(self) -> Context:
        return self.state.ctx

    @property
    def submitted(self) -> set[str]:
        """The lock tokens the If header submits that this user may use: a
        token shown in another member's lockdiscovery is no key."""
        locks = self.state.locks
        return {
            t
            for t in rules.submitted_tokens(self.if_lists)
            if (lk := locks.get(t)) is None or lk.user_id == self.token.user_id
        }

    def href(self, path: str, collection: bool) -> str:
        return rules.href(self.ns.name, path, collection)

    async def live(self, path: str) -> Row | None:
        return await tree.live(self.ctx.meta, self.ns.id, path)

    async def entry_at(self, path: str) -> Row | None:
        return await tree.entry_at(self.ctx.meta, self.ns.id, path)

    async def check_preconditions(self, row: Row | None) -> None:
        """412 unless the If, If-Match and If-None-Match headers hold for the
        request's resource (``row``: its entry now, None when unmapped)."""
        h = self.request.headers
        current = rules.etag(row) if row is not None else None
        if "if-match" in h and not rules.match_header(h["if-match"], current):
            raise DavError(412, "If-Match does not match the resource")
        if "if-none-match" in h and rules.match_header(h["if-none-match"], current):
            if self.request.method in ("GET", "HEAD"):
                raise DavError(304, "not modified", headers={"etag": current or ""})
            raise DavError(412, "If-None-Match matches the resource")
        await self.check_if(row)

    async def check_if(self, row: Row | None) -> None:
        if not self.if_lists:
            return
        groups: dict[str | None, list[IfList]] = {}
        for lst in self.if_lists:
            groups.setdefault(lst.resource, []).append(lst)
        for resource, lists in groups.items():
            if resource is None:
                path, r = self.path, row
            else:
                try:
                    t = rules.parse_target(resource)
                except (DavError, paths.PathError):
                    raise DavError(412, "the If header names an unknown resource") from None
                if t.namespace != self.ns.name:
                    raise DavError(412, "the If header names a resource elsewhere")
                path = t.path
                r = row if path == self.path else await self.live(path)
            if not any(self._list_holds(lst, path, r) for lst in lists):
                raise DavError(412, "the If header's conditions do not hold")

    def _list_holds(self, lst: IfList, path: str, row: Row | None) -> bool:
        current = rules.etag(row) if row is not None else None
        for c in lst.conditions:
            if c.token is not None:
                lk = self.state.locks.get(c.token)
                ok = lk is not None and lk.ns_id == self.ns.id and lk.covers(path)
            else:
                assert c.etag is not None
                ok = rules.etag_matches(c.etag, current)
            if ok == c.negated:
                return False
        return True

    def check_locks(self, changed: Sequence[str] = (), tree_paths: Sequence[str] = ()) -> None:
        self.state.locks.check(self.ns.id, changed, tree_paths, self.submitted)

    async def commit(self, ops: Sequence[CommitOp]) -> list[CommitResult]:
        """Commit ``ops`` (several commits past BATCH_OPS, in order)."""
        ctx = self.ctx
        out: list[CommitResult] = []
        for i in range(0, len(ops), BATCH_OPS):
            outcome = await ctx.meta.commit(
                self.ns.id, ops[i : i + BATCH_OPS], self.token.device, ctx.config.limits
            )
            for r in outcome.results:
                ctx.metrics.inc("linesync_commit_paths_total", status=r.status)
            ok = [r.path for r in outcome.results if r.status == "ok"]
            if ok:
                ctx.pending.settled(self.ns.id, ok)
            out += outcome.results
        return out


def now_ns() -> int:
    return time.time_ns()


def conflict_error(result: CommitResult) -> DavError:
    """The HTTP answer to a conflicting op."""
    reason = result.reason or result.status
    if reason == "parent":
        return DavError(409, f"{result.path}: its parent folder does not exist")
    if reason == "case_collision":
        other = result.current.path if result.current else "another name"
        return DavError(409, f"{result.path}: clashes with {other} (names differ only in case)")
    if reason == "not_empty":
        return DavError(409, f"{result.path}: the folder is not empty")
    return DavError(409, f"{result.path}: changed meanwhile ({reason}); try again")
