"""The web interface: pages for people, served by the server at ``/web/``.

Server-rendered HTML (Jinja2, autoescaped) and one small script; sessions are
device tokens in an HttpOnly cookie (``security``), checked by the API's own
rules (``auth``). docs/WEB.md describes it for users.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from linesync.server.context import Context
from linesync.server.web import account, common, pages, security
from linesync.server.web.common import HERE, Handler, page, render

__all__ = ["routes"]

NS = "/web/ns/{ns:id}"
_TABLE: list[tuple[str, str, Handler]] = [
    ("GET", "/web/", account.home),
    ("GET", "/web/signin", account.signin_page),
    ("POST", "/web/signin", account.signin),
    ("POST", "/web/signout", account.signout),
    ("GET", "/web/tokens", account.tokens),
    ("POST", "/web/tokens", account.token_create),
    ("POST", "/web/tokens/revoke", account.token_revoke),
    ("GET", NS + "/browse", pages.browse),
    ("GET", NS + "/download", pages.download),
    ("GET", NS + "/zip", pages.zip_folder),
    ("POST", NS + "/upload", common.body_timeout(pages.upload)),
    ("POST", NS + "/mkdir", pages.mkdir),
    ("POST", NS + "/delete", pages.delete),
    ("POST", NS + "/move", pages.move),
    ("GET", NS + "/history", pages.history),
    ("GET", NS + "/diff", pages.diff),
    ("POST", NS + "/restore", pages.restore),
    ("GET", NS + "/conflicts", pages.conflicts),
    ("POST", NS + "/resolve", pages.resolve),
    ("GET", NS + "/share", account.share_page),
    ("POST", NS + "/share", account.share),
]


class _Static(StaticFiles):
    """The script and style sheet, with the pages' security headers."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        for k, v in security.PAGE_HEADERS.items():
            if k != "cache-control":
                response.headers.setdefault(k, v)
        return response


async def _root(request: Request) -> Response:
    return RedirectResponse("/web/", status_code=303)


async def _not_found(ctx: Context, request: Request) -> Response:
    return render(request, "error.html", None, status=404, message="no such page",
                  status_code=404)  # fmt: skip


def routes(ctx: Context) -> list[BaseRoute]:
    """The web interface's routes, to mount beside the API's."""
    table: list[BaseRoute] = [Route("/", _root, methods=["GET"])]
    table += [Route(path, page(ctx, h), methods=[m]) for m, path, h in _TABLE]
    table.append(Route("/web", _root, methods=["GET"]))
    table.append(Mount("/web/static", app=_Static(directory=str(HERE / "static")),
                       name="web-static"))  # fmt: skip
    table.append(Route("/web/{rest:path}", page(ctx, _not_found), methods=["GET", "POST"]))
    return table
