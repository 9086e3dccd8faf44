"""Single sign-on through a real OpenID provider (panva's oidc-provider on loopback): the
authorization code flow with PKCE, the user upserted, the portal session opened."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from portal_asgi.db import store
from portal_asgi.jose_utils import unverified_claims

from .oidc.browser import Browser, query
from .oidc.harness import (
    PORTAL_ES,
    PORTAL_POST,
    Provider,
    audit_events,
    oidc_portal,
    user_row,
)
from .servers import RunningPortal


@pytest.fixture(scope="module")
def portal(
    oidc_provider: Provider, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningPortal]:
    with oidc_portal(tmp_path_factory.mktemp("oidc-login"), oidc_provider) as running:
        yield running


def test_login_page_offers_the_provider_not_a_password_form(portal: RunningPortal) -> None:
    with Browser(portal.url) as browser:
        page = browser.get("/auth/login?next=/ea/")
        assert page.status_code == 200
        assert "Continue with Test IdP" in page.text
        assert "/auth/login?next=/ea/&amp;go=1" in page.text
        assert 'name="password"' not in page.text
        # no local password login beside the provider
        # /auth/login exists for GET and HEAD only: a POST is the wrong method, not a lost page
        assert browser.client.post(portal.url + "/auth/login", data={}).status_code == 405


def test_authorization_request_carries_pkce_s256_state_and_nonce(
    portal: RunningPortal, oidc_provider: Provider
) -> None:
    with Browser(portal.url) as browser:
        response = browser.get("/auth/login", params={"next": "/ea/", "go": "1"})
        assert response.status_code == 303
        url = response.headers["location"]
        assert url.startswith(oidc_provider.issuer + "/auth?")
        params = query(url)
        assert params["response_type"] == "code"
        assert params["client_id"] == "portal"
        assert params["redirect_uri"] == portal.url + "/auth/callback"
        assert params["code_challenge_method"] == "S256"
        assert len(params["state"]) >= 20 and len(params["nonce"]) >= 20
        assert "openid" in params["scope"].split()
        assert "code_verifier" not in params
        # the transaction sits in its own short-lived cookie, not the session cookie
        cookies = response.headers.get_list("set-cookie")
        login = [c for c in cookies if c.startswith("portal_oidc_login=")]
        assert len(login) == 1
        assert "HttpOnly" in login[0] and "SameSite=Lax" in login[0] and "Max-Age=600" in login[0]
        assert not any(c.startswith("portal_session=") for c in cookies)


def test_login_opens_a_session_at_the_level_the_provider_gives(portal: RunningPortal) -> None:
    with Browser(portal.url) as browser:
        done = browser.login("auth0-scope", next_path="/ea/whoami")
        assert done.status_code == 303
        assert done.headers["location"] == "/ea/whoami"
        cookies = done.headers.get_list("set-cookie")
        assert any(c.startswith("portal_session=") and "HttpOnly" in c for c in cookies)
        assert any(c.startswith("portal_oidc_login=;") and "Max-Age=0" in c for c in cookies)
        whoami = browser.get("/ea/whoami")
        assert whoami.status_code == 200
        assert whoami.json() | {"root": "", "path": ""} == {
            "user": "auth0-scope",
            "email": "auth0-scope@idp.example",
            "level": "ea",
            "root": "",
            "path": "",
            "mount_level": "ea",
        }
        assert (
            browser.get("/devel/whoami", headers={"accept": "application/json"}).status_code == 403
        )
        # the session is the portal's own JWT, not the provider's token
        session = browser.cookie("portal_session")
        assert session is not None
        claims = unverified_claims(session)
        assert claims["sub"] == "auth0-scope" and claims["lvl"] == "ea"


def test_login_upserts_the_user_with_subject_email_name_and_last_login(
    portal: RunningPortal,
) -> None:
    with Browser(portal.url) as browser:
        assert browser.login("okta-groups").status_code == 303
    first = user_row(portal, subject="okta-groups")
    assert first is not None
    assert (first.provider, first.username, first.email, first.name) == (
        "oidc",
        "okta-groups",
        "okta-groups@idp.example",
        "Test okta-groups",
    )
    assert first.password_hash is None
    assert first.last_login_at is not None
    with Browser(portal.url) as browser:
        assert browser.login("okta-groups").status_code == 303
    again = user_row(portal, subject="okta-groups")
    assert again is not None and again.id == first.id  # the same row, refreshed
    logins = [e for e in audit_events(portal, "login") if e["username"] == "okta-groups"]
    assert len(logins) >= 2 and all(e["provider"] == "oidc" for e in logins)


@pytest.mark.parametrize(
    ("client", "method"),
    [(PORTAL_POST, "client_secret_post"), (PORTAL_ES, "client_secret_basic")],
    ids=["client_secret_post", "es256-id-token"],
)
def test_client_authentication_methods_and_es256_id_tokens(
    oidc_provider: Provider, tmp_path: Path, client: tuple[str, str], method: str
) -> None:
    with oidc_portal(tmp_path, oidc_provider, client=client, method=method) as running:
        with Browser(running.url) as browser:
            assert browser.login("auth0-scope").status_code == 303
            assert browser.get("/ea/whoami").json()["level"] == "ea"


def test_provider_user_named_like_a_local_account_does_not_take_it_over(
    oidc_provider: Provider, tmp_path: Path
) -> None:
    # An account at the provider whose preferred_username is "admin" must not become the
    # portal's local "admin" (account takeover by username).
    with oidc_portal(
        tmp_path, oidc_provider, level_claim="groups", level_prefix="portal-"
    ) as running:
        running.add_user("admin", "admin")  # OIDC mode creates no local admin by itself
        with Browser(running.url) as browser:
            assert browser.login("impostor").status_code == 303
            whoami = browser.get("/top/whoami").json()
            assert whoami["user"].startswith("admin~") and whoami["level"] == "admin"
        local = running.run_db(lambda db: store.get_user(db, "admin"))
        assert local is not None and local.provider == "local"
        impostor = user_row(running, subject="impostor")
        assert impostor is not None and impostor.username != "admin"


def test_level_source_database_keeps_the_level_the_admin_set(
    oidc_provider: Provider, tmp_path: Path
) -> None:
    with oidc_portal(tmp_path, oidc_provider, level_source="database") as running:
        with Browser(running.url) as browser:
            assert browser.login("auth0-scope").status_code == 303
            # the provider says ea; the portal's table says the lowest level until an admin acts
            assert browser.get("/stable/whoami").json()["level"] == "stable"
            assert (
                browser.get("/ea/whoami", headers={"accept": "application/json"}).status_code == 403
            )
        running.run_db(lambda db: store.set_level(db, "auth0-scope", "devel"))
        with Browser(running.url) as browser:
            assert browser.login("auth0-scope").status_code == 303
            assert browser.get("/devel/whoami").json()["level"] == "devel"


def test_disabled_user_cannot_sign_in_through_the_provider(
    oidc_provider: Provider, tmp_path: Path
) -> None:
    with oidc_portal(tmp_path, oidc_provider) as running:
        with Browser(running.url) as browser:
            assert browser.login("no-levels").status_code == 303
        running.run_db(lambda db: store.set_active(db, "no-levels", False))
        with Browser(running.url) as browser:
            refused = browser.login("no-levels")
            assert refused.status_code == 403
            assert "disabled" in refused.text
            assert browser.cookie("portal_session") is None
            assert (
                browser.get("/stable/whoami", headers={"accept": "application/json"}).status_code
                == 401
            )


def test_next_survives_the_round_trip_and_foreign_next_does_not(portal: RunningPortal) -> None:
    with Browser(portal.url) as browser:
        assert (
            browser.login("auth0-scope", next_path="/disagg/v1/").headers["location"]
            == "/disagg/v1/"
        )
    with Browser(portal.url) as browser:
        assert browser.login("auth0-scope", next_path="//evil.example/").headers["location"] == "/"


def test_signed_in_user_visiting_login_goes_straight_on(portal: RunningPortal) -> None:
    with Browser(portal.url) as browser:
        assert browser.login("auth0-scope").status_code == 303
        again = browser.get("/auth/login", params={"next": "/ea/", "go": "1"})
        assert again.status_code == 303 and again.headers["location"] == "/ea/"
