"""Session management: cookie attributes, a new session id at every login (no fixation), idle
timeout and absolute lifetime enforced, refreshes never past the absolute lifetime."""

from __future__ import annotations

import time
from pathlib import Path

import httpx2

from portal_asgi.cookies import SessionCookie
from portal_asgi.settings import load_settings

from ..helpers import csrf_token
from ..servers import RunningPortal, password_for, settings_text
from .helpers import runtime_of, session_claims


def _sid(portal: RunningPortal, token: str) -> str:
    return str(runtime_of(portal).codec.verify(token)["sid"])


def test_session_cookie_attributes_over_http(secure_portal: RunningPortal) -> None:
    """ASVS 3.4.2 and 3.4.3: HttpOnly, SameSite=Lax, Path=/."""
    with secure_portal.client() as client:
        response = secure_portal.login(client, "user-stable")
    cookie = next(
        v for v in response.headers.get_list("set-cookie") if v.startswith("portal_session=")
    )
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain http here: a Secure cookie would never come back


def test_session_cookie_is_secure_and_host_prefixed_over_https(tmp_path: Path) -> None:
    """ASVS 3.4.1 and 3.4.4: `Secure` and the `__Host-` prefix when base_url is https."""
    file = tmp_path / "settings.toml"
    file.write_text(settings_text(tmp_path).replace('base_url = "http://', 'base_url = "https://'))
    settings = load_settings(file)
    cookie = SessionCookie(secure=settings.https).set("token", max_age=60).decode()
    assert cookie.startswith("__Host-portal_session=token;")
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Domain" not in cookie and "Path=/" in cookie


def _set_session(portal: RunningPortal, response: httpx2.Response) -> str | None:
    name = runtime_of(portal).cookie.name + "="
    for value in response.headers.get_list("set-cookie"):
        if value.startswith(name):
            return value[len(name) :].split(";")[0]
    return None


def test_login_rotates_the_session_id_no_fixation(secure_portal: RunningPortal) -> None:
    """ASVS 3.2.1: a new session token at authentication; a planted or earlier one is replaced."""
    name = runtime_of(secure_portal).cookie.name
    with secure_portal.client() as victim:
        victim.cookies.set(name, "attacker-chosen-value", domain="127.0.0.1")
        first = _set_session(secure_portal, secure_portal.login(victim, "user-stable"))
    assert first and first != "attacker-chosen-value"
    with secure_portal.client() as again:
        # a valid session planted before login (fixation with a real token) is replaced too
        token = csrf_token(again.get("/auth/login").text)
        again.cookies.set(name, first, domain="127.0.0.1")
        response = again.post(
            "/auth/login",
            data={
                "username": "user-stable",
                "password": password_for("user-stable"),
                "csrf_token": token,
                "next": "/",
            },
        )
        assert response.status_code == 303
        second = _set_session(secure_portal, response)
    assert second and second != first
    assert _sid(secure_portal, second) != _sid(secure_portal, first)


def test_idle_timeout_is_enforced(secure_portal: RunningPortal) -> None:
    """ASVS 3.3.2: a session idle past its timeout (its `exp`) is over."""
    now = int(time.time())
    codec = runtime_of(secure_portal).codec
    token = codec.sign(session_claims(secure_portal, "user-stable", iat=now - 3600, exp=now - 1))
    with secure_portal.client() as client:
        client.cookies.set(runtime_of(secure_portal).cookie.name, token)
        assert (
            client.get("/stable/whoami", headers={"accept": "application/json"}).status_code == 401
        )


def test_absolute_lifetime_is_enforced_whatever_exp_says(secure_portal: RunningPortal) -> None:
    """ASVS 3.3.2: past `sxp` (the absolute lifetime) the session is over, even with a live `exp`."""
    now = int(time.time())
    codec = runtime_of(secure_portal).codec
    token = codec.sign(session_claims(secure_portal, "user-stable", exp=now + 600, sxp=now - 1))
    with secure_portal.client() as client:
        client.cookies.set(runtime_of(secure_portal).cookie.name, token)
        assert (
            client.get("/stable/whoami", headers={"accept": "application/json"}).status_code == 401
        )


def test_refresh_near_idle_expiry_never_passes_the_absolute_lifetime(
    secure_portal: RunningPortal,
) -> None:
    """ASVS 3.3.2: the re-issued cookie keeps the absolute end."""
    now = int(time.time())
    runtime = runtime_of(secure_portal)
    token = runtime.codec.sign(
        session_claims(secure_portal, "user-stable", iat=now - 1700, exp=now + 60, sxp=now + 120)
    )
    with secure_portal.client() as client:
        client.cookies.set(runtime.cookie.name, token)
        response = client.get("/stable/whoami", headers={"accept": "application/json"})
        assert response.status_code == 200
        fresh = _set_session(secure_portal, response)
    assert fresh and fresh != token
    claims = runtime.codec.verify(fresh)
    assert claims["exp"] <= now + 120 and claims["sxp"] == now + 120
