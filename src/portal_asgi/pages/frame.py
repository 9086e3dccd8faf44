"""What frames every portal page, refusals included: the portal's title, and for a signed-in user
the header with their name, their level and a Sign-out form; and the colour of a level's badge.

Nothing here touches the database: the user is the one identity put in `scope["user"]`, and the
Sign-out form's CSRF token is signed from the CSRF cookie the browser already holds (a fresh
cookie is handed out with the page when it holds none, so that the button always works).

Badges are coloured by a level's rank, since levels are configurable: `public` has its own
colour, and the signed-in levels take the palette in order from the lowest (`level-rank-1` ...
`level-rank-6`, then again from the first for a seventh level). portal.css draws the palette.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..csrf import CSRF
from ..levels import Levels
from ..types import Scope
from ..user import PortalUser

# colours in portal.css for the signed-in levels, from the lowest; then the palette repeats
PALETTE = 6


def level_classes(levels: Levels, level: str) -> str:
    """`level-<name> level-rank-<n>`: the colour of `level` (`n` 0 for public; no rank class
    for a level this portal does not know), for a badge or anything drawn in its colour."""
    rank = levels.rank(level)
    if rank < 0:
        return f"level-{level}"
    colour = 0 if rank == 0 else (rank - 1) % PALETTE + 1
    return f"level-{level} level-rank-{colour}"


def badge_class(levels: Levels, level: str) -> str:
    """The CSS classes of `level`'s badge: `level level-<name> level-rank-<n>`."""
    return "level " + level_classes(levels, level)


def signed_in(scope: Scope) -> PortalUser | None:
    user = scope.get("user")
    return user if isinstance(user, PortalUser) else None


def _cookie_header(scope: Scope) -> str:
    return "; ".join(
        value.decode("latin-1") for key, value in scope.get("headers", ()) if key == b"cookie"
    )


@dataclass(frozen=True, slots=True)
class Frame:
    title: str
    levels: Levels
    csrf: CSRF

    def badge(self, level: str) -> str:
        return badge_class(self.levels, level)

    def colour(self, level: str) -> str:
        return level_classes(self.levels, level)

    def csrf_token(self, scope: Scope) -> tuple[str, str | None]:
        """The token for the forms of a page answered to `scope`, and a Set-Cookie value when
        the browser holds no CSRF cookie yet (else None)."""
        value = self.csrf.cookie_value(_cookie_header(scope))
        cookie = None
        if value is None:
            value = self.csrf.new_value()
            cookie = self.csrf.set_cookie(value)
        return self.csrf.token_for(value), cookie

    def context(self, scope: Scope) -> tuple[dict[str, Any], str | None]:
        """The template context of the frame (`portal_title`, `user`, `csrf_token`, `badge`,
        `colour`, `admin_level`, as `page_context` gives every page),
        and a Set-Cookie value for a fresh CSRF cookie, or None. Only a user signed in by the
        session cookie gets a Sign-out form, so only they get a token."""
        user = signed_in(scope)
        token, cookie = "", None
        if user is not None and user.via == "session":
            token, cookie = self.csrf_token(scope)
        context = {
            "portal_title": self.title,
            "user": user,
            "csrf_token": token,
            "badge": self.badge,
            "colour": self.colour,
            "admin_level": self.levels.highest,  # its users get the header's link to /admin
        }
        return context, cookie
