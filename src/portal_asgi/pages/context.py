"""What every portal page template receives."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from ..runtime import Runtime
from ..user import PortalUser
from .frame import Frame


def frame_of(runtime: Runtime) -> Frame:
    """The frame of `runtime`'s pages and refusals (pages/frame.py)."""
    return Frame(title=runtime.settings.portal.title, levels=runtime.levels, csrf=runtime.csrf)


def page_context(runtime: Runtime, request: Request, **extra: Any) -> dict[str, Any]:
    user = request.scope.get("user")
    csrf_value = runtime.csrf.cookie_value(request.headers.get("cookie", ""))
    frame = frame_of(runtime)
    return {
        "portal_title": runtime.settings.portal.title,
        "user": user if isinstance(user, PortalUser) else None,
        "csrf_token": runtime.csrf.token_for(csrf_value) if csrf_value else "",
        # `{{ badge(level) }}`: the CSS classes of a level's badge, coloured by rank;
        # `{{ colour(level) }}`: the level's colour classes alone, for anything else drawn in it
        "badge": frame.badge,
        "colour": frame.colour,
        "admin_level": runtime.levels.highest,  # its users get the header's link to /admin
        **extra,
    }
