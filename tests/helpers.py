"""What many test files need, in one copy each: the CSRF token of a portal form, the credentials a
request carries, the answers of docs/architecture.md for a caller without identity, and a clock
the test moves. Base64url is not here: tests use the package's own
`portal_asgi.jose_utils.b64url_encode` and `b64url_decode`."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from portal_asgi.db.models import utcnow

if TYPE_CHECKING:
    import httpx2

    from .servers import RunningPortal

SESSION_COOKIE = "portal_session"  # the session cookie's name over http (`__Host-` over https)
HTML = {"accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
JSON = {"accept": "application/json"}

# The `level_credentials` fixture: the headers of the user at a level (None: anonymous), with
# their session cookie ("cookie") or API token ("bearer").
Credentials = Callable[[str | None, str], dict[str, str]]

_CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_token(page: str) -> str:
    """The CSRF token in the first portal form on `page` (the login form, or the catalogue's
    logout form)."""
    match = _CSRF_FIELD.search(page)
    assert match, page
    return match.group(1)


def without_csrf_token(page: str) -> str:
    """`page` with its CSRF token taken out: two pages compared for what they reveal."""
    return _CSRF_FIELD.sub("", page)


def cookie_header(token: str) -> dict[str, str]:
    return {"cookie": f"{SESSION_COOKIE}={token}"}


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def get(portal: RunningPortal, path: str, *headers: dict[str, str]) -> httpx2.Response:
    """`GET path` on a client of its own (no cookie jar), with `headers` merged in order."""
    merged: dict[str, str] = {}
    for extra in headers:
        merged.update(extra)
    with portal.client() as client:
        return client.get(path, headers=merged)


def assert_needs_login(response: httpx2.Response, *, browser: bool, path: str) -> None:
    """The answer to a caller without identity: 303 to the login page for a browser, else 401
    JSON with `WWW-Authenticate: Bearer`."""
    if browser:
        assert response.status_code == 303, response.text
        assert response.headers["location"] == f"/auth/login?next={path}"
    else:
        assert response.status_code == 401, response.text
        assert response.headers["content-type"].startswith("application/json")
        assert response.json() == {"error": "authentication_required"}
        assert response.headers["www-authenticate"].startswith("Bearer")


class Clock:
    """Naive UTC time, as the database keeps it, that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)
