"""Cross-site request blocking (docs/security.md): unsafe requests that the session cookie
authenticates are refused when they come from another site, on the portal and on every product."""

from __future__ import annotations

import pytest

from ..servers import RunningPortal

CROSS_SITE = [
    {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"},
    {"Sec-Fetch-Site": "same-site", "Origin": "https://sub.127.0.0.1"},
    {"Origin": "https://evil.example"},  # a browser without Fetch Metadata
    {"Origin": "null"},  # sandboxed iframes and data: pages
]


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
@pytest.mark.parametrize(
    "headers", CROSS_SITE, ids=["fetch-metadata", "same-site", "origin", "null"]
)
def test_rejects_cross_site_request_to_a_product_with_a_valid_cookie(
    secure_portal: RunningPortal, method: str, headers: dict[str, str]
) -> None:
    """ASVS 3.5.3 / 4.2.2 (CSRF): the product never sees the forged request."""
    with secure_portal.logged_in("user-stable") as client:
        response = client.request(
            method,
            "/echo/transfer",
            headers=headers | {"accept": "application/json"},
            content=b"amount=1000",
        )
        assert response.status_code == 403, response.text
        assert "amount" not in response.text
        assert response.json() == {"error": "forbidden"}
        # and the same request from the portal's own pages goes through
        same = client.request(
            method,
            "/echo/transfer",
            headers={"Sec-Fetch-Site": "same-origin", "Origin": secure_portal.url},
            content=b"amount=1",
        )
        assert same.status_code == 200
        assert same.json()["body"] == "amount=1"


def test_allows_same_origin_and_non_browser_requests(secure_portal: RunningPortal) -> None:
    """Without Fetch Metadata, a matching Origin or no Origin (curl, scripts) is judged on credentials."""
    with secure_portal.logged_in("user-stable") as client:
        assert client.post("/echo/", headers={"Origin": secure_portal.url}).status_code == 200
        assert client.post("/echo/").status_code == 200
        assert client.post("/echo/", headers={"Sec-Fetch-Site": "none"}).status_code == 200


def test_bearer_requests_are_not_blocked(secure_portal: RunningPortal) -> None:
    """A cross-site page cannot attach an Authorization header: Bearer requests pass."""
    from .helpers import session_claims, sign_es256

    runtime = secure_portal.portal.runtime
    assert runtime is not None
    token = runtime.codec.sign(session_claims(secure_portal, "user-stable", typ="api"))
    _ = sign_es256  # the helper module is shared with the token corpus
    with secure_portal.client() as client:
        response = client.post(
            "/echo/",
            headers={
                "Authorization": f"Bearer {token}",
                "Sec-Fetch-Site": "cross-site",
                "Origin": "https://evil.example",
            },
        )
    assert response.status_code == 200


def test_a_mount_may_opt_out_but_not_its_nested_mounts(secure_portal: RunningPortal) -> None:
    """`csrf = false` on /api (a Bearer API) lets cross-site POSTs through; /api/strict, nested in it
    without the opt-out, is still protected (longest mount wins, as in the router)."""
    cross = {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}
    with secure_portal.logged_in("user-stable") as client:
        assert client.post("/api/x", headers=cross).status_code == 200
        assert client.post("/api/strict/x", headers=cross).status_code == 403


def test_rejects_cross_site_logout_and_login(secure_portal: RunningPortal) -> None:
    """Cross-site POSTs to the portal's own forms are refused even with a valid CSRF token
    (defence in depth), and the session survives a forged logout."""
    cross = {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}
    with secure_portal.logged_in("user-stable") as client:
        token = secure_portal.csrf_token(client)
        response = client.post("/auth/logout", data={"csrf_token": token}, headers=cross)
        assert response.status_code == 403
        assert client.get("/stable/whoami").json()["user"] == "user-stable"
    with secure_portal.client() as client:
        token = secure_portal.csrf_token(client)
        response = client.post(
            "/auth/login",
            data={"username": "user-stable", "password": "x", "csrf_token": token, "next": "/"},
            headers=cross,
        )
        assert response.status_code == 403
