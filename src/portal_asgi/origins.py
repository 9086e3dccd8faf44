"""Cross-site WebSocket hijacking: a browser sends cookies with a WebSocket handshake from any
page, and SameSite=Lax does not stop it (the handshake is a GET). So a handshake whose `Origin` is
not the portal's own (`[portal] base_url`) or in `[websocket] origins` is refused with 403 and
recorded in the audit log by `audit.AuditDenials` (rate-limited like every denial). A handshake without `Origin` comes from a non-browser client, which
cannot be made to carry someone else's cookie, and is judged on its credentials alone."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from urllib.parse import urlsplit

from .answers import header, refuse
from .audit import DENIAL_KEY
from .types import ASGIApp, Receive, Scope, Send

logger = logging.getLogger("portal_asgi.origins")

_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalise_origin(origin: str) -> str:
    """`scheme://host[:port]`, lower case, default port dropped; "" for anything else
    (including the opaque origin `null`)."""
    try:
        parts = urlsplit(origin.strip().lower())
        port = parts.port
    except ValueError:
        return ""
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/"):
        return ""
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    if port is None or port == _DEFAULT_PORTS[parts.scheme]:
        return f"{parts.scheme}://{host}"
    return f"{parts.scheme}://{host}:{port}"


class OriginCheck:
    """Pure ASGI: refuses cross-origin WebSocket handshakes; HTTP passes untouched. The refusal is
    audited (and rate-limited) by `audit.AuditDenials` with every other denial."""

    def __init__(self, app: ASGIApp, *, allowed: Iterable[str]) -> None:
        self.app = app
        self.allowed = frozenset(filter(None, (normalise_origin(o) for o in allowed)))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            origin = header(scope, b"origin")
            if origin and normalise_origin(origin) not in self.allowed:
                logger.info("websocket from origin %r refused on %s", origin, scope.get("path"))
                scope[DENIAL_KEY] = {"event": "websocket.origin_refused", "origin": origin[:200]}
                await refuse(scope, receive, send, 403)
                return
        await self.app(scope, receive, send)
