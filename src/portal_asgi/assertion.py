"""Checking `X-Portal-Assertion` in a product served elsewhere (docs/remote-products.md).

A product mounted with `upstream = "http://..."` receives, with every request the portal lets
through for a signed-in user, `X-Portal-Assertion`: a JWT the portal signed (ES256) for that
mount (`aud` = the mount's path), about a minute long, saying who is calling (`sub`, `name`,
`email`, `lvl`, `scope`). A product that can be reached by other routes than the portal checks
it, and so refuses requests that did not come through the portal. This module does the check and
gives the product the same user object a product mounted in the portal's own process gets
(`request.user` in Starlette, `portal_asgi.flask.current_user()` in Flask). It needs nothing
else of the portal: no settings, database or app; importing it costs Starlette's authentication
types, and the JOSE library and the HTTP client load at the first check.

    from portal_asgi.assertion import AssertionMiddleware, Verifier

    verifier = Verifier(
        "https://portal.example.org/.well-known/jwks.json",
        audience="/hazard",
        issuer="https://portal.example.org",
    )
    app = AssertionMiddleware(app, verifier)                      # Starlette, any ASGI app
    flask_app.wsgi_app = WSGIAssertionMiddleware(flask_app.wsgi_app, verifier)  # Flask, WSGI
    @assertion_required(verifier)                                  # one Flask view

Checked: the algorithm (ES256 or RS256 only, never `none` or HS*, RFC 8725 section 3.1), the
signature with the key the header's `kid` names in the portal's JWKS (fetched once, cached, fetched
again for an unknown `kid` or when older than `max_age`, never more often than every
`refetch_interval`), `typ`, `aud`, `exp` and `iat` (with `leeway` seconds of clock skew), and `iss`
when given. A request without a valid assertion is refused with 401 (503 while the JWKS cannot be
had), unless `allow_anonymous` lets requests without one through as anonymous (a `public` mount:
the portal sends no assertion for anonymous callers). Either way the `X-Portal-User`, `-Email`
and `-Level` headers the product sees are the assertion's, or absent.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from .jose_utils import unverified_header
from .user import AuthCredentials, PortalUser, UnauthenticatedUser

if TYPE_CHECKING:
    from .jwks import Key
    from .types import ASGIApp, Receive, Scope, Send

__all__ = [
    "ALGORITHMS",
    "HEADER",
    "AssertionMiddleware",
    "InvalidAssertion",
    "KeysUnavailable",
    "Verified",
    "Verifier",
    "WSGIAssertionMiddleware",
    "assertion_required",
]

logger = logging.getLogger("portal_asgi.assertion")

HEADER = "X-Portal-Assertion"
ALGORITHMS = ("ES256", "RS256")  # what may ever be allowed: asymmetric only
_FOREIGN_KEYS = ("jku", "x5u", "jwk", "x5c")  # header members pointing at keys not in the JWKS
_IDENTITY = {"x-portal-user": "username", "x-portal-email": "email", "x-portal-level": "level"}
MAX_TOKEN = 8192
CACHE_SIZE = 1000

F = TypeVar("F", bound=Callable[..., Any])


class InvalidAssertion(Exception):
    """An assertion that is missing, malformed, forged, expired or meant for another mount.
    The reason is for logs, never for the client."""


class KeysUnavailable(InvalidAssertion):
    """The portal's JWKS could not be had, so no assertion can be checked."""


@dataclass(frozen=True, slots=True)
class Verified:
    user: PortalUser
    auth: AuthCredentials  # `authenticated` and the `access:` scopes, as `request.auth`
    claims: dict[str, Any]

    @property
    def mount(self) -> str:
        return str(self.claims["aud"])


class Verifier:
    """Checks assertions for one mount (`audience`: its path, e.g. "/hazard").

    `jwks_url` is the portal's `/.well-known/jwks.json`; or `jwks` gives the keys themselves
    (a JWKS as a dict), never fetched. `verify` is for threads (WSGI) and fetches with a
    blocking client; `verify_async` is for the event loop (ASGI)."""

    def __init__(
        self,
        jwks_url: str | None = None,
        *,
        audience: str,
        issuer: str | None = None,
        jwks: Mapping[str, Any] | None = None,
        algorithms: Sequence[str] = ALGORITHMS,
        leeway: float = 30.0,
        refetch_interval: float = 10.0,
        max_age: float = 300.0,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if (jwks_url is None) == (jwks is None):
            raise ValueError("give either jwks_url or jwks")
        if not algorithms or any(alg not in ALGORITHMS for alg in algorithms):
            raise ValueError(f"algorithms must be a non-empty list of {', '.join(ALGORITHMS)}")
        if not audience.startswith("/"):
            raise ValueError("audience is the mount's path, such as '/hazard'")
        self.jwks_url = jwks_url
        self.audience = audience
        self.issuer = issuer
        self.algorithms = tuple(algorithms)
        self.leeway = leeway
        self.refetch_interval = refetch_interval
        self.max_age = max_age
        self.timeout = timeout
        self.clock = clock
        self.fetches = 0
        self._static = dict(jwks) if jwks is not None else None
        self._keys: dict[str, Key] | None = None
        self._loaded_at = 0.0  # monotonic time of the keys in hand
        self._tried_at: float | None = None  # monotonic time of the last fetch, failed or not
        self._thread_lock = threading.Lock()
        self._loop_lock = asyncio.Lock()
        self._cache: dict[str, Verified] = {}  # checked tokens, until their `exp`
        self._cache_lock = threading.Lock()

    # -- the two entry points ----------------------------------------------------------------

    def verify(self, token: str) -> Verified:
        """The caller, or InvalidAssertion. May fetch the JWKS (blocking)."""
        found = self._cached(token)
        if found is not None:
            return found
        alg, kid = self._header(token)
        if self._wants_keys(kid, alg):
            with self._thread_lock:
                if self._wants_keys(kid, alg) and self._may_fetch():
                    self._load(self._fetch())
        return self._check(token, alg, kid)

    async def verify_async(self, token: str) -> Verified:
        """The caller, or InvalidAssertion. May fetch the JWKS (without blocking the loop)."""
        found = self._cached(token)
        if found is not None:
            return found
        alg, kid = self._header(token)
        if self._wants_keys(kid, alg):
            async with self._loop_lock:
                if self._wants_keys(kid, alg) and self._may_fetch():
                    self._load(await self._fetch_async())
        return self._check(token, alg, kid)

    # -- keys ----------------------------------------------------------------------------------

    def _wants_keys(self, kid: str, alg: str) -> bool:
        if self._keys is None:
            return True
        stale = self._static is None and time.monotonic() - self._loaded_at > self.max_age
        return stale or self._find(kid, alg) is None

    def _may_fetch(self) -> bool:
        """Not more often than every `refetch_interval`: made-up `kid`s cannot turn the product
        into a flood aimed at the portal."""
        now = time.monotonic()
        if self._tried_at is not None and now - self._tried_at < self.refetch_interval:
            return False
        self._tried_at = now
        return True

    def _fetch(self) -> Any:
        """The JWKS, or the exception that kept it away."""
        if self._static is not None:
            return self._static
        import httpx2

        assert self.jwks_url is not None
        try:
            with httpx2.Client(timeout=self.timeout, trust_env=False) as client:
                response = client.get(self.jwks_url)
                response.raise_for_status()
                return response.json()
        except (httpx2.HTTPError, ValueError) as exc:
            return exc

    async def _fetch_async(self) -> Any:
        """The JWKS, or the exception that kept it away."""
        if self._static is not None:
            return self._static
        import httpx2

        assert self.jwks_url is not None
        try:
            async with httpx2.AsyncClient(timeout=self.timeout, trust_env=False) as client:
                response = await client.get(self.jwks_url)
                response.raise_for_status()
                return response.json()
        except (httpx2.HTTPError, ValueError) as exc:
            return exc

    def _load(self, fetched: Any) -> None:
        """Keep the keys of a fetched JWKS; after a failure, the keys in hand."""
        from .jwks import signing_keys

        if isinstance(fetched, Exception):
            held = len(self._keys or {})
            logger.warning(
                "portal JWKS %s not fetched (%d keys kept): %s", self.jwks_url, held, fetched
            )
            return
        self.fetches += 1
        keys = signing_keys(fetched, log=logger, whose="portal JWKS")
        if not keys:
            logger.error("portal JWKS %s holds no usable key; keeping what was held", self.jwks_url)
            return
        self._keys, self._loaded_at = keys, time.monotonic()

    def _find(self, kid: str, alg: str) -> Key | None:
        from .jwks import find_key

        return find_key(self._keys or {}, kid, alg)

    # -- the checks ----------------------------------------------------------------------------

    def _cached(self, token: str) -> Verified | None:
        with self._cache_lock:
            found = self._cache.get(token)
        if found is not None and self.clock() < float(found.claims["exp"]) + self.leeway:
            return found
        return None

    def _header(self, token: str) -> tuple[str, str]:
        from .exceptions import TokenError

        if not token or len(token) > MAX_TOKEN:
            raise InvalidAssertion("no assertion, or one too long")
        try:
            header = unverified_header(token)
        except TokenError as exc:
            raise InvalidAssertion(str(exc)) from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise InvalidAssertion(f"algorithm {alg!r} is not allowed")
        if "crit" in header or any(name in header for name in _FOREIGN_KEYS):
            raise InvalidAssertion("header names critical extensions or foreign keys")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidAssertion("header has no kid")
        return alg, kid

    def _check(self, token: str, alg: str, kid: str) -> Verified:
        from joserfc import jwt
        from joserfc.errors import JoseError

        if self._keys is None:
            raise KeysUnavailable(f"no keys from {self.jwks_url}")
        key = self._find(kid, alg)
        if key is None:
            raise InvalidAssertion(f"no {alg} key with kid {kid!r} in the portal's JWKS")
        try:
            claims = dict(jwt.decode(token, key, algorithms=[alg]).claims)
        except (JoseError, ValueError) as exc:
            raise InvalidAssertion(f"signature or format: {exc}") from None
        verified = self._judge(claims)
        with self._cache_lock:
            if len(self._cache) >= CACHE_SIZE:
                del self._cache[next(iter(self._cache))]
            self._cache[token] = verified
        return verified

    def _judge(self, claims: dict[str, Any]) -> Verified:
        now = self.clock()
        if claims.get("typ") != "assertion":
            raise InvalidAssertion(f"not an assertion (typ {claims.get('typ')!r})")
        if claims.get("aud") != self.audience:
            raise InvalidAssertion(f"for {claims.get('aud')!r}, not {self.audience!r}")
        if self.issuer is not None and claims.get("iss") != self.issuer:
            raise InvalidAssertion(f"issued by {claims.get('iss')!r}")
        exp, iat = claims.get("exp"), claims.get("iat")
        if not all(isinstance(t, int | float) and not isinstance(t, bool) for t in (exp, iat)):
            raise InvalidAssertion("exp and iat must be numbers")
        assert isinstance(exp, int | float) and isinstance(iat, int | float)
        if now > exp + self.leeway:
            raise InvalidAssertion("expired")
        if iat > now + self.leeway:
            raise InvalidAssertion("issued in the future")
        strings = ("sub", "lvl", "scope")
        if not all(isinstance(claims.get(name), str) for name in strings) or not claims["sub"]:
            raise InvalidAssertion("sub, lvl and scope must be strings")
        user = PortalUser(
            username=claims["sub"],
            level=claims["lvl"],
            email=str(claims.get("email") or ""),
            name=str(claims.get("name") or ""),
            uid=str(claims.get("uid") or ""),
            via="assertion",
            expires=float(exp),
        )
        scopes = ["authenticated", *claims["scope"].split()]
        return Verified(user, AuthCredentials(scopes), claims)


# -- what a product puts in front of itself ---------------------------------------------------

_ANONYMOUS = UnauthenticatedUser()
_NO_SCOPES = AuthCredentials()
_REFUSED = {
    401: b'{"error": "portal_assertion_required"}',
    503: b'{"error": "portal_keys_unavailable"}',
}


def _refusal(exc: InvalidAssertion, where: object) -> int:
    if isinstance(exc, KeysUnavailable):
        logger.error("assertion not checked on %s: %s", where, exc)
        return 503
    logger.info("assertion refused on %s: %s", where, exc)
    return 401


class AssertionMiddleware:
    """Pure ASGI, for Starlette and any ASGI product: `scope["user"]`, `scope["auth"]` and
    `scope["portal"]` from the assertion (so `request.user` is a `PortalUser`), or a refusal."""

    def __init__(self, app: ASGIApp, verifier: Verifier, *, allow_anonymous: bool = False) -> None:
        self.app = app
        self.verifier = verifier
        self.allow_anonymous = allow_anonymous

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        token = ""
        for name, value in scope.get("headers", ()):
            if name.lower() == b"x-portal-assertion":
                token = value.decode("latin-1").strip()
        verified: Verified | None = None
        if token or not self.allow_anonymous:
            try:
                verified = await self.verifier.verify_async(token)
            except InvalidAssertion as exc:
                await _refuse_asgi(scope, receive, send, _refusal(exc, scope.get("path")))
                return
        scope = dict(scope)
        headers = [(k, v) for k, v in scope.get("headers", ()) if k.lower() not in _IDENTITY_B]
        if verified is None:
            scope["user"], scope["auth"] = _ANONYMOUS, _NO_SCOPES
        else:
            user = verified.user
            scope["user"], scope["auth"] = user, verified.auth
            scope["portal"] = {"mount": verified.mount}
            headers += [(k.encode(), _value(getattr(user, a))) for k, a in _IDENTITY.items()]
        scope["headers"] = headers
        await self.app(scope, receive, send)


_IDENTITY_B = frozenset(name.encode() for name in _IDENTITY)


def _value(text: str) -> bytes:
    return "".join(ch for ch in text if ch.isprintable()).encode("utf-8")


async def _refuse_asgi(scope: Scope, receive: Receive, send: Send, status: int) -> None:
    body = _REFUSED[status]
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    if (await receive())["type"] != "websocket.connect":
        return
    if "websocket.http.response" in scope.get("extensions", {}):
        start = {"type": "websocket.http.response.start", "status": status, "headers": headers}
        await send(start)
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 1008})


def _environ_key(header: str) -> str:
    return "HTTP_" + header.upper().replace("-", "_")


def _install(environ: dict[str, Any], verified: Verified | None) -> None:
    """What a Flask product reads: `environ["asgi.scope"]` (portal_asgi.flask.current_user())
    and the identity headers, from the assertion only."""
    scope = dict(environ.get("asgi.scope") or {"type": "http"})
    for header, attribute in _IDENTITY.items():
        environ.pop(_environ_key(header), None)
        if verified is not None:
            environ[_environ_key(header)] = _value(getattr(verified.user, attribute)).decode(
                "latin-1"
            )
    if verified is None:
        scope["user"], scope["auth"] = _ANONYMOUS, _NO_SCOPES
    else:
        scope["user"], scope["auth"] = verified.user, verified.auth
        scope["portal"] = {"mount": verified.mount}
    environ["asgi.scope"] = scope


def _check_environ(
    verifier: Verifier, environ: dict[str, Any], allow_anonymous: bool
) -> int | None:
    """Install the caller in `environ`; the refusal's status when there is none."""
    token = str(environ.get(_environ_key(HEADER), "")).strip()
    verified: Verified | None = None
    if token or not allow_anonymous:
        try:
            verified = verifier.verify(token)
        except InvalidAssertion as exc:
            return _refusal(exc, environ.get("PATH_INFO"))
    _install(environ, verified)
    return None


_STATUS_LINES = {401: "401 Unauthorized", 503: "503 Service Unavailable"}


class WSGIAssertionMiddleware:
    """For Flask and any WSGI product: `flask_app.wsgi_app = WSGIAssertionMiddleware(
    flask_app.wsgi_app, verifier)`; then `portal_asgi.flask.current_user()` is the caller."""

    def __init__(
        self,
        app: Callable[..., Iterable[bytes]],
        verifier: Verifier,
        *,
        allow_anonymous: bool = False,
    ) -> None:
        self.app = app
        self.verifier = verifier
        self.allow_anonymous = allow_anonymous

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        status = _check_environ(self.verifier, environ, self.allow_anonymous)
        if status is None:
            return self.app(environ, start_response)
        body = _REFUSED[status]
        start_response(
            _STATUS_LINES[status],
            [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
        )
        return [body]


def assertion_required(verifier: Verifier, *, allow_anonymous: bool = False) -> Callable[[F], F]:
    """A Flask view that needs an assertion (for products that check some views only)."""

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            from flask import Response, request

            status = _check_environ(verifier, request.environ, allow_anonymous)
            if status is not None:
                return Response(_REFUSED[status], status=status, mimetype="application/json")
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
