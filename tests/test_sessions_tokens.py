"""Sessions and tokens on a running portal (middleware/identity.py, claims.py, tokens.py): logout
ends a session, a session token is accepted only from the cookie and an API token only as a
Bearer, and every kind of bad token is no identity; the cookie is re-issued near its idle
timeout."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import pytest
from jose import jwt
from sqlalchemy import select

from portal_asgi.db import store
from portal_asgi.db.engine import Database
from portal_asgi.db.models import Session as SessionRow
from portal_asgi.jose_utils import b64url_decode, b64url_encode
from portal_asgi.keys import ALGORITHM, generate_key
from portal_asgi.levels import Levels
from portal_asgi.tokens import TokenCodec

from .cli_runner import mint_token, run_cli
from .helpers import HTML, JSON, SESSION_COOKIE, assert_needs_login, bearer, cookie_header, get
from .servers import LEVELS, RunningPortal

# --- logout ----------------------------------------------------------------------------------


async def _session_row(db: Database, sid: str) -> SessionRow | None:
    async with db.session() as session:
        row: SessionRow | None = await session.scalar(
            select(SessionRow).where(SessionRow.sid == sid)
        )
        return row


def test_logout_revokes_the_session(portal: RunningPortal) -> None:
    with portal.logged_in("user-ea") as client:
        old = str(client.cookies[SESSION_COOKIE])
        assert client.get("/ea/whoami").json()["user"] == "user-ea"
        response = client.post("/auth/logout", data={"csrf_token": portal.csrf_token(client)})
        assert response.status_code == 303
        assert response.headers["location"] == "/auth/login"
        cleared = [
            v for v in response.headers.get_list("set-cookie") if v.startswith(SESSION_COOKIE)
        ]
        assert cleared and "Max-Age=0" in cleared[0]
        assert client.get("/ea/whoami").status_code == 401
    # the old cookie, replayed, no longer works: not for the API, not for a browser
    assert_needs_login(
        get(portal, "/ea/whoami", cookie_header(old)), browser=False, path="/ea/whoami"
    )
    assert_needs_login(get(portal, "/ea/", HTML, cookie_header(old)), browser=True, path="/ea/")
    assert_needs_login(get(portal, "/", HTML, cookie_header(old)), browser=True, path="/")
    # ...because the session is revoked in the database, which every worker reads
    sid = jwt.get_unverified_claims(old)["sid"]
    row = portal.run_db(lambda db: _session_row(db, sid))
    assert row is not None and row.revoked_at is not None
    assert sid in portal.run_db(store.snapshot).revoked


def test_logout_needs_the_csrf_token(portal: RunningPortal) -> None:
    with portal.logged_in("user-stable") as client:
        response = client.post("/auth/logout", data={"csrf_token": "forged"})
        assert response.status_code == 403
        assert client.get("/stable/whoami").json()["user"] == "user-stable"


def test_logout_leaves_other_sessions_alone(
    portal: RunningPortal, level_tokens: dict[str, str]
) -> None:
    with portal.logged_in("user-devel") as first, portal.logged_in("user-devel") as second:
        first.post("/auth/logout", data={"csrf_token": portal.csrf_token(first)})
        assert first.get("/devel/whoami").status_code == 401
        assert second.get("/devel/whoami").json()["user"] == "user-devel"
    assert get(portal, "/devel/whoami", bearer(level_tokens["devel"])).status_code == 200


# --- bad tokens ------------------------------------------------------------------------------


def _runtime_codec(portal: RunningPortal) -> TokenCodec:
    runtime = portal.portal.runtime
    assert runtime is not None
    return runtime.codec


def _claims(portal: RunningPortal, username: str, **changes: Any) -> dict[str, Any]:
    """Claims of a real API session of `username` (recorded in the database, not revoked)."""
    sid, user = portal.run_db(
        lambda db: store.open_session(db, username, lifetime=3600, kind="api")
    )
    now = int(time.time())
    claims: dict[str, Any] = {
        "typ": "api",
        "sub": user.username,
        "uid": user.uid,
        "sid": sid,
        "lvl": user.level,
        "scope": " ".join(Levels(LEVELS).scopes(user.level)),
        "iat": now,
        "exp": now + 600,
    }
    claims.update(changes)
    return claims


def _assert_refused(portal: RunningPortal, token: str, path: str = "/stable/whoami") -> None:
    assert_needs_login(get(portal, path, bearer(token)), browser=False, path=path)
    assert_needs_login(get(portal, path, JSON, cookie_header(token)), browser=False, path=path)
    assert_needs_login(get(portal, path, HTML, cookie_header(token)), browser=True, path=path)


def test_a_token_made_like_the_cli_works(portal: RunningPortal) -> None:
    """The control for the bad tokens below: the same claims, properly signed, open the mount."""
    token = _runtime_codec(portal).sign(_claims(portal, "user-ea"))
    assert get(portal, "/ea/whoami", bearer(token)).json()["user"] == "user-ea"


def test_expired_token(portal: RunningPortal) -> None:
    now = int(time.time())
    token = _runtime_codec(portal).sign(_claims(portal, "user-admin", iat=now - 700, exp=now - 5))
    _assert_refused(portal, token)


def test_cli_token_with_a_short_ttl_expires(fresh_portal: RunningPortal) -> None:
    fresh_portal.add_user("frank", "stable", wait=True)
    token = mint_token(fresh_portal.settings_file, "frank", "--ttl", "2s")
    assert get(fresh_portal, "/stable/whoami", bearer(token)).status_code == 200
    expires = json.loads(b64url_decode(token.split(".")[1]))["exp"]
    fresh_portal.wait_until(lambda: time.time() > expires, timeout=5)  # the clock, not the server
    _assert_refused(fresh_portal, token)


@pytest.mark.parametrize("change", [{"sub": "user-admin"}, {"lvl": "admin"}, {"exp": 4102444800}])
def test_tampered_token(
    portal: RunningPortal, level_tokens: dict[str, str], change: dict[str, Any]
) -> None:
    header, payload, signature = level_tokens["stable"].split(".")
    claims = json.loads(b64url_decode(payload))
    claims.update(change)
    forged = f"{header}.{b64url_encode(json.dumps(claims).encode())}.{signature}"
    _assert_refused(portal, forged)
    assert get(portal, "/stable/whoami", bearer(level_tokens["stable"])).status_code == 200


def test_tampered_session_cookie(portal: RunningPortal, level_cookies: dict[str, str]) -> None:
    header, payload, signature = level_cookies["stable"].split(".")
    claims = json.loads(b64url_decode(payload))
    claims["sub"] = "user-admin"
    forged = f"{header}.{b64url_encode(json.dumps(claims).encode())}.{signature}"
    _assert_refused(portal, forged)


def test_token_signed_by_another_key(portal: RunningPortal) -> None:
    other = generate_key()
    claims = _claims(portal, "user-admin")
    base_url = portal.url
    _assert_refused(portal, TokenCodec(other, issuer=base_url).sign(claims))
    # the same, claiming our key's id
    kid = _runtime_codec(portal).key.kid
    forged = jwt.encode(
        claims | {"iss": base_url, "aud": base_url},
        other.private_pem,
        algorithm=ALGORITHM,
        headers={"kid": kid},
    )
    _assert_refused(portal, forged)


def test_alg_none(portal: RunningPortal) -> None:
    claims = _claims(portal, "user-admin", iss=portal.url, aud=portal.url)
    kid = _runtime_codec(portal).key.kid
    for alg in ("none", "None", "NONE"):
        header = {"alg": alg, "typ": "JWT", "kid": kid}
        body = f"{b64url_encode(json.dumps(header).encode())}.{b64url_encode(json.dumps(claims).encode())}"
        _assert_refused(portal, body + ".")


def test_hs256_signed_with_the_public_key(portal: RunningPortal) -> None:
    key = _runtime_codec(portal).key
    claims = _claims(portal, "user-admin", iss=portal.url, aud=portal.url)
    header = {"alg": "HS256", "typ": "JWT", "kid": key.kid}
    body = (
        f"{b64url_encode(json.dumps(header).encode())}.{b64url_encode(json.dumps(claims).encode())}"
    )
    signature = hmac.new(key.public_pem.encode(), body.encode(), hashlib.sha256).digest()
    _assert_refused(portal, f"{body}.{b64url_encode(signature)}")


def test_token_of_another_issuer(portal: RunningPortal) -> None:
    codec = _runtime_codec(portal)
    other = TokenCodec(codec.key, issuer="http://elsewhere.example")
    _assert_refused(portal, other.sign(_claims(portal, "user-admin")))


def test_api_token_in_the_session_cookie_is_refused(
    portal: RunningPortal, level_tokens: dict[str, str]
) -> None:
    path = "/stable/"
    assert_needs_login(
        get(portal, path, HTML, cookie_header(level_tokens["admin"])), browser=True, path=path
    )
    assert_needs_login(
        get(portal, "/stable/whoami", JSON, cookie_header(level_tokens["admin"])),
        browser=False,
        path="/stable/whoami",
    )
    # the same token as a Bearer is fine
    assert get(portal, "/stable/whoami", bearer(level_tokens["admin"])).status_code == 200


@pytest.mark.parametrize(
    "authorization",
    ["Bearer", "Bearer not-a-token", "Bearer a.b.c", "Basic dXNlcjpwYXNz", "Token x"],
)
def test_malformed_authorization_is_no_identity(portal: RunningPortal, authorization: str) -> None:
    assert_needs_login(
        get(portal, "/stable/whoami", {"authorization": authorization}),
        browser=False,
        path="/stable/whoami",
    )


def test_revoked_api_token(fresh_portal: RunningPortal) -> None:
    fresh_portal.add_user("gina", "ea", wait=True)
    token = mint_token(fresh_portal.settings_file, "gina")
    assert get(fresh_portal, "/ea/whoami", bearer(token)).status_code == 200
    done = run_cli(fresh_portal.settings_file, "token", "revoke", token)
    assert done.returncode == 0, done.stderr
    fresh_portal.wait_until(
        lambda: get(fresh_portal, "/ea/whoami", bearer(token)).status_code == 401, timeout=3.0
    )


def test_key_file_is_what_the_cli_signs_with(portal: RunningPortal) -> None:
    """`token mint` and the portal agree on the key: the file named in [portal] key_file."""
    runtime = portal.portal.runtime
    assert runtime is not None
    assert Path(runtime.settings.portal.key_file).exists()
    header = jwt.get_unverified_header(mint_token(portal.settings_file, "user-stable"))
    assert header["kid"] == runtime.key.kid
    assert header["alg"] == ALGORITHM


# --- the session cookie itself ---------------------------------------------------------------


def test_another_authorization_scheme_leaves_the_cookie_in_charge(
    portal: RunningPortal, level_cookies: dict[str, str]
) -> None:
    """`Authorization: Basic` from an auth proxy in front of the portal is not ours: the session
    cookie still says who is calling (a Bearer token, when sent, is what counts)."""
    basic = {"authorization": "Basic dXNlcjpwYXNz"}
    response = get(portal, "/ea/whoami", basic, cookie_header(level_cookies["ea"]))
    assert response.status_code == 200
    assert response.json()["user"] == "user-ea"
    broken_bearer = {"authorization": "Bearer not-a-token"}
    assert (
        get(portal, "/ea/whoami", broken_bearer, cookie_header(level_cookies["ea"])).status_code
        == 401
    )


def test_cookie_near_its_idle_timeout_is_reissued_with_the_current_level(
    portal: RunningPortal,
) -> None:
    sid, user = portal.run_db(lambda db: store.open_session(db, "user-ea", lifetime=3600))
    now = int(time.time())
    stale = _runtime_codec(portal).sign(
        {
            "typ": "session",
            "sub": "user-ea",
            "uid": user.uid,
            "sid": sid,
            "lvl": "stable",  # what the user held when this session began
            "scope": "access:stable",
            "iat": now - 1800,
            "exp": now + 60,  # near the idle timeout (30 min in the test portal)
            "sxp": now + 3600,
        }
    )
    response = get(portal, "/ea/whoami", JSON, cookie_header(stale))
    assert response.status_code == 200
    assert response.json()["level"] == "ea"
    renewed = [
        v for v in response.headers.get_list("set-cookie") if v.startswith(f"{SESSION_COOKIE}=")
    ]
    assert len(renewed) == 1
    assert "HttpOnly" in renewed[0] and "SameSite=Lax" in renewed[0]
    fresh = _runtime_codec(portal).verify(renewed[0].split(";")[0].split("=", 1)[1])
    assert fresh["sid"] == sid
    assert now + 60 < fresh["exp"] <= now + 3600
    assert fresh["lvl"] == "ea"
    assert fresh["scope"] == "access:stable access:ea"
    assert fresh["email"] == "ea@example.org"
    # a cookie far from its idle timeout is left alone
    untouched = get(
        portal,
        "/ea/whoami",
        JSON,
        cookie_header(
            _runtime_codec(portal).sign(
                {
                    "typ": "session",
                    "sub": "user-ea",
                    "uid": user.uid,
                    "sid": sid,
                    "iat": now,
                    "exp": now + 1800,
                    "sxp": now + 3600,
                }
            )
        ),
    )
    assert untouched.headers.get_list("set-cookie") == []
