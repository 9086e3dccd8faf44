"""`/`: every product the caller may open, with its level: grouped by level, the highest first,
and by title within a level (a product's path says nothing to a person)."""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from ..answers import wants_html
from ..runtime import Runtime
from ..user import PortalUser
from .context import frame_of, page_context
from .templates import render


@dataclass(frozen=True, slots=True)
class Group:
    """The products of one level, for the page."""

    level: str
    products: list[dict[str, str]] = field(default_factory=list)


class Catalogue:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def entries(self, user: PortalUser | None) -> list[dict[str, str]]:
        """What `user` may open: the highest level first, then by title (then path, when two
        products share a title)."""
        runtime = self.runtime
        levels = runtime.levels
        held = user.level if user else None
        rows = []
        for product in runtime.products:
            level = runtime.policy.level(product.mount.path)
            if levels.allows(held, level):
                rows.append(
                    {
                        "path": product.mount.path + "/",
                        "title": product.mount.title,
                        "description": product.mount.description,
                        "level": level,
                    }
                )
        rows.sort(
            key=lambda row: (-levels.rank(row["level"]), row["title"].casefold(), row["path"])
        )
        return rows

    @staticmethod
    def groups(entries: list[dict[str, str]]) -> list[Group]:
        """`entries` (already in order) cut into one group per level."""
        groups: list[Group] = []
        for row in entries:
            if not groups or groups[-1].level != row["level"]:
                groups.append(Group(row["level"]))
            groups[-1].products.append(row)
        return groups

    async def endpoint(self, request: Request) -> Response:
        user = request.scope.get("user")
        portal_user = user if isinstance(user, PortalUser) else None
        entries = self.entries(portal_user)
        if not wants_html(request.scope):
            return JSONResponse({"products": entries})
        # the frame's token: a fresh CSRF cookie when the browser's expired, or Sign out would fail
        frame, cookie = frame_of(self.runtime).context(request.scope)
        context = page_context(
            self.runtime, request, products=entries, groups=self.groups(entries), **frame
        )
        page = render("catalogue.html", **context)
        response = HTMLResponse(page, headers={"cache-control": "no-store"})
        if cookie is not None:
            response.headers.append("set-cookie", cookie)
        return response
