"""Cross-site request blocking for every mount (docs/security.md): an unsafe request that the
session cookie authenticates is refused with 403 when the browser says it comes from another
site (`Sec-Fetch-Site`), or, from a browser without Fetch Metadata, when its `Origin` is not the
portal's. Products get this without a line of code; a mount serving a cross-site API with Bearer
tokens only may opt out (`csrf = false`).

Bearer-authenticated requests are never blocked: a cross-site page cannot make a browser attach
an `Authorization` header. The portal's own `/auth/` forms are checked whoever is signed in,
against login CSRF (forcing a victim into the attacker's account).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from .answers import header, refuse
from .origins import normalise_origin
from .types import ASGIApp, Receive, Scope, Send
from .user import PortalUser

logger = logging.getLogger("portal_asgi.crosssite")

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
# `same-site` is refused too: a sibling subdomain is another party as far as the portal knows
_ALLOWED_SITES = frozenset({"same-origin", "none"})


class MountTable:
    """Which mount a path falls in, by the router's rule: the longest mount path that is the
    path or a prefix of it at a `/`. PathCheck has already refused every path that could be read
    two ways, so this agrees with the router's choice."""

    def __init__(self, mounts: Iterable[tuple[str, bool]]) -> None:
        self.mounts = sorted(mounts, key=lambda item: len(item[0]), reverse=True)

    def protected(self, path: str) -> bool:
        for mount, protect in self.mounts:
            if path == mount or path.startswith(mount + "/"):
                return protect
        return True  # the portal's own pages, and paths nothing serves


def is_cross_site(scope: Scope, origin: str) -> bool:
    site = header(scope, b"sec-fetch-site").strip().lower()
    if site:
        return site not in _ALLOWED_SITES
    sent = header(scope, b"origin").strip()
    if sent:
        # `null` and anything unparsable normalise to "", which is never the portal's origin
        return normalise_origin(sent) != origin
    return False  # neither: not a browser (or one older than Origin on POST), judged on credentials


class CrossSiteCheck:
    def __init__(self, app: ASGIApp, *, origin: str, mounts: MountTable) -> None:
        self.app = app
        self.origin = normalise_origin(origin)
        self.mounts = mounts

    def applies(self, scope: Scope) -> bool:
        if scope["type"] != "http" or scope.get("method", "GET") in SAFE_METHODS:
            return False
        path = str(scope.get("path", ""))
        if path.startswith("/auth/"):
            return True
        user = scope.get("user")
        if not (isinstance(user, PortalUser) and user.via == "session"):
            return False
        return self.mounts.protected(path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.applies(scope) and is_cross_site(scope, self.origin):
            logger.info(
                "cross-site %s %s refused (Sec-Fetch-Site %r, Origin %r)",
                scope.get("method"),
                scope.get("path"),
                header(scope, b"sec-fetch-site"),
                header(scope, b"origin"),
            )
            await refuse(scope, receive, send, 403, detail="This request came from another site.")
            return
        await self.app(scope, receive, send)
