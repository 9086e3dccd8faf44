"""Helpers for Flask products (optional: a product needs none of them to be protected).

from portal_asgi.flask import current_user, requires_level
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from .user import PortalUser

F = TypeVar("F", bound=Callable[..., Any])


def current_user() -> PortalUser | None:
    """The portal user calling this request, or None (a `public` mount, anonymous caller)."""
    from flask import request

    scope = request.environ.get("asgi.scope") or {}
    user = scope.get("user")
    return user if isinstance(user, PortalUser) else None


def mount_level() -> str | None:
    """The level of the mount this request came through."""
    from flask import request

    scope = request.environ.get("asgi.scope") or {}
    portal = scope.get("portal") or {}
    level = portal.get("level")
    return str(level) if level else None


def requires_level(level: str) -> Callable[[F], F]:
    """A finer rule inside a product: this view needs `level` (an `access:` scope) or answers 403."""

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            from flask import abort, request

            scope = request.environ.get("asgi.scope") or {}
            auth = scope.get("auth")
            scopes = getattr(auth, "scopes", [])
            if not any(s == level or s.endswith(":" + level) for s in scopes):
                abort(403)
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
