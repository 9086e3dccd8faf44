"""Who is calling, from the session cookie or a Bearer token. Sets `scope["user"]` and
`scope["auth"]`, adds the trusted `X-Portal-*` headers (the client's own were dropped in
`inbound.py`), and says when the session cookie must be re-issued. It never refuses: a caller
without a valid credential is anonymous, and the route decides what anonymous may reach."""

from __future__ import annotations

import logging
import math
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from .. import access, claims
from ..cookies import SessionCookie, read_cookie
from ..directory import Directory
from ..exceptions import TokenError, UnknownKey
from ..levels import Levels
from ..tokens import TokenCodec
from ..types import Scope
from ..user import AuthCredentials, PortalUser, UnauthenticatedUser
from .inbound import Inbound

logger = logging.getLogger("portal_asgi.identity")

# Where each kind of portal token may come from (RFC 8725 section 3.11, explicit typing): a
# session token only from the cookie, an API token only from `Authorization: Bearer`. A session
# JWT read from a page (or a log) does not become a Bearer token, and an API token is not a
# session (it has no idle timeout and no CSRF protection).
TOKEN_TYPES = {"session": claims.SESSION, "token": claims.API}

# A further way to accept a Bearer token (an OIDC provider's access tokens): returns the user,
# or None when the token is not one it knows.
BearerAuthenticator = Callable[[str], Awaitable[PortalUser | None]]

ANONYMOUS = UnauthenticatedUser()
NONE = ("", "", "")  # no Authorization header, partitioned
NO_SCOPES = AuthCredentials()
CACHE_SIZE = 10_000


@dataclass(frozen=True, slots=True)
class Known:
    """A portal token already judged, while the directory has not changed since."""

    version: int  # `Directory.version` it was judged against
    ends: float  # when it stops speaking for its user: `exp`, and `sxp` for a session
    user: PortalUser
    claims: dict[str, Any]
    headers: tuple[tuple[bytes, bytes], ...]  # the trusted X-Portal-* headers
    credentials: AuthCredentials  # scope["auth"]
    # from when a session's cookie is re-issued (claims.needs_refresh): never for an API token
    refresh_from: float = math.inf


class Identity:
    def __init__(
        self,
        *,
        codec: TokenCodec,
        directory: Directory,
        levels: Levels,
        cookie: SessionCookie,
        idle_timeout: float,
        bearer: list[BearerAuthenticator] | None = None,
    ) -> None:
        self.codec = codec
        self.directory = directory
        self.levels = levels
        self.cookie = cookie
        self.idle_timeout = idle_timeout
        self.bearer = bearer or []
        self.cookie_name = cookie.name
        self._scopes: dict[str, AuthCredentials] = {}
        self._known: dict[str, Known] = {}  # token -> verdict, oldest first
        # A change makes every verdict stale: forget them, and the verified tokens of revoked
        # sessions, instead of keeping tokens nobody will present again (a signed-out session's)
        # until the caches fill. Weakly, so that an Identity replaced by a reload can go.
        me = weakref.ref(self)

        def forget() -> None:
            identity = me()
            if identity is not None:
                identity.forget()

        directory.on_change(forget)

    def forget(self) -> None:
        """Drop every cached verdict, and verified tokens whose session is revoked or over."""
        self._known.clear()
        self.codec.forget(self.directory.is_revoked)

    async def identify(self, scope: Scope, inbound: Inbound) -> bytes | None:
        """Set who is calling; the re-issued session cookie to send, when one is due."""
        found = self._portal_caller(scope, inbound)
        if isinstance(found, str):  # a Bearer token that is not the portal's
            provider = await self._provider_user(found)
            if provider is not None:  # the provider's access token
                scope["user"], scope["auth"] = provider, self._credentials(provider.level)
                inbound.headers += _trusted_headers(provider)
                return None
            found = None
        if found is None:
            scope["user"], scope["auth"] = ANONYMOUS, NO_SCOPES
            return None
        user = found.user
        scope["user"], scope["auth"] = user, found.credentials
        inbound.headers += found.headers
        now = time.time()
        if now < found.refresh_from or scope["type"] != "http":
            return None
        session = found.claims
        if not claims.needs_refresh(session, now=now, idle_timeout=self.idle_timeout):
            return None
        fresh = claims.refreshed(
            self.levels, session, user, now=int(now), idle_timeout=self.idle_timeout
        )
        return self.cookie.set(self.codec.sign(fresh), max_age=fresh["exp"] - int(now))

    def _credentials(self, level: str) -> AuthCredentials:
        found = self._scopes.get(level)
        if found is None:
            found = AuthCredentials(["authenticated", *self.levels.scopes(level)])
            self._scopes[level] = found
        return found

    def _portal_caller(self, scope: Scope, inbound: Inbound) -> Known | str | None:
        """The portal token that speaks for the caller; or a Bearer token that is not the
        portal's, for the provider to judge; or None. Not a coroutine: the portal's own
        tokens need no waiting."""
        scheme, _, token = inbound.authorization.partition(" ") if inbound.authorization else NONE
        # Only a Bearer token speaks for the caller here; another scheme (Basic from an auth
        # proxy in front of the portal) is not ours, and the session cookie decides.
        if scheme.lower() == "bearer":
            bearer = token.strip()
            if not bearer:
                return None
            found = self._portal_token(bearer, via="token", scope=scope)
            if found is not None:
                self.directory.saw(found.user.sid)
                return found
            return bearer if self.bearer else None
        cookie = read_cookie(inbound.cookie, self.cookie_name) if inbound.cookie else None
        if cookie:
            known = self._portal_token(cookie, via="session", scope=scope)
            if known is not None:
                self.directory.saw(known.user.sid)
            return known
        return None

    async def _provider_user(self, bearer: str) -> PortalUser | None:
        """The provider's user for a Bearer token that is not the portal's, or None."""
        for authenticate in self.bearer:
            user = await authenticate(bearer)
            if user is not None:
                standing = access.standing(self.directory, user, time.time())
                return user if standing == access.GOOD else None
        return None

    def _portal_token(self, token: str, *, via: str, scope: Scope) -> Known | None:
        """The portal token's verdict: from the cache while nothing changed, else judged now."""
        now = time.time()
        known = self._known.get(token)
        if (
            known is not None
            and known.version == self.directory.version
            and now < known.ends
            and known.user.via == via
        ):
            return known
        version = self.directory.version  # read first: a change meanwhile makes it stale
        found = self._from_portal_token(token, via=via, scope=scope)
        if found is None:
            self._known.pop(token, None)
            return None
        user, claims = found
        exp = ends = float(claims["exp"])
        refresh_from = math.inf
        if via == "session":
            ends = min(ends, float(claims.get("sxp", ends)))
            if float(claims.get("sxp", exp)) > exp:  # as claims.needs_refresh has it
                refresh_from = exp - self.idle_timeout / 2
        headers = tuple(_trusted_headers(user))
        credentials = self._credentials(user.level)
        known = Known(version, ends, user, claims, headers, credentials, refresh_from)
        if len(self._known) >= CACHE_SIZE:
            del self._known[next(iter(self._known))]
        self._known[token] = known
        return known

    def _from_portal_token(
        self, token: str, *, via: str, scope: Scope
    ) -> tuple[PortalUser, dict[str, Any]] | None:
        try:
            found = self.codec.verify(token)
        except UnknownKey as exc:
            # Under another key a Bearer token may be the provider's: the provider check logs it.
            if via == "session" or not self.bearer:
                logger.info("token refused: %s (path %s)", exc, scope.get("path"))
            return None
        except TokenError as exc:
            if via == "session" or token.count(".") == 2:
                logger.info("token refused: %s (path %s)", exc, scope.get("path"))
            return None
        if found.get("typ") != TOKEN_TYPES[via]:
            where = "the session cookie" if via == "session" else "an Authorization header"
            logger.info("token refused: a %r token in %s", found.get("typ"), where)
            return None
        now = time.time()
        if via == "session" and not float(found.get("sxp", found["exp"])) > now:
            # the absolute lifetime, whatever `exp` says: no refresh may carry a session past it
            logger.info("token refused: session past its absolute lifetime")
            return None
        state = self.directory.holder(str(found["sub"]), found["uid"])
        if state is None:
            return None
        user = PortalUser(
            username=str(found["sub"]),
            uid=state.uid,
            level=state.level,
            email=state.email,
            name=state.name,
            sid=found["sid"],
            via=via,
            expires=float(found["exp"]),
            must_change_password=state.must_change_password,
        )
        if access.standing(self.directory, user, now) != access.GOOD:
            return None
        return user, found


def _trusted_headers(user: PortalUser) -> list[tuple[bytes, bytes]]:
    return [
        (b"x-portal-user", _header_value(user.username)),
        (b"x-portal-email", _header_value(user.email)),
        (b"x-portal-level", _header_value(user.level)),
    ]


def _header_value(value: str) -> bytes:
    if not value.isprintable():  # no CR/LF (or other controls) into a header a product reads
        value = "".join(ch for ch in value if ch.isprintable())
    return value.encode("utf-8")
