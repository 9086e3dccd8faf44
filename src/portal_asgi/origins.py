"""Cross-site WebSocket hijacking: a browser sends cookies with a WebSocket handshake from any
page, and SameSite=Lax does not stop it (the handshake is a GET). So a handshake whose `Origin` is
not the portal's own (`[portal] base_url`) or in `[websocket] origins` is refused with 403 and
recorded in the audit log (rate-limited like every denial). A handshake without `Origin` comes from a non-browser client, which
cannot be made to carry someone else's cookie, and is judged on its credentials alone."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from urllib.parse import urlsplit

from sqlalchemy.exc import SQLAlchemyError

from .answers import header, refuse
from .audit import DenialSampler, record
from .db.engine import Database
from .exceptions import DatabaseUnavailable
from .types import ASGIApp, Receive, Scope, Send
from .user import PortalUser

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
    """Pure ASGI: refuses cross-origin WebSocket handshakes; HTTP passes untouched."""

    def __init__(
        self, app: ASGIApp, *, allowed: Iterable[str], db: Database, per_minute: int
    ) -> None:
        self.app = app
        self.allowed = frozenset(filter(None, (normalise_origin(o) for o in allowed)))
        self.db = db
        self.sampler = DenialSampler(per_minute)  # a flood of handshakes cannot fill the log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            origin = header(scope, b"origin")
            if origin and normalise_origin(origin) not in self.allowed:
                await self._record(scope, origin)
                await refuse(scope, receive, send, 403)
                return
        await self.app(scope, receive, send)

    async def _record(self, scope: Scope, origin: str) -> None:
        user = scope.get("user")
        username = user.username if isinstance(user, PortalUser) else ""
        client = scope.get("client")
        address = str(client[0]) if client else ""
        path = str(scope.get("path", ""))
        keep, suppressed = self.sampler.admit(time.monotonic())
        try:
            if suppressed:
                await record(self.db, "websocket.origin_refused.suppressed", count=suppressed)
            if not keep:
                return
            await record(
                self.db,
                "websocket.origin_refused",
                username=username,
                client=address,
                origin=origin[:200],
                path=path[:200],
            )
        except (DatabaseUnavailable, SQLAlchemyError) as exc:
            logger.error("could not record a refused websocket origin: %s", exc)
