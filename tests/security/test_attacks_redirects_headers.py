"""Open redirects through `next`, and headers a client must not be able to plant: X-Portal-*
(identity) and X-Forwarded-* (address, scheme) from an untrusted peer never reach a product."""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit

import pytest

from ..helpers import csrf_token
from ..servers import RunningPortal, password_for

OPEN_REDIRECTS = [
    "//evil.example",
    "///evil.example",
    "////evil.example/",
    "/\\evil.example",
    "\\\\evil.example",
    "\\/evil.example",
    "/\\/evil.example",
    "https://evil.example",
    "http://evil.example/",
    "HTTPS://evil.example",
    "https:evil.example",
    "https:/evil.example",
    "//evil.example@portal",
    "/\t/evil.example",
    "/\n/evil.example",
    "/\r\n/evil.example",
    " //evil.example",
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "evil.example",
    "@evil.example",
    "/%09/evil.example".replace("%09", "\x09"),
    "//%2F%2Fevil.example".replace("%2F", "/"),
    "/auth/login?next=//evil.example",
    "",
]


def login_with_next(portal: RunningPortal, next_value: str) -> str:
    with portal.client() as client:
        page = client.get("/auth/login")
        response = client.post(
            "/auth/login",
            data={
                "username": "user-stable",
                "password": password_for("user-stable"),
                "csrf_token": csrf_token(page.text),
                "next": next_value,
            },
        )
        assert response.status_code == 303, response.text
        location = response.headers["location"]
        # the signed-in login page redirects to `next` too
        again = client.get("/auth/login", params={"next": next_value})
        assert again.status_code == 303
        assert again.headers["location"] == location
    return location


@pytest.mark.parametrize("next_value", OPEN_REDIRECTS)
def test_open_redirect_forms_of_next_land_on_root(
    secure_portal: RunningPortal, next_value: str
) -> None:
    """ASVS 5.1.5 and RFC 9700 section 4.11 (open redirectors): `next` is a same-origin path or `/`."""
    assert login_with_next(secure_portal, next_value) == "/"


def test_a_same_origin_next_is_kept(secure_portal: RunningPortal) -> None:
    """The control: a plain path survives, so the test above is not passing by accident."""
    location = login_with_next(secure_portal, "/stable/whoami?x=1")
    assert location == "/stable/whoami?x=1"
    resolved = urlsplit(urljoin(secure_portal.url + "/", location))
    assert resolved.netloc == urlsplit(secure_portal.url).netloc


FORGED_IDENTITY = {
    "X-Portal-User": "user-admin",
    "X-Portal-Level": "admin",
    "X-Portal-Email": "admin@example.org",
}
UNDERSCORED = {"X_Portal_User": "user-admin", "X-Portal_Level": "admin"}


@pytest.mark.parametrize("forged", [FORGED_IDENTITY, UNDERSCORED], ids=["dashes", "underscores"])
def test_client_sent_x_portal_headers_never_reach_a_product(
    secure_portal: RunningPortal, forged: dict[str, str]
) -> None:
    """ASVS 4.1.2: identity headers are the portal's alone; a WSGI bridge reads `_` as `-`, so
    the underscored spelling is removed too."""
    with secure_portal.client() as anonymous:
        environ = anonymous.get("/open-echo/", headers=forged).json()["environ"]
    assert not any(key.startswith("HTTP_X_PORTAL") for key in environ), environ
    with secure_portal.logged_in("user-stable") as client:
        environ = client.get("/echo/", headers=forged).json()["environ"]
        assert environ["HTTP_X_PORTAL_USER"] == "user-stable"
        assert environ["HTTP_X_PORTAL_LEVEL"] == "stable"
        headers = client.get("/echo-asgi/", headers=forged).json()["headers"]
    portal_headers = [(k, v) for k, v in headers if k.replace("_", "-").startswith("x-portal-")]
    assert ("x-portal-user", "user-stable") in portal_headers
    assert all(v != "user-admin" and v != "admin" for _, v in portal_headers), portal_headers


FORWARDED = {
    "X-Forwarded-For": "203.0.113.9",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "evil.example",
    "X_Forwarded_For": "203.0.113.10",
    "Forwarded": "for=203.0.113.11;proto=https",
    "X-Real-IP": "203.0.113.12",
}


def test_untrusted_forwarding_headers_never_reach_a_product(secure_portal: RunningPortal) -> None:
    """ASVS 1.4 / 4.1: forwarding headers from a peer that is not a trusted proxy are removed,
    and do not change the client address products see."""
    with secure_portal.client() as client:
        echoed = client.get("/open-echo/", headers=FORWARDED).json()
    assert echoed["remote_addr"] == "127.0.0.1"
    assert echoed["scheme"] == "http"
    leaked = [k for k in echoed["environ"] if "FORWARD" in k or "REAL_IP" in k]
    assert leaked == [], echoed["environ"]


def test_trusted_proxy_forwarding_is_honoured_and_normalised(proxied_portal: RunningPortal) -> None:
    """uvicorn's --forwarded-allow-ips semantics: the nearest untrusted hop is the client."""
    headers = {
        "X-Forwarded-For": "198.51.100.1, 203.0.113.7, 127.0.0.1",
        "X-Forwarded-Proto": "https",
    }
    with proxied_portal.client() as client:
        echoed = client.get("/open-echo/", headers=headers | {"X-Real-IP": "6.6.6.6"}).json()
    assert echoed["remote_addr"] == "203.0.113.7"  # not the spoofable leftmost 198.51.100.1
    assert echoed["scheme"] == "https"
    assert echoed["environ"]["HTTP_X_FORWARDED_FOR"] == "203.0.113.7"
    assert "HTTP_X_REAL_IP" not in echoed["environ"]


def test_portal_pages_carry_security_headers(secure_portal: RunningPortal) -> None:
    """ASVS 14.4: CSP without inline script, no framing, nosniff, Referrer-Policy, no-store."""
    with secure_portal.client() as client:
        login = client.get("/auth/login")
        error = client.get("/nowhere", headers={"accept": "text/html"})
    for response in (login, error):
        csp = response.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "same-origin"
        assert response.headers["x-frame-options"] == "DENY"
    assert login.headers["cache-control"] == "private, no-store"  # it sets the CSRF cookie
    assert "strict-transport-security" not in login.headers  # served over http here
    # the templates hold no inline script for the CSP to break
    assert "<script" not in login.text.lower() and " on" + "click=" not in login.text.lower()


def test_products_keep_their_own_headers_and_get_the_defaults(secure_portal: RunningPortal) -> None:
    """Products are not given the portal's CSP; `[security] product_headers` fill in what is missing."""
    with secure_portal.logged_in("user-stable") as client:
        response = client.get("/echo/")
    assert response.headers["x-frame-options"] == "SAMEORIGIN"  # the product's own
    assert "content-security-policy" not in response.headers
    assert response.headers["x-content-type-options"] == "nosniff"  # the default added
