"""The claims of the portal's own tokens, minted here and nowhere else: a browser session at
sign-in, its refresh near the idle timeout, an API token, and the assertion an upstream product
receives with each request (`X-Portal-Assertion`). `tokens.py` signs and verifies them;
`access.py` judges whether they still speak for their user.

| claim | session | API token | assertion | meaning |
| --- | --- | --- | --- | --- |
| `typ` | `session` | `api` | `assertion` | where the token is accepted: the cookie, `Authorization: Bearer`, or an upstream product (never by the portal itself) |
| `sub`, `uid` | yes | yes | yes | the username, and the user's id that is never reused |
| `sid` | yes | yes | - | the session (or token) id that revocation names |
| `lvl`, `scope` | yes | yes | yes | the level when minted (informative for the portal: the directory's level rules; the level now in an assertion) |
| `name`, `email` | yes | - | yes | for products deployed elsewhere that read the token |
| `aud` | base URL | base URL | mount path | whom the token is for (`tokens.py` adds the base URL, and `iss`) |
| `iat`, `exp` | yes | yes | yes | `exp` is the idle timeout for sessions, the ttl for tokens, `ASSERTION_LIFETIME` for assertions |
| `sxp` | yes | - | - | the session's absolute end: no refresh carries it further |
"""

from __future__ import annotations

from typing import Any, Protocol

from .levels import Levels

Claims = dict[str, Any]

SESSION = "session"
API = "api"
ASSERTION = "assertion"
ASSERTION_LIFETIME = 60  # seconds: enough for clock skew, too short to be worth replaying


class Holder(Protocol):
    """What a token says of its user (a `store.UserRecord`, `store.UserState` or `PortalUser`)."""

    @property
    def uid(self) -> str: ...
    @property
    def level(self) -> str: ...
    @property
    def email(self) -> str: ...
    @property
    def name(self) -> str: ...


def _user(levels: Levels, username: str, user: Holder) -> Claims:
    return {
        "sub": username,
        "uid": user.uid,
        "lvl": user.level,
        "scope": " ".join(levels.scopes(user.level)),
    }


def session(
    levels: Levels,
    username: str,
    user: Holder,
    *,
    sid: str,
    now: int,
    idle_timeout: float,
    lifetime: float,
) -> Claims:
    """A new browser session (a new `sid` at every sign-in: no fixation)."""
    absolute = now + int(lifetime)
    return {
        "typ": SESSION,
        **_user(levels, username, user),
        "name": user.name,
        "email": user.email,
        "sid": sid,
        "iat": now,
        "exp": min(now + int(idle_timeout), absolute),
        "sxp": absolute,
    }


def refreshed(
    levels: Levels, claims: Claims, user: Holder, *, now: int, idle_timeout: float
) -> Claims:
    """The same session re-issued near its idle timeout, telling the user's level now."""
    return {
        **claims,
        **_user(levels, str(claims["sub"]), user),
        "name": user.name,
        "email": user.email,
        "iat": now,
        "exp": min(now + int(idle_timeout), int(claims["sxp"])),
    }


def needs_refresh(claims: Claims, *, now: float, idle_timeout: float) -> bool:
    """A session past half its idle timeout, whose absolute lifetime lets it go further."""
    exp = float(claims["exp"])
    return exp - now < idle_timeout / 2 and float(claims.get("sxp", exp)) > exp


def api_token(
    levels: Levels, username: str, user: Holder, *, sid: str, now: int, ttl: float
) -> Claims:
    """An API token, accepted only as `Authorization: Bearer`."""
    return {
        "typ": API,
        **_user(levels, username, user),
        "sid": sid,
        "iat": now,
        "exp": now + int(ttl),
    }


def assertion(levels: Levels, username: str, user: Holder, *, audience: str, now: int) -> Claims:
    """What an upstream product is told of the caller, with each request (`X-Portal-Assertion`):
    for one mount (`aud`), for about a minute. No `sid`: the upstream has no use for it, and a
    session id is one more thing not to hand out."""
    return {
        "typ": ASSERTION,
        **_user(levels, username, user),
        "name": user.name,
        "email": user.email,
        "aud": audience,
        "iat": now,
        "exp": now + ASSERTION_LIFETIME,
    }
