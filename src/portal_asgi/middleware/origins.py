"""Cross-site WebSocket hijacking: a browser sends cookies with a WebSocket handshake from any
page, and SameSite=Lax does not stop it (the handshake is a GET). So a handshake whose `Origin` is
not the portal's own (`[portal] base_url`) or in `[websocket] origins` is refused with 403 and
recorded in the audit log by `denials.py` (rate-limited like every denial). A handshake without `Origin` comes from a non-browser client, which
cannot be made to carry someone else's cookie, and is judged on its credentials alone."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from urllib.parse import urlsplit

from ..answers import header
from ..types import Scope

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


class Origins:
    """The origins a WebSocket handshake may come from: the portal's own and `[websocket] origins`."""

    def __init__(self, allowed: Iterable[str]) -> None:
        self.allowed = frozenset(filter(None, (normalise_origin(o) for o in allowed)))

    def refused(self, scope: Scope) -> str | None:
        """The foreign `Origin` of a WebSocket handshake, or None when it may go on."""
        if scope["type"] != "websocket":
            return None
        origin = header(scope, b"origin")
        if origin and normalise_origin(origin) not in self.allowed:
            logger.info("websocket from origin %r refused on %s", origin, scope.get("path"))
            return origin
        return None
