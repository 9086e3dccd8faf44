"""The product catalogue at `/` (pages/catalogue.py): exactly the mounts the caller's level opens,
as JSON and as a page, on a real portal over real HTTP."""

from __future__ import annotations

import re

import pytest

from .helpers import HTML, JSON, Credentials, assert_needs_login, get
from .servers import LEVELS, RunningPortal, may_open

# Every mount of the test portal (tests/servers.py) and its level.
CATALOGUE = {
    "/public": "public",
    "/stable": "stable",
    "/ea": "ea",
    "/devel": "devel",
    "/top": "admin",
    "/dashboard": "ea",
    "/disagg/v1": "stable",
    "/disagg/v2": "ea",
}


def test_catalogue_needs_login(portal: RunningPortal) -> None:
    assert_needs_login(get(portal, "/", HTML), browser=True, path="/")
    assert_needs_login(get(portal, "/", JSON), browser=False, path="/")


@pytest.mark.parametrize("via", ["cookie", "bearer"])
@pytest.mark.parametrize("level", LEVELS)
def test_catalogue_lists_exactly_what_the_level_opens(
    portal: RunningPortal, level_credentials: Credentials, level: str, via: str
) -> None:
    creds = level_credentials(level, via)
    expected = {
        f"{path}/": required for path, required in CATALOGUE.items() if may_open(level, required)
    }
    listed = get(portal, "/", JSON, creds)
    assert listed.status_code == 200
    assert {row["path"]: row["level"] for row in listed.json()["products"]} == expected
    page = get(portal, "/", HTML, creds)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert set(re.findall(r'<a href="([^"]+)">', page.text)) == set(expected)
    for path, required in expected.items():
        assert f'<span class="tile-path">{path}</span>' in page.text
        assert re.search(rf'class="level level-{required} level-rank-\d"', page.text)
    # and everything it lists really opens
    for path in expected:
        assert get(portal, path, JSON, creds).status_code == 200, path


def test_catalogue_follows_the_policy_table(portal: RunningPortal) -> None:
    """The mounts the portal serves are the ones the catalogue knows: nothing is left out."""
    runtime = portal.portal.runtime
    assert runtime is not None
    assert {product.mount.path: product.mount.level for product in runtime.products} == CATALOGUE
