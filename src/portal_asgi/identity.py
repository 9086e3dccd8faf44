"""Identity middleware (pure ASGI, http and websocket): who is calling, from the session cookie or
a Bearer token. Sets `scope["user"]` and `scope["auth"]`, removes any `X-Portal-*` header the client
sent and adds the trusted ones, and re-issues the session cookie when it nears its idle timeout.
It never refuses a request: that is the level guard's job, at the point of dispatch."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .answers import header
from .cookies import SessionCookie
from .directory import Directory
from .exceptions import TokenError, UnknownKey
from .levels import Levels
from .tokens import TokenCodec
from .types import ASGIApp, Message, Receive, Scope, Send
from .user import AuthCredentials, PortalUser, UnauthenticatedUser

logger = logging.getLogger("portal_asgi.identity")

# Where each kind of portal token may come from (RFC 8725 section 3.11, explicit typing): a
# session token only from the cookie, an API token only from `Authorization: Bearer`. A session
# JWT read from a page (or a log) does not become a Bearer token, and an API token is not a
# session (it has no idle timeout and no CSRF protection).
TOKEN_TYPES = {"session": "session", "token": "api"}

# A further way to accept a Bearer token (an OIDC provider's access tokens): returns the user,
# or None when the token is not one it knows.
BearerAuthenticator = Callable[[str], Awaitable[PortalUser | None]]


class Identity:
    def __init__(
        self,
        app: ASGIApp,
        *,
        codec: TokenCodec,
        directory: Directory,
        levels: Levels,
        cookie: SessionCookie,
        idle_timeout: float,
        bearer: list[BearerAuthenticator] | None = None,
    ) -> None:
        self.app = app
        self.codec = codec
        self.directory = directory
        self.levels = levels
        self.cookie = cookie
        self.idle_timeout = idle_timeout
        self.bearer = bearer or []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = [(k, v) for k, v in scope.get("headers", ()) if not _is_portal_header(k)]
        user, claims = await self.authenticate(scope)
        if isinstance(user, PortalUser):
            scope["auth"] = AuthCredentials(["authenticated", *self.levels.scopes(user.level)])
            headers += [
                (b"x-portal-user", _header_value(user.username)),
                (b"x-portal-email", _header_value(user.email)),
                (b"x-portal-level", _header_value(user.level)),
            ]
        else:
            scope["auth"] = AuthCredentials()
        scope["user"] = user
        scope["headers"] = headers
        if (
            claims is not None
            and scope["type"] == "http"
            # static files are cacheable and the same for everyone: never a cookie on them
            and not str(scope.get("path", "")).startswith("/static/")
            and self._needs_refresh(claims)
        ):
            send = self._refreshing_send(send, claims, user)
        await self.app(scope, receive, send)

    async def authenticate(
        self, scope: Scope
    ) -> tuple[PortalUser | UnauthenticatedUser, dict[str, Any] | None]:
        """The caller, and the claims of their session cookie when that is what spoke for them."""
        authorization = header(scope, b"authorization")
        scheme, _, token = authorization.partition(" ")
        # Only a Bearer token speaks for the caller here; another scheme (Basic from an auth
        # proxy in front of the portal) is not ours, and the session cookie decides.
        if scheme.lower() == "bearer":
            bearer = token.strip()
            if not bearer:
                return UnauthenticatedUser(), None
            found = self._from_portal_token(bearer, via="token", scope=scope)
            if found is not None:
                return found[0], None
            for authenticate in self.bearer:
                user = await authenticate(bearer)
                if user is not None:
                    return user, None
            return UnauthenticatedUser(), None
        cookie = self.cookie.read(header(scope, b"cookie"))
        if cookie:
            found = self._from_portal_token(cookie, via="session", scope=scope)
            if found is not None:
                return found
        return UnauthenticatedUser(), None

    def _from_portal_token(
        self, token: str, *, via: str, scope: Scope
    ) -> tuple[PortalUser, dict[str, Any]] | None:
        try:
            claims = self.codec.verify(token)
        except UnknownKey as exc:
            # Under another key a Bearer token may be the provider's: the provider check logs it.
            if via == "session" or not self.bearer:
                logger.info("token refused: %s (path %s)", exc, scope.get("path"))
            return None
        except TokenError as exc:
            if via == "session" or token.count(".") == 2:
                logger.info("token refused: %s (path %s)", exc, scope.get("path"))
            return None
        if claims.get("typ") != TOKEN_TYPES[via]:
            where = "the session cookie" if via == "session" else "an Authorization header"
            logger.info("token refused: a %r token in %s", claims.get("typ"), where)
            return None
        if via == "session" and not float(claims.get("sxp", claims["exp"])) > time.time():
            # the absolute lifetime, whatever `exp` says: no refresh may carry a session past it
            logger.info("token refused: session past its absolute lifetime")
            return None
        if self.directory.is_revoked(claims["sid"]):
            return None
        # by name and id: a token of a deleted user does not fit whoever has their name now
        state = self.directory.holder(str(claims["sub"]), claims["uid"])
        if state is None or not state.active:
            return None
        user = PortalUser(
            username=str(claims["sub"]),
            uid=state.uid,
            level=state.level,
            email=state.email,
            name=state.name,
            sid=claims["sid"],
            via=via,
            expires=float(claims["exp"]),
        )
        return user, claims

    def _needs_refresh(self, claims: dict[str, Any]) -> bool:
        remaining = float(claims["exp"]) - time.time()
        absolute = float(claims.get("sxp", claims["exp"]))
        return remaining < self.idle_timeout / 2 and absolute > claims["exp"]

    def _refreshing_send(
        self, send: Send, claims: dict[str, Any], user: PortalUser | UnauthenticatedUser
    ) -> Send:
        now = int(time.time())
        fresh = dict(claims)
        if isinstance(user, PortalUser):
            # the re-issued token tells the user's level now, not the one they logged in with
            fresh.update(
                lvl=user.level,
                scope=" ".join(self.levels.scopes(user.level)),
                email=user.email,
                name=user.name,
            )
        fresh["iat"] = now
        fresh["exp"] = min(now + int(self.idle_timeout), int(claims["sxp"]))
        token = self.codec.sign(fresh)
        cookie = self.cookie.set(token, max_age=fresh["exp"] - now)

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                # a response that sets the session cookie itself (login, logout) wins
                if not any(
                    k.lower() == b"set-cookie" and v.startswith(self.cookie.name.encode() + b"=")
                    for k, v in message.get("headers", ())
                ):
                    message["headers"] = [*message.get("headers", ()), (b"set-cookie", cookie)]
            await send(message)

        return wrapped


def _is_portal_header(name: bytes) -> bool:
    """`x-portal-*`, also spelt with underscores: a WSGI bridge turns `X_Portal_User` into the
    same `HTTP_X_PORTAL_USER` as `X-Portal-User`, so a client could forge it that way."""
    return name.lower().replace(b"_", b"-").startswith(b"x-portal-")


def _header_value(value: str) -> bytes:
    return "".join(ch for ch in value if ch.isprintable()).encode("utf-8")
