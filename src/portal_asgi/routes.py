"""The route table: the one place that decides what answers a path. The portal's own pages own
`/` and the reserved prefixes (`/auth`, `/account`, `/admin`, `/healthz`, `/readyz`, `/metrics`,
`/static`, `/.well-known`), which no mount may use; every other path belongs to the mount with the longest
path that is the path itself or a prefix of it at a `/`, whatever the order of the mounts in
settings.toml. A lookup costs one dictionary probe per segment of the path, not one per mount.

A mount's bare path (`/disagg/v1` without its slash) is redirected to its slash form, so it is
never taken for a path inside a shorter mount (`/disagg`). Paths that could be read two ways
were refused before this table is asked (`middleware/paths.py`).

A mount with `rules` carries a route per rule: inside it, the path is read as the rules read it
(`rulepaths.py`: case folded, `;parameters` and trailing dots dropped, slashes merged) and the
rule with the longest path that is that path or a prefix of it at a `/` answers instead of the
mount: a product route that requires the rule's level, or for a blocked path a "missing" route
(404, after the mount's own level). A path there that could still be read two ways answers
400."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from . import rulepaths
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
    # open to a user who must change their password first: /account, /auth/logout, /static
    before_password_change: bool = False
    status: int = 404  # what a "missing" route answers
    rule: str = ""  # the rule path (inside the mount) this route stands for, "" for none
    # a mount's rules, by their key (rulepaths.py): the routes of its sub-paths
    rules: Mapping[str, Route] = field(default_factory=dict, compare=False, hash=False)


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
        self.account = Route("page", pages, lambda: catalogue_level, before_password_change=True)
        self.logout = Route("page", pages, _public, forms=True, before_password_change=True)
        self.static = Route("page", pages, _public, before_password_change=True)
        self.missing = Route("missing", None, _public)
        self.unreadable = Route("missing", None, _public, status=400)
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
            if first == "/auth":
                return self.logout if path == "/auth/logout" else self.forms
            if first == "/account":
                return self.account
            return self.static if first == "/static" else self.pages
        mounts = self.mounts
        if path in mounts:
            return self.bare[path]
        end = path.rfind("/")
        while end > 0:
            route = mounts.get(path[:end])
            if route is not None:
                return self._ruled(route, path[end:]) if route.rules else route
            end = path.rfind("/", 0, end)
        return self.missing

    def _ruled(self, mount: Route, inside: str) -> Route:
        """The route of the mount's rule with the longest path covering `inside`, else the
        mount's own; `inside` is the path within the mount (`/admin/x`)."""
        key = rulepaths.read(inside)
        if key is None:
            return self.unreadable
        rules = mount.rules
        while key:
            rule = rules.get(key)
            if rule is not None:
                return rule
            key = key[: key.rfind("/")]
        return mount
