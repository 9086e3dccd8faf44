"""The admin area's settings: the file in force, when it was loaded, the last reload's error,
and a button that reloads it (reload.py: checked in full, swapped atomically, or refused with
the old settings kept).

GET  /admin/settings
POST /admin/settings/reload

Each worker reloads on its own: the page shows the state of the worker that answers, and the
file changing on disk (or SIGHUP) reaches the others within seconds.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from . import service
from .section import GET, POST, EndpointSpec, Section

NOTICES = {
    "reloaded": "Settings reloaded from the file.",
    "unchanged": "Settings read again: nothing changed.",
}


class SettingsPage(Section):
    heading = "Settings"
    path = "/admin/settings"

    def endpoints(self) -> list[EndpointSpec]:
        return [
            ("/admin/settings", self.show, GET),
            ("/admin/settings/reload", self.reload, POST),
        ]

    async def show(self, request: Request) -> Response:
        return self.render(request)

    def render(self, request: Request, *, status: int = 200, error: str = "") -> Response:
        runtime = self.runtime
        settings = runtime.settings
        reloader = runtime.reloader
        oidc = runtime.oidc
        return self.admin_page(
            request,
            "admin/settings.html",
            status=status,
            state=reloader.state if reloader is not None else None,
            file=settings.file,
            base_url=settings.portal.base_url,
            provider=f"OpenID Connect ({oidc.name})" if oidc is not None else "local accounts",
            mount_count=len(runtime.products),
            can_reload=reloader is not None,
            notice=self.notice(request, NOTICES),
            error=error,
        )

    async def reload(self, request: Request) -> Response:
        async def again(status: int, error: str) -> Response:
            return self.render(request, status=status, error=error)

        async def run(fields: dict[str, str]) -> Response:
            result = await service.reload_settings(self.ctx, self.actor(request))
            if not result.applied:
                return self.render(request, status=422, error=f"Reload refused: {result.error}")
            return self.back("/admin/settings", "reloaded" if result.changes else "unchanged")

        return await self.handle(request, run, again)
