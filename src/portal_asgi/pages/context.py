"""What every portal page template receives."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from ..runtime import Runtime
from ..user import PortalUser


def page_context(runtime: Runtime, request: Request, **extra: Any) -> dict[str, Any]:
    user = request.scope.get("user")
    csrf_value = runtime.csrf.cookie_value(request.headers.get("cookie", ""))
    return {
        "portal_title": runtime.settings.portal.title,
        "user": user if isinstance(user, PortalUser) else None,
        "csrf_token": runtime.csrf.token_for(csrf_value) if csrf_value else "",
        **extra,
    }
