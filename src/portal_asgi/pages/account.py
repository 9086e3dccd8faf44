"""`/account`: the signed-in user's own level, sessions, API tokens and password.

GET  /account                    the page
POST /account/password           change password (local users; the current one required)
POST /account/sessions/revoke    end one of their sessions or API tokens (`id`)
POST /account/sign-out-others    end every other session and API token of theirs
POST /account/tokens             mint an API token (`label`, `ttl`), shown once

The route table requires a signed-in user here (the lowest level) and keeps this page open to a
user who must change their password first: everything else sends them here until they do.
Every operation is the admin service's (admin/service.py), which audits it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from ..admin import service
from ..admin.errors import NotFound
from ..exceptions import DatabaseUnavailable
from ..runtime import Runtime
from .forms import NO_STORE, TOKEN_LIFETIMES, FormPages, client_address

NOTICES = {
    "password": "Your password is changed.",
    "revoked": "Done: that session or token no longer works.",
    "others": "Every other browser and API token of yours is signed out.",
}


class AccountPages(FormPages):
    def __init__(self, runtime: Runtime, ctx: service.Context) -> None:
        super().__init__(runtime)
        self.ctx = ctx

    def routes(self) -> list[Route]:
        return [
            Route("/account", self.show, methods=["GET", "HEAD"]),
            Route("/account/password", self.change_password, methods=["POST"]),
            Route("/account/sessions/revoke", self.revoke, methods=["POST"]),
            Route("/account/sign-out-others", self.sign_out_others, methods=["POST"]),
            Route("/account/tokens", self.mint, methods=["POST"]),
        ]

    def actor(self, request: Request) -> service.Actor:
        return service.Actor.of(self.user(request), client_address(request))

    async def render(
        self, request: Request, *, status: int = 200, error: str = "", **extra: Any
    ) -> Response:
        """The account page (or, with `secret`, the secret just minted, once)."""
        user = self.user(request)
        try:
            detail = await service.get_user(self.ctx, user.username)
        except NotFound:
            # a provider's machine client: a token, but no account of its own here
            return self.refusal(
                request, 404, "No account here", "This credential has no account on the portal."
            )
        except DatabaseUnavailable:
            return self.unavailable(request)
        oidc = self.runtime.oidc
        levels = self.runtime.levels
        return self.page(
            request,
            "account.html",
            status=status,
            account=detail.user,
            browser_sessions=detail.sessions,
            api_tokens=detail.tokens,
            session_count=len(detail.sessions),
            token_count=len(detail.tokens),
            current_sid=user.sid if user.via == "session" else "",
            local=detail.user.provider == "local" and oidc is None,
            provider_name=oidc.name if oidc is not None else "your identity provider",
            reachable=[name for name in levels.configured if levels.allows(user.level, name)],
            min_password=service.MIN_PASSWORD,
            ttls=TOKEN_LIFETIMES,
            notice=self.notice(request, NOTICES),
            error=error,
            **extra,
        )

    async def show(self, request: Request) -> Response:
        return await self.render(request)

    async def change(
        self, request: Request, run: Callable[[dict[str, str]], Awaitable[Response]]
    ) -> Response:
        async def again(status: int, error: str) -> Response:
            return await self.render(request, status=status, error=error)

        return await self.handle(request, run, again)

    async def change_password(self, request: Request) -> Response:
        async def run(fields: dict[str, str]) -> Response:
            new = fields.get("new", "")
            if new != fields.get("repeat", ""):
                return await self.render(
                    request, status=422, error="The two new passwords differ: type them again."
                )
            await service.change_password(
                self.ctx, self.actor(request), fields.get("current", ""), new
            )
            return self.back("/account", "password")

        return await self.change(request, run)

    async def revoke(self, request: Request) -> Response:
        async def run(fields: dict[str, str]) -> Response:
            user = self.user(request)
            found = await service.revoke_session(
                self.ctx, self.actor(request), fields.get("id", ""), owner=user.username
            )
            if user.via == "session" and found.id == user.sid:
                # this browser's own session: signed out here too
                response = RedirectResponse("/auth/login", 303, headers=NO_STORE)
                response.headers.append("set-cookie", self.runtime.cookie.clear().decode())
                return response
            return self.back("/account", "revoked")

        return await self.change(request, run)

    async def sign_out_others(self, request: Request) -> Response:
        async def run(fields: dict[str, str]) -> Response:
            await service.sign_out_other_sessions(self.ctx, self.actor(request))
            return self.back("/account", "others")

        return await self.change(request, run)

    async def mint(self, request: Request) -> Response:
        async def run(fields: dict[str, str]) -> Response:
            user = self.user(request)
            minted = await service.mint_token(
                self.ctx,
                self.actor(request),
                user.username,
                label=fields.get("label", "").strip(),
                ttl=fields.get("ttl") or None,
            )
            if minted.label:
                text = f"“{minted.label}” opens what your level opens."
            else:
                text = "It opens what your level opens."
            shown = {
                "heading": "Your new API token",
                "text": text + " Send it as Authorization: Bearer <token>; revoke it here "
                "when it is no longer needed.",
                "value": minted.token,
                "expires": minted.expires_at,
                "back": "/account#tokens",
            }
            return await self.render(request, shown=shown)

        return await self.change(request, run)
