"""The level matrix (access.py) and the answers to a caller who may not pass (answers.py), against
a real portal over real HTTP: every level of user against every level of mount, browser and API
style, cookie and Bearer (the levels, answers and URLs of docs/architecture.md)."""

from __future__ import annotations

import pytest

from .helpers import HTML, JSON, Credentials, assert_needs_login, bearer, get
from .servers import LEVELS, RunningPortal, may_open, mount_path

MOUNT_LEVELS = ("public", *LEVELS)
# (user level or None for anonymous, how the credential travels)
CALLERS = [(None, "none")] + [(level, via) for level in LEVELS for via in ("cookie", "bearer")]


@pytest.mark.parametrize("mount", MOUNT_LEVELS)
@pytest.mark.parametrize(
    ("level", "via"), CALLERS, ids=[f"{lv or 'anonymous'}-{v}" for lv, v in CALLERS]
)
@pytest.mark.parametrize("style", ["browser", "api"])
def test_access_matrix(
    portal: RunningPortal,
    level_credentials: Credentials,
    style: str,
    level: str | None,
    via: str,
    mount: str,
) -> None:
    browser = style == "browser"
    root = mount_path(mount)
    path = f"{root}/" if browser else f"{root}/whoami"
    creds = level_credentials(level, via)
    response = get(portal, path, HTML if browser else JSON, creds)
    username = f"user-{level}" if level else ""
    if may_open(level, mount):
        assert response.status_code == 200, response.text
        if browser:
            assert f"Hello, {username or 'visitor'}" in response.text
            assert f"<code>{root}</code>" in response.text
            assert f'<span class="level level-{mount}">{mount}</span>.' in response.text
        else:
            assert response.json() == {
                "user": username,
                "email": f"{level}@example.org" if level else "",
                "level": level or "",
                "root": root,
                "mount_level": mount,
                "path": "/whoami",
            }
    elif level is None:
        assert_needs_login(response, browser=browser, path=path)
    else:
        assert response.status_code == 403, response.text
        assert "Hello" not in response.text
        if browser:
            assert response.headers["content-type"].startswith("text/html")
            assert "Not for your level" in response.text
        else:
            assert response.headers["content-type"].startswith("application/json")
            assert response.json() == {"error": "forbidden"}


@pytest.mark.parametrize("mount", LEVELS)
def test_forbidden_answer_follows_accept_not_credential(
    portal: RunningPortal, level_tokens: dict[str, str], mount: str
) -> None:
    """403 is an HTML page for a client that asks for HTML, even with a Bearer token."""
    if mount == "stable":
        return
    response = get(portal, f"{mount_path(mount)}/whoami", HTML, bearer(level_tokens["stable"]))
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("text/html")


def test_anonymous_browser_redirect_keeps_the_query(portal: RunningPortal) -> None:
    response = get(portal, "/ea/whoami?x=1&y=two", HTML)
    assert response.status_code == 303
    assert response.headers["location"] == "/auth/login?next=/ea/whoami%3Fx%3D1%26y%3Dtwo"


@pytest.mark.parametrize(
    ("method", "accept"),
    [("GET", "*/*"), ("GET", "application/json"), ("GET", ""), ("POST", "text/html")],
)
def test_anonymous_non_browser_gets_401(portal: RunningPortal, method: str, accept: str) -> None:
    """Only a GET or HEAD that names text/html is a browser navigation (`*/*` alone is not)."""
    with portal.client() as client:
        response = client.request(method, "/ea/whoami", headers={"accept": accept})
    assert_needs_login(response, browser=False, path="/ea/whoami")


def test_anonymous_browser_head_is_redirected(portal: RunningPortal) -> None:
    with portal.client() as client:
        response = client.head("/devel/", headers=HTML)
    assert response.status_code == 303
    assert response.headers["location"] == "/auth/login?next=/devel/"


def test_post_reaches_the_product_at_its_level(
    portal: RunningPortal, level_tokens: dict[str, str]
) -> None:
    with portal.client() as client:
        ok = client.post("/ea/echo", content=b"hello", headers=bearer(level_tokens["ea"]))
        low = client.post("/ea/echo", content=b"hello", headers=bearer(level_tokens["stable"]))
    assert ok.status_code == 200
    assert ok.json()["received"] == "hello"
    assert ok.json()["user"] == "user-ea"
    assert low.status_code == 403


def test_unknown_paths_are_404(portal: RunningPortal, level_tokens: dict[str, str]) -> None:
    for path in ("/nothing-here", "/disagg/", "/disagg/v3/", "/eaa/whoami", "/STABLE/"):
        response = get(portal, path, JSON, bearer(level_tokens["admin"]))
        assert response.status_code == 404, path
        assert response.json() == {"error": "not_found"}


def test_two_versions_at_two_levels(portal: RunningPortal, level_tokens: dict[str, str]) -> None:
    stable, ea = bearer(level_tokens["stable"]), bearer(level_tokens["ea"])
    assert get(portal, "/disagg/v1/", JSON, stable).json() == {"product": "disagg", "version": "v1"}
    assert get(portal, "/disagg/v2/", JSON, stable).status_code == 403
    assert get(portal, "/disagg/v1/", JSON, ea).json()["version"] == "v1"
    assert get(portal, "/disagg/v2/", JSON, ea).json() == {"product": "disagg", "version": "v2"}
    assert_needs_login(get(portal, "/disagg/v1/", JSON), browser=False, path="/disagg/v1/")
