"""Cross-site request blocking: an unsafe request that the session cookie authenticates is
refused with 403 when the browser says it comes from another site (`Sec-Fetch-Site`), or, from a
browser without Fetch Metadata, when its `Origin` is not the portal's. Every mount gets this
without a line of code; a mount serving a cross-site API with Bearer tokens only may opt out
(`csrf = false`). The route that was chosen for the request decides whether it applies
(`guard.py`): there is no second path matcher here.

Bearer-authenticated requests are never blocked: a cross-site page cannot make a browser attach
an `Authorization` header. The portal's own `/auth/` forms are checked whoever is signed in,
against login CSRF (forcing a victim into the attacker's account).
"""

from __future__ import annotations

from ..answers import header
from ..types import Scope
from ..user import PortalUser
from .origins import normalise_origin

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
# `same-site` is refused too: a sibling subdomain is another party as far as the portal knows
_ALLOWED_SITES = frozenset({"same-origin", "none"})


def is_cross_site(scope: Scope, origin: str) -> bool:
    site = header(scope, b"sec-fetch-site").strip().lower()
    if site:
        return site not in _ALLOWED_SITES
    sent = header(scope, b"origin").strip()
    if sent:
        # `null` and anything unparsable normalise to "", which is never the portal's origin
        return normalise_origin(sent) != origin
    return False  # neither: not a browser (or one older than Origin on POST), judged on credentials


def on_session(scope: Scope) -> bool:
    """The session cookie speaks for this request (not a Bearer token, not nobody)."""
    user = scope.get("user")
    return isinstance(user, PortalUser) and user.via == "session"
