"""`/auth/login`, `/auth/callback` and `/auth/logout` when `[auth] provider = "oidc"`.

login     the page with a "Continue with <provider>" button; `?go=1` starts the authorization code
          flow (PKCE S256, state, nonce) and keeps the transaction in its own signed cookie
callback  checks state (and `iss`, RFC 9207), exchanges the code, verifies the ID token, reads the
          level from the claims, upserts the user, opens the portal session
logout    ends the portal session, then the provider's where it offers `end_session_endpoint`
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from .. import audit
from ..db import store
from ..exceptions import DatabaseUnavailable, ProviderUnavailable, TokenError, UserError
from ..oidc.allow import Refusal, needed_claims, refused_message
from ..oidc.claims import has_claim, username_from
from ..oidc.errors import LoginRefused
from ..oidc.provider import FRESH, OIDCProvider
from ..oidc.resolve import ProviderUsers, identify
from ..oidc.transaction import HintCookie, LoginTransaction, TransactionCookie
from ..redirects import safe_next
from ..runtime import Runtime
from ..user import PortalUser
from .auth import NO_STORE, AuthPages, client_address, issue_session

logger = logging.getLogger("portal_asgi.auth")


def _unavailable(name: str) -> str:
    return (
        f"Sign-in is unavailable right now: the portal cannot reach {name}, the identity "
        "provider. If you are already signed in, you can carry on. Please try again in a few "
        "minutes."
    )


class OIDCPages(AuthPages):
    def __init__(self, runtime: Runtime, provider: OIDCProvider) -> None:
        super().__init__(runtime)
        self.provider = provider
        self.users = ProviderUsers(
            db=runtime.db, directory=runtime.directory, levels=runtime.levels
        )
        secure = runtime.settings.https
        self.transactions = TransactionCookie(runtime.key.secret, secure=secure)
        self.hints = HintCookie(
            runtime.key.secret,
            secure=secure,
            max_age=int(runtime.settings.auth.session_lifetime),
        )
        # signed with the current key's secret, accepted with any key's: they survive rotation
        runtime.keys.track(self.transactions.serializer, self.hints.serializer)

    def routes(self) -> list[Route]:
        return [
            Route("/auth/login", self.login_form, methods=["GET", "HEAD"]),
            Route("/auth/callback", self.callback, methods=["GET"]),
            Route("/auth/logout", self.logout, methods=["POST"]),
            Route("/auth/logout", self.logout_page, methods=["GET", "HEAD"]),
        ]

    def _oidc_page(
        self, request: Request, *, status: int = 200, error: str = "", next_path: str = "/"
    ) -> Response:
        # No button while the provider is unreachable: it would lead nowhere.
        name = self.provider.name if status < 500 else ""
        return self._page(request, status=status, error=error, next_path=next_path, oidc=name)

    async def login_form(self, request: Request) -> Response:
        next_path = safe_next(request.query_params.get("next"))
        if isinstance(request.scope.get("user"), PortalUser):
            return RedirectResponse(next_path, status_code=303, headers=NO_STORE)
        go = request.query_params.get("go") == "1"
        try:
            if not go:
                await self.provider.metadata(max_age=FRESH, stale_ok=False)
                return self._oidc_page(request, next_path=next_path)
            url, transaction = await self.provider.start(next_path)
        except ProviderUnavailable as exc:
            logger.error("OIDC login unavailable: %s", exc)
            return self._oidc_page(
                request, status=503, error=_unavailable(self.provider.name), next_path=next_path
            )
        response = RedirectResponse(url, status_code=303, headers=NO_STORE)
        response.headers.append("set-cookie", self.transactions.issue(transaction))
        return response

    async def callback(self, request: Request) -> Response:
        transaction = self.transactions.transaction(request.headers.get("cookie", ""))
        next_path = transaction.next if transaction else "/"
        try:
            if not self.runtime.directory.loaded:  # as for the local sign-in (pages/auth.py)
                raise DatabaseUnavailable("the directory is not loaded yet")
            response = await self._finish(request, transaction)
        except LoginRefused as exc:
            response = await self._refused(request, exc, next_path)
        except ProviderUnavailable as exc:
            logger.error("OIDC login failed, provider unavailable: %s", exc)
            response = await self._refused(
                request,
                LoginRefused(503, _unavailable(self.provider.name), f"provider unavailable: {exc}"),
                next_path,
            )
        except (DatabaseUnavailable, UserError) as exc:
            logger.error("OIDC login unavailable: %s", exc)
            self.runtime.metrics.login("oidc", "unavailable")
            if isinstance(exc, DatabaseUnavailable):
                self.runtime.metrics.database_error("sign-in")
            response = self._oidc_page(
                request,
                status=503,
                error="Sign-in is unavailable right now: the portal cannot reach its database.",
                next_path=next_path,
            )
        # The transaction is good for one callback, whatever its outcome.
        response.headers.append("set-cookie", self.transactions.clear())
        return response

    async def _refused(self, request: Request, exc: LoginRefused, next_path: str) -> Response:
        client = client_address(request)
        logger.warning("OIDC login refused (%s): %s", client, exc.reason)
        self.runtime.metrics.login("oidc", "unavailable" if exc.status == 503 else "failed")
        try:
            await audit.record(
                self.runtime.db,
                "login.refused",
                client=client,
                provider="oidc",
                reason=exc.reason,
                **exc.detail,
            )
        except DatabaseUnavailable as db_exc:
            logger.error("audit entry not stored: %s", db_exc)
            self.runtime.metrics.database_error("audit")
        return self._oidc_page(request, status=exc.status, error=exc.message, next_path=next_path)

    async def _finish(self, request: Request, transaction: LoginTransaction | None) -> Response:
        query = request.query_params
        if transaction is None:
            raise LoginRefused(
                400,
                "This sign-in was not started in this browser, or took longer than ten minutes. "
                "Please sign in again.",
                "no valid login transaction cookie (expired, forged or from another browser)",
            )
        # RFC 9700 section 4.7.1: the state must be the one this browser's login started with.
        state = query.get("state", "")
        if not hmac.compare_digest(state.encode(), transaction.state.encode()):
            raise LoginRefused(
                400,
                "This sign-in answer does not belong to the sign-in started in this browser. "
                "Please sign in again.",
                "state does not match the login transaction",
            )
        metadata = await self.provider.metadata()
        # RFC 9207: an `iss` in the answer names the provider that sent it (mix-up attacks).
        iss = query.get("iss")
        if iss is not None and iss != metadata["issuer"]:
            raise LoginRefused(
                400,
                "This sign-in answer came from another identity provider. Please sign in again.",
                f"authorization response from issuer {iss!r}, expected {metadata['issuer']!r}",
            )
        if query.get("error"):
            raise LoginRefused(
                401,
                "The identity provider did not sign you in"
                + (f": {query.get('error_description')}" if query.get("error_description") else ".")
                + " Please sign in again.",
                f"provider answered {query.get('error')}: {query.get('error_description', '')}",
            )
        code = query.get("code")
        if not code:
            raise LoginRefused(
                400, "The sign-in answer was incomplete. Please sign in again.", "no code"
            )
        token = await self.provider.exchange(transaction, code)
        id_token = str(token["id_token"])
        access_token = token.get("access_token")
        try:
            claims = await self.provider.verify_id_token(
                id_token,
                nonce=transaction.nonce,
                access_token=access_token if isinstance(access_token, str) else None,
            )
        except TokenError as exc:
            raise LoginRefused(
                401,
                "The identity provider's answer could not be verified, so you are not signed in. "
                "Please try again; if it keeps happening, tell the portal's administrator.",
                f"ID token refused: {exc}",
            ) from None
        return await self._sign_in(request, token, claims, transaction.next)

    async def _sources(self, token: dict[str, Any], claims: dict[str, Any]) -> list[dict[str, Any]]:
        """The claims the level and the sign-in rules are read from: the ID token's; userinfo's
        when the ID token lacks a claim they need; the access token's (when it is a JWT for
        `audience`) when one is still missing."""
        needed = needed_claims(self.provider.settings)
        sources = [claims]

        def missing() -> bool:
            return any(not any(has_claim(s, name) for s in sources) for name in needed)

        if missing():
            info = await self.provider.userinfo(token)
            if info is not None and info.get("sub") == claims["sub"]:
                sources.append(info)
        access_token = token.get("access_token")
        if missing() and isinstance(access_token, str):
            try:
                access = await self.provider.verify_access_token(access_token)
            except TokenError as exc:
                logger.info("OIDC access token not used for levels: %s", exc)
            else:
                if access.get("sub") == claims["sub"]:
                    sources.append(access)
        return sources

    async def _sign_in(
        self, request: Request, token: dict[str, Any], claims: dict[str, Any], next_path: str
    ) -> Response:
        runtime = self.runtime
        settings = self.provider.settings
        client = client_address(request)
        subject = str(claims["sub"])
        sources = await self._sources(token, claims)
        who = identify(settings, sources, levels=runtime.levels)
        if isinstance(who, Refusal):  # before the upsert: a refused person leaves no user behind
            raise LoginRefused(
                403,
                refused_message(settings, who),
                f"not allowed in: {who.reason}",
                # not the username column: the name is the provider's word, and may be a local
                # account's ("admin") that this person does not own
                detail={"subject": subject, "name": username_from(claims, settings.username_claim)},
            )
        user = await self.users.sign_in(who)
        if not user.active:
            raise LoginRefused(
                403,
                "Your account on this portal is disabled. Please ask its administrator.",
                f"user {user.username} is disabled",
            )
        sid, opened = await store.open_session(
            runtime.db,
            user.username,
            lifetime=runtime.settings.auth.session_lifetime,
            client=client,
        )
        await audit.record(
            runtime.db,
            "login",
            username=user.username,
            client=client,
            provider="oidc",
            subject=subject,
            level=user.level,
            **({"admin": "named in [auth.oidc] admins"} if who.admin else {}),
        )
        await runtime.directory.refresh()
        logger.info("login: %s (oidc %s) from %s at %s", user.username, subject, client, user.level)
        runtime.metrics.login("oidc", "success")
        response = RedirectResponse(next_path, status_code=303, headers=NO_STORE)
        issue_session(runtime, response, opened.username, sid, uid=opened.uid)
        response.headers.append("set-cookie", self.hints.set({"id_token": token["id_token"]}))
        if runtime.csrf.cookie_value(request.headers.get("cookie", "")) is None:
            # the portal's forms (logout) need it; a local login gets it from the login form
            response.headers.append("set-cookie", runtime.csrf.set_cookie(runtime.csrf.new_value()))
        return response

    async def logout(self, request: Request) -> Response:
        response = await super().logout(request)
        if response.status_code != 303:
            return response  # the form expired: nothing was ended
        hint = self.hints.read(request.headers.get("cookie", ""))
        id_token = hint.get("id_token") if hint else None
        if hint is None and not isinstance(request.scope.get("user"), PortalUser):
            return response  # nobody was signed in through the provider here
        url = await self.provider.logout_url(id_token if isinstance(id_token, str) else None)
        if url is not None:
            response.headers["location"] = url
        response.headers.append("set-cookie", self.hints.clear())
        return response
