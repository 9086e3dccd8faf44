"""The guard at dispatch: the rules of the route the table chose, so the rule checked is always
the rule of the app that will answer. In order: a WebSocket handshake from a foreign `Origin`
(403), an unsafe cross-site request on the session cookie (403), then the level the route
requires now (401 without an identity, 403 when it is too low)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ..levels import Levels
from ..routes import Route
from ..types import Scope
from ..user import PortalUser
from .crosssite import is_cross_site, is_unsafe, on_session
from .origins import Origins, normalise_origin

logger = logging.getLogger("portal_asgi.crosssite")


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    event: str = "denied"
    detail: dict[str, object] = field(default_factory=dict)
    text: str | None = None  # what the page says, when not the status's usual words


CROSS_SITE = "This request came from another site."


class Guard:
    def __init__(self, *, levels: Levels, origin: str, websocket_origins: Origins) -> None:
        self.levels = levels
        self.origin = normalise_origin(origin)
        self.websocket_origins = websocket_origins

    def check(self, scope: Scope, route: Route) -> Refusal | None:
        if scope["type"] == "websocket":
            foreign = self.websocket_origins.refused(scope)
            if foreign is not None:
                return Refusal(403, "websocket.origin_refused", {"origin": foreign[:200]})
        elif is_unsafe(scope) and (route.forms or (route.csrf and on_session(scope))):
            if is_cross_site(scope, self.origin):
                logger.info("cross-site %s %s refused", scope.get("method"), scope.get("path"))
                return Refusal(403, text=CROSS_SITE)
        required = route.required()
        user = scope.get("user")
        held = user.level if isinstance(user, PortalUser) else None
        if not self.levels.allows(held, required):
            return Refusal(401 if held is None else 403)
        return None
