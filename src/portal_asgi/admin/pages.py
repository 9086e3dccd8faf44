"""`/admin`: the admin area's pages, server-rendered over the admin service (service.py), usable
without JavaScript. Every change is a form with a CSRF token, posted and answered 303 back to
the page it came from (pages/forms.py).

GET  /admin                      303 to /admin/users
     /admin/users ...            users: admin/users_page.py
     /admin/products ...         product levels: admin/products_page.py
     /admin/audit                the audit log (its CSV, /admin/audit.csv, is the API's)
     /admin/settings ...         the settings in force and their reload: admin/settings_page.py

The route table lets every caller reach `/admin` (it is a portal page), so the level is checked
here, by `AdminOnly` around every page: no identity is answered as anywhere else (303 to sign
in, or 401), any level but the highest gets the 403 page.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route, request_response

from ..answers import refuse
from ..pages.forms import NO_STORE, FormPages
from ..runtime import Runtime
from ..types import ASGIApp, Receive, Scope, Send
from ..user import PortalUser
from . import service
from .audit_page import AuditPage
from .products_page import ProductsPage
from .settings_page import SettingsPage
from .users_page import UsersPage

Endpoint = Callable[[Request], Awaitable[Response]]


class AdminOnly:
    """Pure ASGI: only a user at the highest level reaches the page inside."""

    def __init__(self, app: ASGIApp, pages: FormPages) -> None:
        self.app = app
        self.pages = pages

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        user = scope.get("user")
        levels = self.pages.runtime.levels
        if not isinstance(user, PortalUser):
            frame = self.pages.frame
            await refuse(scope, receive, send, 401, title=frame.title, frame=frame)
        elif not levels.allows(user.level, levels.highest):
            text = f"The admin area is for users at level {levels.highest}."
            refusal = self.pages.refusal(Request(scope), 403, "For administrators", text)
            await refusal(scope, receive, send)
        else:
            await self.app(scope, receive, send)


class AdminPages(FormPages):
    def __init__(self, runtime: Runtime, ctx: service.Context) -> None:
        super().__init__(runtime)
        self.ctx = ctx
        self.sections = (
            UsersPage(runtime, ctx),
            ProductsPage(runtime, ctx),
            AuditPage(runtime, ctx),
            SettingsPage(runtime, ctx),
        )

    def routes(self) -> list[Route]:
        routes = [Route("/admin", self.gate(self.home), methods=["GET", "HEAD"])]
        for section in self.sections:
            for path, endpoint, methods in section.endpoints():
                routes.append(Route(path, self.gate(endpoint), methods=methods))
        return routes

    def gate(self, endpoint: Endpoint) -> ASGIApp:
        return AdminOnly(request_response(endpoint), self)

    async def home(self, request: Request) -> Response:
        return RedirectResponse("/admin/users", 303, headers=NO_STORE)
