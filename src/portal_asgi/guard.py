"""The level guard: wraps one mounted product and is reached only after the router chose that
mount, so the rule checked is always the rule of the app that will answer."""

from __future__ import annotations

from collections.abc import Callable

from .answers import refuse
from .levels import Levels
from .types import ASGIApp, Receive, Scope, Send
from .user import PortalUser


class LevelGuard:
    def __init__(
        self,
        app: ASGIApp,
        *,
        path: str,
        required: Callable[[], str],
        levels: Levels,
        title: str,
    ) -> None:
        self.app = app
        self.path = path
        self.required = required  # read at every request: level changes apply without a restart
        self.levels = levels
        self.title = title

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        level = self.required()
        user = scope.get("user")
        held = user.level if isinstance(user, PortalUser) else None
        if not self.levels.allows(held, level):
            await refuse(scope, receive, send, 401 if held is None else 403, title=self.title)
            return
        scope["portal"] = {"mount": self.path, "level": level}
        await self.app(scope, receive, send)
