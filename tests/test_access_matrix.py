"""The access matrix against a real portal over real HTTP: every level of user against every level
of mount, browser and API style, cookie and Bearer; logout, disabled users, level changes, and
every kind of bad token (the levels, answers and URLs of docs/architecture.md)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from jose import jwt
from sqlalchemy import select

from portal_asgi.db import store
from portal_asgi.db.engine import Database
from portal_asgi.db.models import Session as SessionRow
from portal_asgi.keys import ALGORITHM, generate_key
from portal_asgi.levels import Levels
from portal_asgi.tokens import TokenCodec

from .cli_runner import mint_token, run_cli
from .servers import LEVELS, RunningPortal, mount_path, serve

COOKIE = "portal_session"
HTML = {"accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
JSON = {"accept": "application/json"}
MOUNT_LEVELS = ("public", *LEVELS)
RANK = {name: rank for rank, name in enumerate(MOUNT_LEVELS)}
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
# (user level or None for anonymous, how the credential travels)
CALLERS = [(None, "none")] + [(level, via) for level in LEVELS for via in ("cookie", "bearer")]


def may_open(held: str | None, required: str) -> bool:
    if required == "public":
        return True
    return held is not None and RANK[held] >= RANK[required]


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def cookie_header(token: str) -> dict[str, str]:
    return {"cookie": f"{COOKIE}={token}"}


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def get(portal: RunningPortal, path: str, *headers: dict[str, str]) -> httpx2.Response:
    merged: dict[str, str] = {}
    for extra in headers:
        merged.update(extra)
    with portal.client() as client:
        return client.get(path, headers=merged)


def assert_needs_login(response: httpx2.Response, *, browser: bool, path: str) -> None:
    if browser:
        assert response.status_code == 303, response.text
        assert response.headers["location"] == f"/auth/login?next={path}"
    else:
        assert response.status_code == 401, response.text
        assert response.headers["content-type"].startswith("application/json")
        assert response.json() == {"error": "authentication_required"}
        assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.fixture(scope="module")
def cookies(portal: RunningPortal) -> dict[str, str]:
    """A session cookie for the user at each level (sessions nobody logs out)."""
    found = {}
    for level in LEVELS:
        with portal.logged_in(f"user-{level}") as client:
            found[level] = str(client.cookies[COOKIE])
    return found


@pytest.fixture(scope="module")
def tokens(portal: RunningPortal) -> dict[str, str]:
    """An API token for the user at each level, minted by the real command line."""
    return {level: mint_token(portal.settings_file, f"user-{level}") for level in LEVELS}


def credentials(
    level: str | None, via: str, cookies: dict[str, str], tokens: dict[str, str]
) -> dict[str, str]:
    if level is None:
        return {}
    return cookie_header(cookies[level]) if via == "cookie" else bearer(tokens[level])


# --- the matrix ------------------------------------------------------------------------------


@pytest.mark.parametrize("mount", MOUNT_LEVELS)
@pytest.mark.parametrize(
    ("level", "via"), CALLERS, ids=[f"{lv or 'anonymous'}-{v}" for lv, v in CALLERS]
)
@pytest.mark.parametrize("style", ["browser", "api"])
def test_access_matrix(
    portal: RunningPortal,
    cookies: dict[str, str],
    tokens: dict[str, str],
    style: str,
    level: str | None,
    via: str,
    mount: str,
) -> None:
    browser = style == "browser"
    root = mount_path(mount)
    path = f"{root}/" if browser else f"{root}/whoami"
    creds = credentials(level, via, cookies, tokens)
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
    portal: RunningPortal, tokens: dict[str, str], mount: str
) -> None:
    """403 is an HTML page for a client that asks for HTML, even with a Bearer token."""
    if mount == "stable":
        return
    response = get(portal, f"{mount_path(mount)}/whoami", HTML, bearer(tokens["stable"]))
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
    portal: RunningPortal, tokens: dict[str, str]
) -> None:
    with portal.client() as client:
        ok = client.post("/ea/echo", content=b"hello", headers=bearer(tokens["ea"]))
        low = client.post("/ea/echo", content=b"hello", headers=bearer(tokens["stable"]))
    assert ok.status_code == 200
    assert ok.json()["received"] == "hello"
    assert ok.json()["user"] == "user-ea"
    assert low.status_code == 403


def test_unknown_paths_are_404(portal: RunningPortal, tokens: dict[str, str]) -> None:
    for path in ("/nothing-here", "/disagg/", "/disagg/v3/", "/eaa/whoami", "/STABLE/"):
        response = get(portal, path, JSON, bearer(tokens["admin"]))
        assert response.status_code == 404, path
        assert response.json() == {"error": "not_found"}


# --- the catalogue ---------------------------------------------------------------------------


def test_catalogue_needs_login(portal: RunningPortal) -> None:
    assert_needs_login(get(portal, "/", HTML), browser=True, path="/")
    assert_needs_login(get(portal, "/", JSON), browser=False, path="/")


@pytest.mark.parametrize("via", ["cookie", "bearer"])
@pytest.mark.parametrize("level", LEVELS)
def test_catalogue_lists_exactly_what_the_level_opens(
    portal: RunningPortal, cookies: dict[str, str], tokens: dict[str, str], level: str, via: str
) -> None:
    creds = credentials(level, via, cookies, tokens)
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
        assert f'class="level level-{required}"' in page.text
    # and everything it lists really opens
    for path in expected:
        assert get(portal, path, JSON, creds).status_code in (200, 404), path


def test_catalogue_follows_the_policy_table(portal: RunningPortal) -> None:
    """The mounts the portal serves are the ones the catalogue knows: nothing is left out."""
    runtime = portal.portal.runtime
    assert runtime is not None
    assert {product.mount.path: product.mount.level for product in runtime.products} == CATALOGUE


# --- what products receive -------------------------------------------------------------------

FORGED = {
    "X-Portal-User": "user-admin",
    "X-Portal-Email": "admin@evil.example",
    "X-Portal-Level": "admin",
}


def test_public_mount_anonymous_sees_no_forged_identity(portal: RunningPortal) -> None:
    response = get(portal, "/public/whoami", JSON, FORGED)
    assert response.status_code == 200
    body = response.json()
    assert (body["user"], body["email"], body["level"]) == ("", "", "")


@pytest.mark.parametrize("via", ["cookie", "bearer"])
def test_logged_in_user_sees_own_identity_not_forged(
    portal: RunningPortal, cookies: dict[str, str], tokens: dict[str, str], via: str
) -> None:
    creds = credentials("stable", via, cookies, tokens)
    response = get(portal, "/stable/whoami", JSON, FORGED, creds)
    assert response.status_code == 200
    body = response.json()
    assert (body["user"], body["email"], body["level"]) == (
        "user-stable",
        "stable@example.org",
        "stable",
    )
    # the forged level does not open anything either
    assert get(portal, "/top/whoami", JSON, FORGED, creds).status_code == 403


def test_portal_headers_spelt_with_underscores_are_removed(
    portal: RunningPortal, tokens: dict[str, str]
) -> None:
    """A WSGI bridge maps `X_Portal_User` to the same `HTTP_X_PORTAL_USER` as `X-Portal-User`."""
    sneaky = {"X_Portal_User": "user-admin", "x_portal-level": "admin"}
    anonymous = get(portal, "/public/whoami", JSON, sneaky).json()
    assert (anonymous["user"], anonymous["level"]) == ("", "")
    signed_in = get(portal, "/stable/whoami", JSON, sneaky, bearer(tokens["stable"])).json()
    assert (signed_in["user"], signed_in["level"]) == ("user-stable", "stable")


@pytest.mark.parametrize("via", ["cookie", "bearer"])
@pytest.mark.parametrize("level", ["ea", "devel", "admin"])
def test_starlette_product_sees_request_user_and_scopes(
    portal: RunningPortal, cookies: dict[str, str], tokens: dict[str, str], level: str, via: str
) -> None:
    response = get(portal, "/dashboard/me", JSON, credentials(level, via, cookies, tokens))
    assert response.status_code == 200
    body = response.json()
    assert body["authenticated"] is True
    assert body["identity"] == f"user-{level}"
    assert body["scopes"] == ["authenticated", *Levels(LEVELS).scopes(level)]
    assert body["portal"] == {"mount": "/dashboard", "level": "ea"}
    html = get(portal, "/dashboard/", HTML, credentials(level, via, cookies, tokens))
    assert f"Signed in as <strong>user-{level}</strong>" in html.text


def test_starlette_product_lifespan_ran(fresh_portal: RunningPortal) -> None:
    fresh_portal.add_user("erin", "ea")
    fresh_portal.wait_until(lambda: _knows(fresh_portal, "erin"))
    with fresh_portal.logged_in("erin") as client:
        body = client.get("/dashboard/me").json()
    assert body["identity"] == "erin"
    assert body["lifespan_ran"] is True


def test_two_versions_at_two_levels(portal: RunningPortal, tokens: dict[str, str]) -> None:
    stable, ea = bearer(tokens["stable"]), bearer(tokens["ea"])
    assert get(portal, "/disagg/v1/", JSON, stable).json() == {"product": "disagg", "version": "v1"}
    assert get(portal, "/disagg/v2/", JSON, stable).status_code == 403
    assert get(portal, "/disagg/v1/", JSON, ea).json()["version"] == "v1"
    assert get(portal, "/disagg/v2/", JSON, ea).json() == {"product": "disagg", "version": "v2"}
    assert_needs_login(get(portal, "/disagg/v1/", JSON), browser=False, path="/disagg/v1/")


# --- custom mounts: Flask helpers and nested mounts ------------------------------------------

OUTER = '[[mount]]\npath = "/seistech"\napp = "products.test.app:app"\nlevel = "stable"\n\n'
INNER = (
    '[[mount]]\npath = "/seistech/svc_disagg"\napp = "products.test.app:app"\nlevel = "devel"\n\n'
)
FLASK = (
    '[[mount]]\npath = "/flask"\napp = "tests.flask_product:app"\nlevel = "stable"\n\n'
    '[[mount]]\npath = "/flaskpub"\napp = "tests.flask_product:app"\nlevel = "public"\n\n'
)


def _knows(running: RunningPortal, *usernames: str) -> bool:
    runtime = running.portal.runtime
    return runtime is not None and all(runtime.directory.user(u) is not None for u in usernames)


@pytest.fixture(scope="module", params=["outer-first", "inner-first"])
def custom_portal(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningPortal]:
    mounts = (OUTER + INNER if request.param == "outer-first" else INNER + OUTER) + FLASK
    with serve(tmp_path_factory.mktemp("custom"), mounts=mounts) as running:
        running.add_level_users()
        yield running


def test_nested_mounts_longest_path_wins(custom_portal: RunningPortal) -> None:
    minted = {level: mint_token(custom_portal.settings_file, f"user-{level}") for level in LEVELS}
    stable, devel = bearer(minted["stable"]), bearer(minted["devel"])
    outer = get(custom_portal, "/seistech/whoami", JSON, stable)
    assert outer.status_code == 200
    assert outer.json()["root"] == "/seistech"
    inner = get(custom_portal, "/seistech/svc_disagg/whoami", JSON, stable)
    assert inner.status_code == 403
    assert "svc_disagg" not in inner.text
    inner = get(custom_portal, "/seistech/svc_disagg/whoami", JSON, devel)
    assert inner.status_code == 200
    assert inner.json()["root"] == "/seistech/svc_disagg"
    assert inner.json()["path"] == "/whoami"
    assert_needs_login(
        get(custom_portal, "/seistech/svc_disagg/", HTML),
        browser=True,
        path="/seistech/svc_disagg/",
    )
    # Without the trailing slash: a redirect to the inner mount's slash form, never the outer
    # product answering for its own `/svc_disagg`.
    bare = get(custom_portal, "/seistech/svc_disagg?x=1", JSON, stable)
    assert bare.status_code == 307
    assert bare.headers["location"] == "/seistech/svc_disagg/?x=1"


def test_flask_current_user(custom_portal: RunningPortal) -> None:
    with custom_portal.logged_in("user-ea") as client:
        body = client.get("/flask/me", headers=FORGED).json()
        assert body == {
            "user": "user-ea",
            "level": "ea",
            "email": "ea@example.org",
            "via": "session",
            "mount_level": "stable",
            "header_user": "user-ea",
        }
        assert client.get("/flask/admin-only").status_code == 403
    token = mint_token(custom_portal.settings_file, "user-admin")
    body = get(custom_portal, "/flask/me", bearer(token)).json()
    assert (body["user"], body["via"]) == ("user-admin", "token")
    assert get(custom_portal, "/flask/admin-only", bearer(token)).json() == {"ok": True}


def test_flask_current_user_anonymous_on_public_mount(custom_portal: RunningPortal) -> None:
    body = get(custom_portal, "/flaskpub/me", FORGED).json()
    assert body == {
        "user": None,
        "level": None,
        "email": None,
        "via": None,
        "mount_level": "public",
        "header_user": "",
    }
    assert_needs_login(get(custom_portal, "/flask/me", JSON), browser=False, path="/flask/me")


# --- logout ----------------------------------------------------------------------------------


async def _session_row(db: Database, sid: str) -> SessionRow | None:
    async with db.session() as session:
        row: SessionRow | None = await session.scalar(
            select(SessionRow).where(SessionRow.sid == sid)
        )
        return row


def test_logout_revokes_the_session(portal: RunningPortal) -> None:
    with portal.logged_in("user-ea") as client:
        old = str(client.cookies[COOKIE])
        assert client.get("/ea/whoami").json()["user"] == "user-ea"
        response = client.post("/auth/logout", data={"csrf_token": portal.csrf_token(client)})
        assert response.status_code == 303
        assert response.headers["location"] == "/auth/login"
        cleared = [v for v in response.headers.get_list("set-cookie") if v.startswith(COOKIE)]
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


def test_logout_leaves_other_sessions_alone(portal: RunningPortal, tokens: dict[str, str]) -> None:
    with portal.logged_in("user-devel") as first, portal.logged_in("user-devel") as second:
        first.post("/auth/logout", data={"csrf_token": portal.csrf_token(first)})
        assert first.get("/devel/whoami").status_code == 401
        assert second.get("/devel/whoami").json()["user"] == "user-devel"
    assert get(portal, "/devel/whoami", bearer(tokens["devel"])).status_code == 200


# --- users disabled or moved between levels --------------------------------------------------


def test_disabled_user_loses_cookie_and_token(fresh_portal: RunningPortal) -> None:
    fresh_portal.add_user("carol", "ea")
    fresh_portal.wait_until(lambda: _knows(fresh_portal, "carol"))
    token = mint_token(fresh_portal.settings_file, "carol")
    with fresh_portal.logged_in("carol") as client:
        cookie = str(client.cookies[COOKIE])
    assert get(fresh_portal, "/ea/whoami", cookie_header(cookie)).status_code == 200
    assert get(fresh_portal, "/ea/whoami", bearer(token)).status_code == 200

    done = run_cli(fresh_portal.settings_file, "users", "disable", "carol")
    assert done.returncode == 0, done.stderr
    started = time.monotonic()
    fresh_portal.wait_until(
        lambda: (
            get(fresh_portal, "/ea/whoami", cookie_header(cookie)).status_code == 401
            and get(fresh_portal, "/ea/whoami", bearer(token)).status_code == 401
        ),
        timeout=3.0,
    )
    assert time.monotonic() - started < 3.0
    with fresh_portal.client() as client:
        refused = fresh_portal.login(client, "carol")
    assert refused.status_code == 401
    assert "Wrong username or password" in refused.text

    # enabling the account again does not bring its old sessions and tokens back
    done = run_cli(fresh_portal.settings_file, "users", "enable", "carol")
    assert done.returncode == 0, done.stderr
    fresh_portal.wait_until(lambda: fresh_portal.portal.runtime.directory.user("carol").active)  # type: ignore[union-attr]
    assert get(fresh_portal, "/ea/whoami", cookie_header(cookie)).status_code == 401
    assert get(fresh_portal, "/ea/whoami", bearer(token)).status_code == 401
    with fresh_portal.logged_in("carol") as client:
        assert client.get("/ea/whoami").json()["user"] == "carol"


def test_level_change_applies_without_logging_out(fresh_portal: RunningPortal) -> None:
    fresh_portal.add_user("dave", "stable", email="dave@example.org")
    fresh_portal.wait_until(lambda: _knows(fresh_portal, "dave"))
    token = mint_token(fresh_portal.settings_file, "dave")
    with fresh_portal.logged_in("dave") as client:
        cookie = str(client.cookies[COOKIE])
    callers = (cookie_header(cookie), bearer(token))
    for creds in callers:
        assert get(fresh_portal, "/devel/whoami", creds).status_code == 403

    done = run_cli(fresh_portal.settings_file, "users", "set-level", "dave", "devel")
    assert done.returncode == 0, done.stderr
    fresh_portal.wait_until(
        lambda: all(get(fresh_portal, "/devel/whoami", c).status_code == 200 for c in callers),
        timeout=3.0,
    )
    for creds in callers:
        assert get(fresh_portal, "/devel/whoami", creds).json()["level"] == "devel"
        assert get(fresh_portal, "/top/whoami", creds).status_code == 403
        listed = {row["path"] for row in get(fresh_portal, "/", JSON, creds).json()["products"]}
        assert "/devel/" in listed and "/top/" not in listed

    done = run_cli(fresh_portal.settings_file, "users", "set-level", "dave", "stable")
    assert done.returncode == 0, done.stderr
    fresh_portal.wait_until(
        lambda: all(get(fresh_portal, "/ea/whoami", c).status_code == 403 for c in callers),
        timeout=3.0,
    )
    for creds in callers:
        body = get(fresh_portal, "/stable/whoami", creds).json()
        assert (body["user"], body["level"]) == ("dave", "stable")


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
    fresh_portal.add_user("frank", "stable")
    fresh_portal.wait_until(lambda: _knows(fresh_portal, "frank"))
    token = mint_token(fresh_portal.settings_file, "frank", "--ttl", "2s")
    assert get(fresh_portal, "/stable/whoami", bearer(token)).status_code == 200
    expires = json.loads(unb64(token.split(".")[1]))["exp"]
    fresh_portal.wait_until(lambda: time.time() > expires, timeout=5)  # the clock, not the server
    _assert_refused(fresh_portal, token)


@pytest.mark.parametrize("change", [{"sub": "user-admin"}, {"lvl": "admin"}, {"exp": 4102444800}])
def test_tampered_token(
    portal: RunningPortal, tokens: dict[str, str], change: dict[str, Any]
) -> None:
    header, payload, signature = tokens["stable"].split(".")
    claims = json.loads(unb64(payload))
    claims.update(change)
    forged = f"{header}.{b64(json.dumps(claims).encode())}.{signature}"
    _assert_refused(portal, forged)
    assert get(portal, "/stable/whoami", bearer(tokens["stable"])).status_code == 200


def test_tampered_session_cookie(portal: RunningPortal, cookies: dict[str, str]) -> None:
    header, payload, signature = cookies["stable"].split(".")
    claims = json.loads(unb64(payload))
    claims["sub"] = "user-admin"
    forged = f"{header}.{b64(json.dumps(claims).encode())}.{signature}"
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
        body = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
        _assert_refused(portal, body + ".")


def test_hs256_signed_with_the_public_key(portal: RunningPortal) -> None:
    key = _runtime_codec(portal).key
    claims = _claims(portal, "user-admin", iss=portal.url, aud=portal.url)
    header = {"alg": "HS256", "typ": "JWT", "kid": key.kid}
    body = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = hmac.new(key.public_pem.encode(), body.encode(), hashlib.sha256).digest()
    _assert_refused(portal, f"{body}.{b64(signature)}")


def test_token_of_another_issuer(portal: RunningPortal) -> None:
    codec = _runtime_codec(portal)
    other = TokenCodec(codec.key, issuer="http://elsewhere.example")
    _assert_refused(portal, other.sign(_claims(portal, "user-admin")))


def test_api_token_in_the_session_cookie_is_refused(
    portal: RunningPortal, tokens: dict[str, str]
) -> None:
    path = "/stable/"
    assert_needs_login(
        get(portal, path, HTML, cookie_header(tokens["admin"])), browser=True, path=path
    )
    assert_needs_login(
        get(portal, "/stable/whoami", JSON, cookie_header(tokens["admin"])),
        browser=False,
        path="/stable/whoami",
    )
    # the same token as a Bearer is fine
    assert get(portal, "/stable/whoami", bearer(tokens["admin"])).status_code == 200


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
    fresh_portal.add_user("gina", "ea")
    fresh_portal.wait_until(lambda: _knows(fresh_portal, "gina"))
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
    portal: RunningPortal, cookies: dict[str, str]
) -> None:
    """`Authorization: Basic` from an auth proxy in front of the portal is not ours: the session
    cookie still says who is calling (a Bearer token, when sent, is what counts)."""
    basic = {"authorization": "Basic dXNlcjpwYXNz"}
    response = get(portal, "/ea/whoami", basic, cookie_header(cookies["ea"]))
    assert response.status_code == 200
    assert response.json()["user"] == "user-ea"
    broken_bearer = {"authorization": "Bearer not-a-token"}
    assert get(portal, "/ea/whoami", broken_bearer, cookie_header(cookies["ea"])).status_code == 401


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
    renewed = [v for v in response.headers.get_list("set-cookie") if v.startswith(f"{COOKIE}=")]
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
