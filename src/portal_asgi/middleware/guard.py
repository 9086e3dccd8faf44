"""The guard at dispatch: the rules of the route the table chose, so the rule checked is always
the rule of the app that will answer. In order: a WebSocket handshake from a foreign `Origin`
(403), an unsafe cross-site request on the session cookie (403), a password that must be
changed first (a browser's navigation is sent to `/account`, 303; anything else is refused with
403 `password_change_required`; on every route but those the table marks open to it), then the
level the route requires now (401 without an identity, 403 when it is too low)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from types import MappingProxyType

from ..levels import Levels
from ..routes import Route
from ..types import Scope
from ..user import PortalUser
from .crosssite import SAFE_METHODS, is_cross_site, on_session
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


# The plain refusals, made once: a frozen dataclass costs more to make than the check that
# refuses, and a flood of refusals should cost as little as possible.
PLAIN = MappingProxyType({status: Refusal(status) for status in (400, 401, 403, 404, 413, 431)})


def plain(status: int) -> Refusal:
    """The refusal with `status` and nothing else."""
    return PLAIN.get(status) or Refusal(status)


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

    def check(self, scope: Scope, route: Route, required: str) -> Refusal | None:
        """`required`: the level the route requires now (`route.required()`, asked once)."""
        if scope["type"] == "websocket":
            foreign = self.websocket_origins.refused(scope)
            if foreign is not None:
                return Refusal(403, "websocket.origin_refused", {"origin": foreign[:200]})
        elif scope.get("method", "GET") not in SAFE_METHODS and (  # an unsafe HTTP request
            route.forms or (route.csrf and on_session(scope))
        ):
            if is_cross_site(scope, self.origin):
                logger.info("cross-site %s %s refused", scope.get("method"), scope.get("path"))
                return Refusal(403, text=CROSS_SITE)
        user = scope.get("user")
        if not isinstance(user, PortalUser):
            return None if self.levels.allows(None, required) else PLAIN[401]
        if user.must_change_password and not route.before_password_change:
            return CHANGE_PASSWORD
        return None if self.levels.allows(user.level, required) else PLAIN[403]
