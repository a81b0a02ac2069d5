"""Folders and files: browse, download (a file, or a folder as a zip),
upload, new folder, delete, history with line diffs, restore, conflicts."""

from __future__ import annotations

import asyncio
import itertools
from urllib.parse import quote

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from linesync.core import paths
from linesync.protocol.errors import Code, LinesyncError
from linesync.protocol.schemas import CommitOp, Content, Kind
from linesync.server.context import Context
from linesync.server.dav.tree import MAX_TREE, subtree
from linesync.server.model import Namespace, Row
from linesync.server.stores.common import CONFLICT_MARK
from linesync.server.web import auth, diffs, files, security, tree
from linesync.server.web.auth import Session
from linesync.server.web.common import (
    MAX_FIELD_BYTES,
    back,
    field,
    form,
    int_field,
    int_query,
    render,
    wants_json,
)

# One upload request: at most so many files, and so many bytes in all.
MAX_UPLOAD_FILES = 100
MAX_UPLOAD_BYTES = 1024 * 2**20
HISTORY_PAGE = 100
GZIP_MAX = 8 * 2**20  # downloads up to this size may be gzipped (by the app's middleware)
MAX_CONFLICTS = 500  # conflict copies one page shows
MAX_LISTED = 2000  # a folder page's entries (more: a link to the next page)
MAX_LISTED_BYTES = 256 * 1024  # and the bytes of their paths
_ZIP_SCAN = 2 * files.MAX_ZIP_FILES  # entries (files and folders) a zip reads at most


def _browse_url(ns: Namespace, folder: str) -> str:
    return f"/web/ns/{ns.id}/browse" + (f"?path={quote(folder)}" if folder else "")


async def _open(ctx: Context, request: Request, write: bool = False) -> tuple[Session, Namespace]:
    sess = await auth.session(ctx, request)
    ns = await auth.namespace(ctx, request, sess, request.path_params["ns"], write=write)
    return sess, ns


async def _folder(ctx: Context, ns: Namespace, folder: str) -> None:
    """404 unless ``folder`` is a folder there now ("": the top)."""
    if folder:
        here = await files.current(ctx, ns.id, folder)
        if here is None or here.kind is not Kind.DIRECTORY:
            raise LinesyncError(Code.NOT_FOUND, "no such folder")


def _path(request: Request, name: str = "path") -> str:
    raw = request.query_params.get(name)
    if not raw:
        raise LinesyncError(Code.BAD_REQUEST, f"{name} is required")
    return paths.normalize(raw)


async def browse(ctx: Context, request: Request) -> Response:
    """A folder's children, a page of MAX_LISTED at a time (in path order
    across pages; folders first and by name within one)."""
    sess, ns = await _open(ctx, request)
    folder = tree.clean_folder(request.query_params.get("path"))
    await _folder(ctx, ns, folder)
    show_deleted = request.query_params.get("deleted") == "1"
    after = request.query_params.get("after", "")
    rows = await ctx.meta.children(ns.id, folder, after, MAX_LISTED + 1, show_deleted)
    # A page ends at MAX_LISTED entries, or at MAX_LISTED_BYTES of their paths
    # (each is on the page several times: long paths make big pages).
    shown = 0
    for size in itertools.accumulate(len(r.path.encode()) for r in rows):
        if shown == MAX_LISTED or (shown and size > MAX_LISTED_BYTES):
            break
        shown += 1
    more = rows[shown - 1].path if shown < len(rows) else None
    copies = await ctx.meta.find(ns.id, CONFLICT_MARK, "", MAX_CONFLICTS + 1)
    found = sum(1 for r in copies if tree.conflict_of(r.path) is not None)
    return render(
        request, "folder.html", sess, ns=ns, folder=folder, crumbs=tree.crumbs(folder),
        items=tree.children(rows[:shown], folder, deleted=show_deleted), more=more,
        after=after, show_deleted=show_deleted, writable=ns.role == "rw" and not sess.read_only,
        conflicts=f"{MAX_CONFLICTS}+" if found > MAX_CONFLICTS else found,
    )  # fmt: skip


async def download(ctx: Context, request: Request) -> Response:
    """A file (its current version, or version ``jid``), always as an attachment."""
    _, ns = await _open(ctx, request)
    path = _path(request)
    if "jid" in request.query_params:
        row = await ctx.meta.entry(ns.id, int_query(request, "jid"))
        if row is None or row.path != path:
            raise LinesyncError(Code.NOT_FOUND, "no such version of this file")
    else:
        row = await files.current(ctx, ns.id, path)
    if row is None or row.kind is not Kind.FILE:
        raise LinesyncError(Code.NOT_FOUND, "no such file")
    body = await files.read(ctx, ns.id, row.jid)
    return StreamingResponse(
        body,
        media_type="application/octet-stream",
        headers={
            "content-disposition": tree.attachment(path.rpartition("/")[2]),
            "content-length": str(row.size),
            # Big files go as they are (gzip would cost the server CPU in proportion).
            **({"content-encoding": "identity"} if row.size > GZIP_MAX else {}),
        },
    )


async def zip_folder(ctx: Context, request: Request) -> Response:
    sess, ns = await _open(ctx, request)
    folder = tree.clean_folder(request.query_params.get("path"))
    await _folder(ctx, ns, folder)
    below = await subtree(ctx.meta, ns.id, folder, _ZIP_SCAN)
    chosen = [r for r in below if r.kind is Kind.FILE]
    refused = files.zip_check(chosen) or (
        f"more than {_ZIP_SCAN} files and folders" if len(below) > _ZIP_SCAN else None
    )
    if refused:
        raise LinesyncError(Code.PAYLOAD_TOO_LARGE, f"Not zipped: {refused}.")
    name = (folder.rpartition("/")[2] or ns.name) + ".zip"
    return StreamingResponse(
        files.zip_stream(ctx, ns.id, chosen, folder),
        media_type="application/zip",
        headers={"content-disposition": tree.attachment(name), "content-encoding": "identity"},
    )


async def upload(ctx: Context, request: Request) -> Response:
    """Files into a folder (multipart: ``folder``, ``files``): each a commit."""
    sess = await auth.session(ctx, request)
    declared = request.headers.get("content-length", "")
    if not (declared.isascii() and declared.isdigit() and len(declared) < 19):
        raise LinesyncError(Code.BAD_REQUEST, "an upload needs a Content-Length")
    if int(declared) > MAX_UPLOAD_BYTES:
        raise LinesyncError(
            Code.PAYLOAD_TOO_LARGE,
            f"an upload is at most {MAX_UPLOAD_BYTES // 2**20} MiB; sync bigger files instead",
        )
    if not auth.origin_ok(request):
        raise LinesyncError(Code.FORBIDDEN, "cross-origin request refused")
    ns = await auth.namespace(ctx, request, sess, request.path_params["ns"], write=True)
    # The CSRF token comes in a header (the script) or as a form field (checked
    # before any file is stored).
    async with request.form(
        max_files=MAX_UPLOAD_FILES, max_fields=8, max_part_size=MAX_FIELD_BYTES
    ) as data:
        csrf = data.get(security.CSRF_FIELD)
        auth.check_write(request, sess, csrf if isinstance(csrf, str) else None)
        folder = tree.clean_folder(field(data, "folder", ""))
        uploads = [f for f in data.getlist("files") if isinstance(f, UploadFile)]
        if not uploads:
            raise LinesyncError(Code.BAD_REQUEST, "choose at least one file")
        saved: list[str] = []
        for up in uploads:
            name = (up.filename or "").replace("\\", "/").rpartition("/")[2]
            path = paths.normalize(f"{folder}/{name}" if folder else name)
            ids, size = await files.store(ctx, ns.id, up.file)
            result = await files.commit_file(ctx, ns.id, path, ids, size, sess.info.device)
            if result.status != "ok":
                done = f" ({len(saved)} file(s) before it were saved)" if saved else ""
                raise LinesyncError(
                    Code.BAD_REQUEST, f"{path}: not saved ({files.refused(result)}){done}"
                )
            saved.append(path)
    if wants_json(request):
        return JSONResponse({"saved": saved})
    return back(f"/web/ns/{ns.id}/browse", path=folder, saved=str(len(saved)))


async def mkdir(ctx: Context, request: Request) -> Response:
    sess = await auth.session(ctx, request)
    data = await form(ctx, request, sess)
    ns = await auth.namespace(ctx, request, sess, request.path_params["ns"], write=True)
    folder = tree.clean_folder(field(data, "folder", ""))
    name = field(data, "name").strip()
    paths.check_child(f"{folder}/{name}", name)
    path = paths.normalize(f"{folder}/{name}" if folder else name)
    cur = await files.current(ctx, ns.id, path)
    if cur is not None and cur.live:
        raise LinesyncError(Code.BAD_REQUEST, f"{name} exists already")
    op = CommitOp(path=path, kind=Kind.DIRECTORY, base_jid=cur.jid if cur else 0)
    await files.commit_ops(ctx, ns.id, [op], sess.info.device)
    return back(_browse_url(ns, folder).split("?")[0], path=folder)


async def delete(ctx: Context, request: Request) -> Response:
    """Delete a file, or a folder with everything in it (tombstones: the
    versions stay in the history)."""
    sess = await auth.session(ctx, request)
    data = await form(ctx, request, sess)
    ns = await auth.namespace(ctx, request, sess, request.path_params["ns"], write=True)
    path = paths.normalize(field(data, "path"))
    cur = await files.current(ctx, ns.id, path)
    if cur is None or cur.kind not in (Kind.FILE, Kind.DIRECTORY, Kind.SYMLINK):
        raise LinesyncError(Code.NOT_FOUND, "no such file or folder")
    rows = [cur]
    if cur.kind is Kind.DIRECTORY:
        rows += await subtree(ctx.meta, ns.id, path, MAX_TREE)
        if len(rows) - 1 > MAX_TREE:
            raise LinesyncError(
                Code.PAYLOAD_TOO_LARGE,
                f"{path} holds more than {MAX_TREE} entries: delete it from a client",
            )
    # Deepest first, so that each folder is empty when its turn comes; in
    # commits of the server's batch size (a big folder goes in several).
    ops = [CommitOp(path=r.path, kind=Kind.TOMBSTONE, base_jid=r.jid)
           for r in sorted(rows, key=lambda r: r.path, reverse=True)]  # fmt: skip
    step = ctx.config.max_batch_paths
    for i in range(0, len(ops), step):
        await files.commit_ops(ctx, ns.id, ops[i : i + step], sess.info.device)
    return back(f"/web/ns/{ns.id}/browse", path=paths.parent(path))


async def move(ctx: Context, request: Request) -> Response:
    """Rename or move a file or folder (``path`` to ``to``, both from the
    namespace's top): one move in the journal, as a client's rename is."""
    sess = await auth.session(ctx, request)
    data = await form(ctx, request, sess)
    ns = await auth.namespace(ctx, request, sess, request.path_params["ns"], write=True)
    path = paths.normalize(field(data, "path"))
    to = paths.normalize(field(data, "to").strip().strip("/"))
    src = await files.current(ctx, ns.id, path)
    if src is None or not src.live:
        raise LinesyncError(Code.NOT_FOUND, "no such file or folder")
    if to == path:
        return back(f"/web/ns/{ns.id}/browse", path=paths.parent(path))
    if paths.is_under(to, path):
        raise LinesyncError(Code.BAD_REQUEST, "a folder cannot go inside itself")
    there = await files.current(ctx, ns.id, to)
    if there is not None and there.live and paths.fold_key(to) != paths.fold_key(path):
        raise LinesyncError(Code.BAD_REQUEST, f"{to} exists already: choose another name")
    op = CommitOp(
        path=to, kind=src.kind, base_jid=there.jid if there else 0,
        size=src.size if src.kind is Kind.FILE else 0, mtime_ns=src.mtime_ns, exec=src.exec,
        target=src.target, move_from=src.path, move_base=src.jid,
    )  # fmt: skip
    await files.commit_ops(ctx, ns.id, [op], sess.info.device)
    return back(f"/web/ns/{ns.id}/browse", path=paths.parent(to))


# -- history -----------------------------------------------------------------------


async def history(ctx: Context, request: Request) -> Response:
    """A path's versions, newest first, HISTORY_PAGE at a time (``before``: the
    JID the page starts below; an *Older versions* link leads on)."""
    sess, ns = await _open(ctx, request)
    path = _path(request)
    before = int_query(request, "before") if "before" in request.query_params else 2**62
    rows = await ctx.meta.history(ns.id, path, before, HISTORY_PAGE + 1)
    if not rows:
        raise LinesyncError(Code.NOT_FOUND, "no such file or version")
    current = rows[0] if before == 2**62 else await files.current(ctx, ns.id, path)
    assert current is not None  # the path has versions
    versions = []
    for i, r in enumerate(rows[:HISTORY_PAGE]):
        older = next((o for o in rows[i + 1 :] if o.kind is Kind.FILE), None)
        versions.append({"row": r, "diff_from": older.jid if older else None})
    more = rows[HISTORY_PAGE - 1].jid if len(rows) > HISTORY_PAGE else None
    return render(
        request, "history.html", sess, ns=ns, path=path, versions=versions,
        current=current, crumbs=tree.crumbs(paths.parent(path)),
        writable=ns.role == "rw" and not sess.read_only, more=more, paged=before != 2**62,
    )  # fmt: skip


async def _version(ctx: Context, ns: Namespace, path: str, jid: int) -> Row:
    row = await ctx.meta.entry(ns.id, jid)
    if row is None or row.path != path or row.kind is not Kind.FILE:
        raise LinesyncError(Code.NOT_FOUND, f"no file version {jid} of this path")
    return row


async def diff(ctx: Context, request: Request) -> Response:
    """The line diff between versions ``a`` (older) and ``b`` of a text file."""
    sess, ns = await _open(ctx, request)
    path = _path(request)
    a = await _version(ctx, ns, path, int_query(request, "a"))
    b = await _version(ctx, ns, path, int_query(request, "b"))
    refused = diffs.too_big(a.size, b.size)
    if refused:
        result = diffs.Diff([], refused)
    else:
        old = await files.read_all(ctx, ns.id, a.jid, diffs.MAX_DIFF_BYTES)
        new = await files.read_all(ctx, ns.id, b.jid, diffs.MAX_DIFF_BYTES)
        result = await asyncio.to_thread(diffs.line_diff, old, new)
    return render(request, "diff.html", sess, ns=ns, path=path, a=a, b=b, diff=result)


async def restore(ctx: Context, request: Request) -> Response:
    """Make an old version current again (also undeletes): a new commit, as the
    API's restore does; nothing is lost, the replaced version stays in history."""
    sess = await auth.session(ctx, request)
    data = await form(ctx, request, sess)
    ns = await auth.namespace(ctx, request, sess, request.path_params["ns"], write=True)
    path = paths.normalize(field(data, "path"))
    old = await _version(ctx, ns, path, int_field(data, "jid"))
    cur = await files.current(ctx, ns.id, path)
    op = CommitOp(
        path=path,
        kind=Kind.FILE,
        base_jid=cur.jid if cur else 0,
        size=old.size,
        mtime_ns=old.mtime_ns,
        exec=old.exec,
        content=Content(base=old.jid, edits=[]),
    )
    await files.commit_ops(ctx, ns.id, [op], sess.info.device)
    return back(f"/web/ns/{ns.id}/history", path=path, restored=str(old.jid))


# -- conflicts -----------------------------------------------------------------------


async def conflicts(ctx: Context, request: Request) -> Response:
    sess, ns = await _open(ctx, request)
    found = await ctx.meta.find(ns.id, CONFLICT_MARK, "", MAX_CONFLICTS + 1)
    partial = len(found) > MAX_CONFLICTS
    copies = [r for r in found[:MAX_CONFLICTS] if tree.conflict_of(r.path) is not None]
    originals = {c.original for r in copies if (c := tree.conflict_of(r.path)) is not None}
    now = [await files.current(ctx, ns.id, p) for p in sorted(originals)]
    rows = copies + [r for r in now if r is not None]
    return render(
        request, "conflicts.html", sess, ns=ns, pairs=tree.conflicts(rows), partial=partial,
        writable=ns.role == "rw" and not sess.read_only,
    )  # fmt: skip


async def resolve(ctx: Context, request: Request) -> Response:
    """Keep one of a conflict copy and its original: keeping the copy puts its
    content at the original's path; the copy is deleted either way. One commit;
    both versions stay in history."""
    sess = await auth.session(ctx, request)
    data = await form(ctx, request, sess)
    ns = await auth.namespace(ctx, request, sess, request.path_params["ns"], write=True)
    copy_path = paths.normalize(field(data, "copy"))
    keep = field(data, "keep")
    c = tree.conflict_of(copy_path)
    copy = await files.current(ctx, ns.id, copy_path)
    if c is None or copy is None or copy.kind is not Kind.FILE:
        raise LinesyncError(Code.NOT_FOUND, "no such conflict copy")
    original = await files.current(ctx, ns.id, c.original)
    ops = []
    if keep == "copy":
        ops.append(
            CommitOp(
                path=c.original,
                kind=Kind.FILE,
                base_jid=original.jid if original else 0,
                size=copy.size,
                mtime_ns=copy.mtime_ns,
                exec=copy.exec,
                content=Content(base=copy.jid, edits=[]),
            )
        )
    elif keep != "original":
        raise LinesyncError(Code.BAD_REQUEST, "keep is 'original' or 'copy'")
    ops.append(CommitOp(path=copy_path, kind=Kind.TOMBSTONE, base_jid=copy.jid))
    await files.commit_ops(ctx, ns.id, ops, sess.info.device)
    return back(f"/web/ns/{ns.id}/conflicts")
