"""The route table (routes.py): the only place that decides what answers a path."""

from __future__ import annotations

import pytest

from portal_asgi.routes import Route, RouteTable


async def _app(scope: object, receive: object, send: object) -> None:  # never called here
    raise AssertionError


def table(*paths: str) -> RouteTable:
    mounts = [Route("product", _app, lambda: "ea", path=path) for path in paths]
    return RouteTable(pages=_app, catalogue_level="stable", mounts=mounts)


@pytest.mark.parametrize(
    ("path", "kind", "mount"),
    [
        ("/", "page", ""),
        ("/auth/login", "page", ""),
        ("/healthz", "page", ""),
        ("/static/portal.css", "page", ""),
        ("/.well-known/jwks.json", "page", ""),
        ("/admin/users", "page", ""),
        ("/authx", "missing", ""),
        ("/disagg/v1/", "product", "/disagg/v1"),
        ("/disagg/v1/run/x", "product", "/disagg/v1"),
        ("/disagg/v2/run", "product", "/disagg"),
        ("/disagg/v1x/run", "product", "/disagg"),
        ("/disagg/v1", "bare", "/disagg/v1"),
        ("/disagg", "bare", "/disagg"),
        ("/Disagg/v1/", "missing", ""),
        ("//disagg/v1/", "missing", ""),
        ("/other/", "missing", ""),
    ],
)
def test_longest_mount_path_at_a_segment_boundary_wins(path: str, kind: str, mount: str) -> None:
    route = table("/disagg", "/disagg/v1", "/seistech").match(path)
    assert route.kind == kind and route.path == mount


def test_the_order_of_mounts_does_not_matter() -> None:
    for order in (("/a", "/a/b", "/a/b/c"), ("/a/b/c", "/a", "/a/b")):
        routes = table(*order)
        assert routes.match("/a/b/c/d").path == "/a/b/c"
        assert routes.match("/a/b/x").path == "/a/b"
        assert routes.match("/a/x").path == "/a"


def test_forms_are_the_auth_pages_only_and_the_catalogue_needs_a_level() -> None:
    routes = table("/x")
    assert routes.match("/auth/logout").forms and not routes.match("/healthz").forms
    assert routes.match("/").required() == "stable"
    assert routes.match("/healthz").required() == "public"


def test_a_lookup_probes_segments_not_mounts() -> None:
    """200 mounts: the last one in the file is found without trying the other 199."""
    paths = [f"/p{i:03d}" for i in range(200)]
    routes = table(*paths)
    probes: list[str] = []

    class Counting(dict[str, Route]):
        def get(self, key: str, default: Route | None = None) -> Route | None:  # type: ignore[override]
            probes.append(key)
            return super().get(key, default)

    routes.mounts = Counting(routes.mounts)
    assert routes.match("/p199/deep/path/x").path == "/p199"
    assert len(probes) <= 4
