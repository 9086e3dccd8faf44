"""The route table: the one place that decides what answers a path. The portal's own pages own
`/` and the reserved prefixes (`/auth`, `/admin`, `/healthz`, `/readyz`, `/metrics`, `/static`,
`/.well-known`), which no mount may use; every other path belongs to the mount with the longest
path that is the path itself or a prefix of it at a `/`, whatever the order of the mounts in
settings.toml. A lookup costs one dictionary probe per segment of the path, not one per mount.

A mount's bare path (`/disagg/v1` without its slash) is redirected to its slash form, so it is
never taken for a path inside a shorter mount (`/disagg`). Paths that could be read two ways
were refused before this table is asked (`middleware/paths.py`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from .settings import RESERVED_PATHS
from .types import ASGIApp

Kind = Literal["page", "product", "bare", "missing"]


@dataclass(frozen=True, slots=True)
class Route:
    kind: Kind
    app: ASGIApp | None
    required: Callable[[], str]  # the level it requires now (live: overrides apply at once)
    path: str = ""  # the mount's path, for products
    csrf: bool = True  # cross-site blocking of unsafe requests on the session cookie
    forms: bool = False  # the portal's sign-in forms: unsafe requests checked whoever calls


def _public() -> str:
    return "public"


class RouteTable:
    def __init__(
        self,
        *,
        pages: ASGIApp,
        catalogue_level: str,
        mounts: Iterable[Route],
    ) -> None:
        self.pages = Route("page", pages, _public)
        self.forms = Route("page", pages, _public, forms=True)
        self.catalogue = Route("page", pages, lambda: catalogue_level)
        self.missing = Route("missing", None, _public)
        self.reserved = frozenset(RESERVED_PATHS)
        self.mounts: dict[str, Route] = {route.path: route for route in mounts}
        self.bare: dict[str, Route] = {
            path: Route("bare", None, _public, path=path) for path in self.mounts
        }

    def match(self, path: str) -> Route:
        if path == "/":
            return self.catalogue
        slash = path.find("/", 1)
        first = path if slash < 0 else path[:slash]
        if first in self.reserved:
            return self.forms if first == "/auth" else self.pages
        mounts = self.mounts
        if path in mounts:
            return self.bare[path]
        end = path.rfind("/")
        while end > 0:
            route = mounts.get(path[:end])
            if route is not None:
                return route
            end = path.rfind("/", 0, end)
        return self.missing
