"""The guard at dispatch: the rules of the route the table chose, so the rule checked is always
the rule of the app that will answer. In order: a WebSocket handshake from a foreign `Origin`
(403), an unsafe cross-site request on the session cookie (403), a password that must be
changed first (a browser's navigation is sent to `/account`, 303; anything else is refused with
403 `password_change_required`; on every route but those the table marks open to it), then the
level the route requires now (401 without an identity, 403 when it is too low)."""

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
    redirect: str | None = None  # where a browser's navigation is sent instead (303)
    error: str | None = None  # the JSON answer's `error`, when not the status's usual code


CROSS_SITE = "This request came from another site."
CHANGE_PASSWORD = Refusal(
    403,
    text="Choose a new password on your account page before you go on.",
    redirect="/account",
    error="password_change_required",
)


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
        user = scope.get("user")
        changing = isinstance(user, PortalUser) and user.must_change_password
        if changing and not route.before_password_change:
            return CHANGE_PASSWORD
        held = user.level if isinstance(user, PortalUser) else None
        if not self.levels.allows(held, route.required()):
            return Refusal(401 if held is None else 403)
        return None
