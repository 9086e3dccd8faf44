"""The two products of the HTTP benchmark served without the portal (`uvicorn bench.bare:flask`,
`bench.bare:starlette`), so that the only difference left is the portal itself.

The Flask product goes through the same WSGI bridge the portal puts it behind (`flask`), or through
plain a2wsgi (`flask_a2wsgi`), the bridge the portal used before, for bench/wsgi_bench.py. The Starlette
product reads `request.user` and `request.auth`, which the portal's Identity middleware sets; bare,
it gets a fixed user instead (no cookie, no token, no directory), or it would answer 500.
"""

from __future__ import annotations

from typing import Any, cast

from a2wsgi import WSGIMiddleware

from portal_asgi.products import as_asgi
from portal_asgi.types import ASGIApp, Receive, Scope, Send
from portal_asgi.user import AuthCredentials, PortalUser
from products.dashboard.app import app as dashboard
from products.test.app import app as test

USER = PortalUser(username="bench", level="ea")
SCOPES = ["authenticated", "access:stable", "access:ea"]


class FixedUser:
    """Sets what Identity and the level guard would, for one user, on every request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            scope["user"] = USER
            scope["auth"] = AuthCredentials(SCOPES)
            scope["portal"] = {"mount": "", "level": "ea"}
        await self.app(scope, receive, send)


flask, _ = as_asgi(test)
flask_a2wsgi = cast(ASGIApp, WSGIMiddleware(cast(Any, test)))
starlette = FixedUser(dashboard)
