"""What every section of the admin area shares: the admin service's context, the acting admin,
the admin layout (tabs, notice, error) and re-authentication before the sensitive actions.

Re-authentication, without JavaScript: when the service refuses an action for want of a recent
sign-in (`ReauthenticationRequired`), the answer is a form asking for the admin's password that
posts the same action again, its fields carried along, plus `reauth_password`. The action
checks that password first (`service.reauthenticate`: regulated like a sign-in, audited) and
then goes on, so one more click finishes what was asked. Behind an OIDC provider there is no
password to ask for: the admin signs out and in again (a fresh sign-in counts), then repeats
the action.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..pages.forms import FormPages, client_address, sentence
from ..runtime import Runtime
from . import service
from .errors import AdminError, ReauthenticationRequired, TooManyAttempts

Endpoint = Callable[[Request], Awaitable[Response]]
EndpointSpec = tuple[str, Endpoint, list[str]]
PAGE_SIZE = 50
GET = ["GET", "HEAD"]
POST = ["POST"]
# fields of a posted form that are never carried into the re-authentication form
NOT_CARRIED = frozenset({"csrf_token", "reauth_password", "reauth_username"})


class Section(FormPages):
    heading = ""
    path = ""

    def __init__(self, runtime: Runtime, ctx: service.Context) -> None:
        super().__init__(runtime)
        self.ctx = ctx

    def endpoints(self) -> list[EndpointSpec]:
        raise NotImplementedError

    def actor(self, request: Request) -> service.Actor:
        return service.Actor.of(self.user(request), client_address(request))

    def admin_page(
        self, request: Request, template: str, *, status: int = 200, **context: Any
    ) -> Response:
        context.setdefault("heading", self.heading)
        context.setdefault("section", self.path)
        context.setdefault("all_levels", self.runtime.levels.names)
        context.setdefault("levels", self.runtime.levels.configured)
        return self.page(request, template, status=status, **context)

    async def sensitive(
        self,
        request: Request,
        fields: dict[str, str],
        what: str,
        back_url: str,
        run: Callable[[], Awaitable[Response]],
    ) -> Response:
        """`run` an action the service may refuse for want of a recent sign-in; the password of
        the re-authentication form, when posted along, is checked first."""
        password = fields.get("reauth_password")
        if password:
            try:
                await service.reauthenticate(self.ctx, self.actor(request), password)
            except TooManyAttempts as exc:
                response = self.reauth(request, fields, what, back_url, 429, sentence(exc))
                response.headers["retry-after"] = str(exc.retry_after)
                return response
            except AdminError as exc:
                return self.reauth(request, fields, what, back_url, exc.status, sentence(exc))
        try:
            return await run()
        except ReauthenticationRequired:
            return self.reauth(request, fields, what, back_url)

    def reauth(
        self,
        request: Request,
        fields: dict[str, str],
        what: str,
        back_url: str,
        status: int = 200,
        error: str = "",
    ) -> Response:
        """The form that asks for the admin's password and posts the action again."""
        oidc = self.runtime.oidc
        carried = [(k, v) for k, v in fields.items() if k not in NOT_CARRIED]
        return self.admin_page(
            request,
            "admin/reauth.html",
            status=status,
            heading="Confirm it is you",
            reauth_what=what,
            reauth_minutes=service.REAUTH_WINDOW // 60,
            reauth_error=error,
            reauth_action=request.url.path,
            reauth_fields=carried,
            reauth_provider=oidc.name if oidc is not None else "",
            back_url=back_url,
        )
