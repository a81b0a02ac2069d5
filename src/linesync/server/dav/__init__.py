"""WebDAV (class 1 and 2) over each namespace, at ``/dav/NAMESPACE/``.

Every change is a commit in the namespace's journal, authenticated with the
API's tokens (HTTP Basic: the user's name, a token as password). Layout:

- ``rules``, ``xmlbody``: pure header and XML rules (unit-tested);
- ``locks``, ``props``: the per-process lock manager and dead properties;
- ``tree``, ``content``: reading the namespace, file bytes in and out;
- ``reads``, ``writes``, ``copymove``, ``locking``: the handlers by method;
- ``auth``, ``base``, ``app``: who asks, shared checks, dispatch.

docs/WEBDAV.md says how to connect and what is and is not supported.
"""

from linesync.server.dav.app import DavApp

__all__ = ["DavApp"]
