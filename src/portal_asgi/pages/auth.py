"""`/auth/login` and `/auth/logout` for the local provider: a form, a CSRF token, a session."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from .. import audit, claims
from ..answers import wants_html
from ..db import store
from ..exceptions import DatabaseUnavailable, UserError
from ..passwords import Hashing, HashingBusy
from ..redirects import safe_next
from ..regulation import Regulator
from ..runtime import Runtime
from ..user import PortalUser
from .context import frame_of, page_context
from .forms import read_form
from .templates import render

logger = logging.getLogger("portal_asgi.auth")

NO_STORE = {"cache-control": "no-store"}
# Seconds a login refused for want of a free password check is told to wait: a check takes a
# fraction of a second, so places free up quickly.
BUSY_RETRY_AFTER = 1


def client_address(request: Request) -> str:
    return request.client.host if request.client else ""


def issue_session(
    runtime: Runtime, response: Response, username: str, sid: str, *, uid: str | None = None
) -> None:
    """Put a fresh session JWT in the response's cookie (a new `sid` at every login: no fixation).
    `uid` is the id of the user the session was opened for (`UserRecord.uid`); without it, the
    directory's current holder of `username` is taken."""
    now = int(time.time())
    auth = runtime.settings.auth
    directory = runtime.directory
    state = directory.user(username) if uid is None else directory.holder(username, uid)
    holder = state or _Unknown(uid or "", runtime.levels.lowest)
    session = claims.session(
        runtime.levels,
        username,
        holder,
        sid=sid,
        now=now,
        idle_timeout=auth.idle_timeout,
        lifetime=auth.session_lifetime,
    )
    token = runtime.codec.sign(session)
    cookie = runtime.cookie.set(token, max_age=session["exp"] - now)
    response.headers.append("set-cookie", cookie.decode())


@dataclass(frozen=True, slots=True)
class _Unknown:
    """A user the directory has not learnt of yet (its feed is a poll behind the write)."""

    uid: str
    level: str
    email: str = ""
    name: str = ""


class AuthPages:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        security = runtime.settings.security
        self.regulator = Regulator(runtime.db, security)
        self.hashing = Hashing(
            at_once=security.max_concurrent_hashes, waiting=security.max_waiting_hashes
        )

    def routes(self) -> list[Route]:
        return [
            Route("/auth/login", self.login_form, methods=["GET", "HEAD"]),
            Route("/auth/login", self.login, methods=["POST"]),
            Route("/auth/logout", self.logout, methods=["POST"]),
            Route("/auth/logout", self.logout_page, methods=["GET", "HEAD"]),
        ]

    def _page(
        self,
        request: Request,
        *,
        status: int = 200,
        error: str = "",
        next_path: str = "/",
        username: str = "",
        **extra: Any,  # more template context (the OIDC pages add `oidc`, the provider's name)
    ) -> Response:
        runtime = self.runtime
        csrf_value = runtime.csrf.cookie_value(request.headers.get("cookie", ""))
        new_cookie = csrf_value is None
        if csrf_value is None:
            csrf_value = runtime.csrf.new_value()
        public = [
            product.mount
            for product in sorted(runtime.products, key=lambda p: p.mount.title.casefold())
            if runtime.policy.level(product.mount.path) == "public"
        ]
        context: dict[str, Any] = page_context(
            runtime,
            request,
            csrf_token=runtime.csrf.token_for(csrf_value),
            error=error,
            next=next_path,
            username=username,
            public_products=public,
            **extra,
        )
        response = HTMLResponse(
            render("login.html", **context), status_code=status, headers=NO_STORE
        )
        if new_cookie:
            response.headers.append("set-cookie", runtime.csrf.set_cookie(csrf_value))
        return response

    async def login_form(self, request: Request) -> Response:
        next_path = safe_next(request.query_params.get("next"))
        if isinstance(request.scope.get("user"), PortalUser):
            return RedirectResponse(next_path, status_code=303, headers=NO_STORE)
        return self._page(request, next_path=next_path)

    async def login(self, request: Request) -> Response:
        runtime = self.runtime
        form = await read_form(request)
        if form is None:
            return self._page(request, status=413, error="That form was too large.")
        next_path = safe_next(form.get("next"))
        if not runtime.csrf.check(request.headers.get("cookie", ""), form.get("csrf_token")):
            logger.warning(
                "login refused: CSRF token missing or wrong (%s)", client_address(request)
            )
            return self._page(
                request,
                status=403,
                error="Your sign-in form expired. Please try again.",
                next_path=next_path,
                username=form.get("username", "").strip()[:150],
            )
        username = form.get("username", "").strip()[:150]
        password = form.get("password", "")[:1024]
        client = client_address(request)
        try:
            if not runtime.directory.loaded:
                # startup has not finished (database down, or its schema not upgraded yet):
                # a session could not be judged, so none is opened
                raise DatabaseUnavailable("the directory is not loaded yet")
            # A place among the worker's password checks first: a flood is refused here at once,
            # before it costs the database anything. Then the attempt is counted, and only an
            # attempt let through has its password checked: a burst cannot check more passwords
            # than regulation allows. The same steps for known and unknown names.
            with self.hashing.admit():
                attempt = await self.regulator.attempt(username, client)
                user = (
                    None
                    if attempt.retry_after
                    else await store.check_password(
                        runtime.db, username, password, hashing=self.hashing
                    )
                )
            if attempt.retry_after:
                return self._too_many(request, attempt.retry_after, next_path, username)
            if user is None:
                await audit.record(
                    runtime.db, "login.failed", username=username, client=client, provider="local"
                )
                logger.info("login failed for %r from %s", username, client)
                retry_after = await self.regulator.failed(attempt)
                if retry_after:
                    return self._too_many(request, retry_after, next_path, username)
                runtime.metrics.login("local", "failed")
                return self._page(
                    request,
                    status=401,
                    error="Wrong username or password.",
                    next_path=next_path,
                    username=username,
                )
            await self.regulator.succeeded(attempt)
            sid, opened = await store.open_session(
                runtime.db,
                user.username,
                lifetime=runtime.settings.auth.session_lifetime,
                client=client,
            )
            await audit.record(
                runtime.db, "login", username=user.username, client=client, provider="local"
            )
            await runtime.directory.refresh()
        except HashingBusy as exc:
            logger.info("login refused, the worker is busy: %s (%s)", exc, client)
            runtime.metrics.login("local", "busy")
            response = self._page(
                request,
                status=503,
                error="Sign-in is busy right now. Please try again in a moment.",
                next_path=next_path,
                username=username,
            )
            response.headers["retry-after"] = str(BUSY_RETRY_AFTER)
            return response
        except (DatabaseUnavailable, UserError) as exc:
            logger.error("login unavailable: %s", exc)
            runtime.metrics.login("local", "unavailable")
            if isinstance(exc, DatabaseUnavailable):
                runtime.metrics.database_error("sign-in")
            return self._page(
                request,
                status=503,
                error="Sign-in is unavailable right now: the portal cannot reach its database.",
                next_path=next_path,
                username=username,
            )
        logger.info("login: %s from %s", user.username, client)
        runtime.metrics.login("local", "success")
        response = RedirectResponse(next_path, status_code=303, headers=NO_STORE)
        issue_session(runtime, response, opened.username, sid, uid=opened.uid)
        return response

    def _too_many(
        self, request: Request, retry_after: int, next_path: str, username: str = ""
    ) -> Response:
        self.runtime.metrics.login("local", "banned")
        minutes = max(1, -(-retry_after // 60))
        response = self._page(
            request,
            status=429,
            error=f"Too many failed sign-ins. Try again in {minutes} minute"
            + ("s." if minutes > 1 else "."),
            next_path=next_path,
            username=username,
        )
        response.headers["retry-after"] = str(retry_after)
        return response

    async def logout_page(self, request: Request) -> Response:
        """`GET /auth/logout` is 405: signing out is a form posted with its CSRF token, so that
        no link or image on another page can sign anyone out. The page says so and offers the
        button (a CSRF cookie comes with it when the browser holds none)."""
        allow = {**NO_STORE, "allow": "POST"}
        if not wants_html(request.scope):
            return JSONResponse({"error": "method_not_allowed"}, status_code=405, headers=allow)
        context, cookie = frame_of(self.runtime).context(request.scope)
        page = render(
            "logout.html",
            status=405,
            heading="Sign out with the button",
            text="Signing out is a button, not an address to open, so that no link or page "
            "elsewhere can sign you out without you asking.",
            **context,
        )
        response = HTMLResponse(page, status_code=405, headers=allow)
        if cookie is not None:
            response.headers.append("set-cookie", cookie)
        return response

    async def logout(self, request: Request) -> Response:
        runtime = self.runtime
        form = await read_form(request)
        if form is None or not runtime.csrf.check(
            request.headers.get("cookie", ""), form.get("csrf_token")
        ):
            return self._page(
                request, status=403, error="Your sign-out form expired. Please try again."
            )
        response = RedirectResponse("/auth/login", status_code=303, headers=NO_STORE)
        response.headers.append("set-cookie", runtime.cookie.clear().decode())
        user = request.scope.get("user")
        if isinstance(user, PortalUser) and user.via == "session":
            try:
                await store.revoke_session(runtime.db, user.sid)
                await audit.record(
                    runtime.db, "logout", username=user.username, client=client_address(request)
                )
                await runtime.directory.refresh()
            except DatabaseUnavailable as exc:
                # Refused here at once; recorded for every worker when the database is back.
                runtime.directory.revoke_here(user.sid)
                runtime.metrics.database_error("sign-out")
                logger.error("logout could not record revocation of %s… yet: %s", user.sid[:6], exc)
            logger.info("logout: %s", user.username)
        return response
