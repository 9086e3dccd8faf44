from __future__ import annotations

from collections.abc import Iterator

import pytest

from ..servers import RunningPortal, default_mounts, serve

ECHO_MOUNTS = """
[[mount]]
path = "/echo"
app = "tests.security.echo_products:wsgi"
level = "stable"

[[mount]]
path = "/echo-asgi"
app = "tests.security.echo_products:asgi"
level = "stable"

[[mount]]
path = "/api"
app = "tests.security.echo_products:asgi"
level = "stable"
csrf = false

[[mount]]
path = "/api/strict"
app = "tests.security.echo_products:asgi"
level = "stable"

[[mount]]
path = "/open-echo"
app = "tests.security.echo_products:wsgi"
level = "public"

[[mount]]
path = "/ws-echo"
app = "products.echo.app:app"
level = "ea"
"""


def start(
    tmp: object, security: str = "", *, users: bool = True, **options: object
) -> Iterator[RunningPortal]:
    mounts = default_mounts() + ECHO_MOUNTS + (f"\n[security]\n{security}\n" if security else "")
    with serve(tmp, mounts=mounts, proxy_headers=False, **options) as running:  # type: ignore[arg-type]
        if users:
            running.add_level_users()
        yield running


@pytest.fixture(scope="session")
def secure_portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPortal]:
    """The test products, header-echoing products, and an opted-out mount; no proxy trusted."""
    yield from start(tmp_path_factory.mktemp("secure"))


@pytest.fixture(scope="session")
def proxied_portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPortal]:
    """The same, behind a trusted proxy on 127.0.0.1 (the test client plays the proxy)."""
    yield from start(tmp_path_factory.mktemp("proxied"), 'trusted_proxies = ["127.0.0.1"]')
