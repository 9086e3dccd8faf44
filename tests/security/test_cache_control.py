"""A session cookie never rides on an answer a shared cache may keep: every answer that sets a
cookie says `Cache-Control: private, no-store` (whatever the product said), and static files never
set one."""

from __future__ import annotations

import time

import httpx2

from ..servers import RunningPortal
from .helpers import runtime_of

PRIVATE = "private, no-store"


def _near_idle_timeout(portal: RunningPortal, client: httpx2.Client) -> None:
    """Give `client` a session the portal re-issues on its next answer: a real login's claims,
    re-signed with one minute left (the test portal's idle timeout is 30 minutes, so this is well
    inside the refresh window)."""
    runtime = runtime_of(portal)
    with portal.client() as other:
        login = portal.login(other, "user-stable")
    cookie = _session_cookies(portal, login)[0].split(";")[0].split("=", 1)[1]
    now = int(time.time())
    claims = runtime.codec.verify(cookie) | {"iat": now - 1740, "exp": now + 60}
    client.cookies.set(runtime.cookie.name, runtime.codec.sign(claims))


def _session_cookies(portal: RunningPortal, response: httpx2.Response) -> list[str]:
    name = runtime_of(portal).cookie.name + "="
    return [v for v in response.headers.get_list("set-cookie") if v.startswith(name)]


def test_refreshed_session_on_a_cacheable_product_page_is_not_stored(
    secure_portal: RunningPortal,
) -> None:
    """RFC 9111 section 5.2.2.7 / 5.2.2.5: a shared cache keeping this answer would hand the
    refreshed session to the next person who asks for the page."""
    with secure_portal.client() as client:
        _near_idle_timeout(secure_portal, client)
        response = client.get("/echo/cacheable")
    assert response.status_code == 200, response.text
    assert _session_cookies(secure_portal, response), "the session was not refreshed"
    assert response.headers.get_list("cache-control") == [PRIVATE]


def test_product_cache_control_is_kept_when_no_cookie_is_set(
    secure_portal: RunningPortal,
) -> None:
    with secure_portal.logged_in("user-stable") as client:
        response = client.get("/echo/cacheable")
    assert response.status_code == 200
    assert "set-cookie" not in response.headers
    assert response.headers["cache-control"] == "public, max-age=600"


def test_static_files_never_carry_a_session_cookie(secure_portal: RunningPortal) -> None:
    """The stylesheet is the same for everyone and cacheable: no refreshed session on it."""
    with secure_portal.client() as client:
        _near_idle_timeout(secure_portal, client)
        static = client.get("/static/portal.css")
        product = client.get("/echo/cacheable")  # the same cookie is refreshed elsewhere
    assert static.status_code == 200
    assert "set-cookie" not in static.headers
    assert _session_cookies(secure_portal, product)


def test_login_and_logout_answers_are_private_no_store(secure_portal: RunningPortal) -> None:
    with secure_portal.client() as client:
        form = client.get("/auth/login")  # sets the CSRF cookie
        login = secure_portal.login(client, "user-stable")
        assert login.status_code == 303 and _session_cookies(secure_portal, login)
        logout = client.post("/auth/logout", data={"csrf_token": secure_portal.csrf_token(client)})
        assert logout.status_code == 303 and _session_cookies(secure_portal, logout)
    for response in (form, login, logout):
        assert response.headers.get_list("cache-control") == [PRIVATE], response.request.url
