"""The admin area's products: every mount with its kind, title, the level settings.toml gives
it and the level in force, and a form that overrides the level at run time (stored in the
database, applied by every worker within one feed interval, open WebSockets included) or
reverts it to the file's.

GET  /admin/products
POST /admin/products/level      `path`, `level` (empty: back to settings.toml's)
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ..exceptions import DatabaseUnavailable
from . import service
from .section import GET, POST, EndpointSpec, Section

NOTICES = {
    "level": "Level changed: every worker applies it within seconds.",
    "reverted": "Level reverted to what settings.toml says.",
}


class ProductsPage(Section):
    heading = "Products"
    path = "/admin/products"

    def endpoints(self) -> list[EndpointSpec]:
        return [
            ("/admin/products", self.show, GET),
            ("/admin/products/level", self.set_level, POST),
        ]

    async def show(self, request: Request) -> Response:
        return await self.render(request)

    async def render(self, request: Request, *, status: int = 200, error: str = "") -> Response:
        try:
            mounts = await service.list_mounts(self.ctx)
        except DatabaseUnavailable:
            return self.unavailable(request)
        return self.admin_page(
            request,
            "admin/products.html",
            status=status,
            mounts=mounts,
            notice=self.notice(request, NOTICES),
            error=error,
        )

    async def set_level(self, request: Request) -> Response:
        async def again(status: int, error: str) -> Response:
            return await self.render(request, status=status, error=error)

        async def run(fields: dict[str, str]) -> Response:
            level = fields.get("level") or None
            await service.set_mount_level(
                self.ctx, self.actor(request), fields.get("path", ""), level
            )
            return self.back("/admin/products", "level" if level else "reverted")

        return await self.handle(request, run, again)
