"""`/`: every product the caller may open, with its level."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from ..answers import wants_html
from ..runtime import Runtime
from ..user import PortalUser
from .context import page_context
from .templates import render


class Catalogue:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def entries(self, user: PortalUser | None) -> list[dict[str, str]]:
        runtime = self.runtime
        held = user.level if user else None
        rows = []
        for product in sorted(runtime.products, key=lambda p: p.mount.path):
            level = runtime.policy.level(product.mount.path)
            if runtime.levels.allows(held, level):
                rows.append(
                    {
                        "path": product.mount.path + "/",
                        "title": product.mount.title,
                        "description": product.mount.description,
                        "level": level,
                    }
                )
        return rows

    async def endpoint(self, request: Request) -> Response:
        user = request.scope.get("user")
        portal_user = user if isinstance(user, PortalUser) else None
        entries = self.entries(portal_user)
        if not wants_html(request.scope):
            return JSONResponse({"products": entries})
        context = page_context(self.runtime, request, products=entries)
        return HTMLResponse(
            render("catalogue.html", **context), headers={"cache-control": "no-store"}
        )
