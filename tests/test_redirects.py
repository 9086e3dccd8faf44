"""`next=` after login: only a same-origin path survives, everything else lands on `/`, both in
`portal_asgi.redirects.safe_next` and through the real login form of a running portal."""

from __future__ import annotations

import re

import httpx2
import pytest

from portal_asgi.redirects import safe_next

from .helpers import csrf_token
from .servers import RunningPortal, password_for

HOSTILE = [
    "//evil.com",
    "//evil.com/path",
    "///evil.com",
    "////evil.com",
    "https://evil.com",
    "http://evil.com/",
    "https:evil.com",
    "HTTPS://evil.com",
    "/\\evil.com",
    "/\\\\evil.com",
    "\\\\evil.com",
    "\\/evil.com",
    "/ea/\\evil.com",
    "javascript:alert(1)",
    "JavaScript:alert(1)",
    " javascript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "%2F%2Fevil.com",
    "%2f%2fevil.com",
    "evil.com",
    "ea/whoami",
    "/\t/evil.com",
    "/\n/evil.com",
    "/\r\n/evil.com",
    "\t//evil.com",
    "\n//evil.com",
    " //evil.com",
    "/ /evil.com",
    "/\x00/evil.com",
    "/\x7f/evil.com",
    "/ea\r\nSet-Cookie: x=1",
    "/auth/login",
    "/auth/logout",
    "/auth/login?next=//evil.com",
    "/" + "a" * 3000,
    "",
]

GOOD = [
    "/",
    "/ea/",
    "/ea/whoami",
    "/ea/whoami?x=1&y=two",
    "/disagg/v2/",
    "/dashboard/me",
    "/ea/whoami?next=//evil.com",
    "/ea/a%2Fb",
    "/caf%C3%A9/",
]


@pytest.mark.parametrize("value", HOSTILE, ids=repr)
def test_safe_next_refuses(value: str) -> None:
    assert safe_next(value) == "/"


@pytest.mark.parametrize("value", GOOD)
def test_safe_next_keeps_same_origin_paths(value: str) -> None:
    assert safe_next(value) == value


def test_safe_next_none() -> None:
    assert safe_next(None) == "/"


def _csrf(client: httpx2.Client) -> str:
    return csrf_token(client.get("/auth/login").text)


def _login(portal: RunningPortal, next_value: str, username: str = "user-ea") -> httpx2.Response:
    with portal.client() as client:
        return client.post(
            "/auth/login",
            data={
                "username": username,
                "password": password_for(username),
                "csrf_token": _csrf(client),
                "next": next_value,
            },
        )


@pytest.mark.parametrize("value", HOSTILE, ids=repr)
def test_login_with_hostile_next_lands_on_root(portal: RunningPortal, value: str) -> None:
    response = _login(portal, value)
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/"


@pytest.mark.parametrize("value", GOOD)
def test_login_keeps_a_good_next(portal: RunningPortal, value: str) -> None:
    response = _login(portal, value)
    assert response.status_code == 303, response.text
    assert response.headers["location"] == value


def test_failed_login_keeps_only_a_safe_next_in_the_form(portal: RunningPortal) -> None:
    with portal.client() as client:
        page = client.post(
            "/auth/login",
            data={
                "username": "user-ea",
                "password": "wrong password",
                "csrf_token": _csrf(client),
                "next": "//evil.com",
            },
        )
    assert page.status_code == 401
    assert 'name="next" value="/"' in page.text
    assert "evil.com" not in page.text


@pytest.mark.parametrize("value", ["//evil.com", "https://evil.com", "/\\evil.com"])
def test_login_page_escapes_and_filters_next(portal: RunningPortal, value: str) -> None:
    with portal.client() as client:
        page = client.get("/auth/login", params={"next": value})
    assert page.status_code == 200
    assert 'name="next" value="/"' in page.text
    assert "evil.com" not in page.text


def test_login_page_keeps_a_good_next(portal: RunningPortal) -> None:
    with portal.client() as client:
        page = client.get("/auth/login", params={"next": "/ea/whoami?x=1"})
    assert 'name="next" value="/ea/whoami?x=1"' in page.text


def test_signed_in_user_visiting_login_goes_to_safe_next(portal: RunningPortal) -> None:
    with portal.logged_in("user-ea") as client:
        hostile = client.get("/auth/login", params={"next": "//evil.com"})
        good = client.get("/auth/login", params={"next": "/ea/"})
    assert (hostile.status_code, hostile.headers["location"]) == (303, "/")
    assert (good.status_code, good.headers["location"]) == (303, "/ea/")


def test_redirect_to_login_round_trips_next(portal: RunningPortal) -> None:
    """The 303 to the login page carries `next`, and signing in there lands back on it."""
    with portal.client() as client:
        first = client.get("/ea/whoami?x=1", headers={"accept": "text/html"})
        assert first.status_code == 303
        login_page = client.get(first.headers["location"])
        match = re.search(r'name="next" value="([^"]+)"', login_page.text)
        assert match
        assert match.group(1) == "/ea/whoami?x=1"
        response = client.post(
            "/auth/login",
            data={
                "username": "user-ea",
                "password": password_for("user-ea"),
                "csrf_token": _csrf(client),
                "next": match.group(1),
            },
        )
        assert response.headers["location"] == "/ea/whoami?x=1"
        assert client.get(response.headers["location"]).json()["user"] == "user-ea"
