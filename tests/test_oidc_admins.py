"""The first admin of an OIDC portal: no local `admin` with a password nobody could use, but
whoever `[auth.oidc] admins` names (a verified email address, or the exact `username_claim`),
at the highest level at every sign-in and on their Bearer tokens, whatever the claims say.
Against the real provider (panva's oidc-provider on loopback)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx2
import pytest

from portal_asgi.db import store
from portal_asgi.levels import Levels
from portal_asgi.oidc.allow import Refusal
from portal_asgi.oidc.resolve import Claimed, identify
from portal_asgi.settings import OIDCSettings, Secret

from .oidc.browser import Browser, user_access_token
from .oidc.harness import (
    AUDIENCE,
    OTHER_APP,
    Provider,
    audit_events,
    oidc_portal,
    oidc_settings,
    user_row,
)
from .servers import serve

JSON = {"accept": "application/json"}
LEVELS = Levels(("stable", "ea", "devel", "admin"))


def _whoami(browser: Browser, path: str) -> httpx2.Response:
    return browser.get(path, headers=JSON)


def _assert_nothing_leaked(response: httpx2.Response, browser: Browser | None = None) -> None:
    """A refusal: no product answered, no session was handed out."""
    assert response.headers.get("content-type", "").startswith(("application/json", "text/html"))
    assert '"mount_level"' not in response.text  # the test product's body
    assert not any(c.startswith("portal_session=") for c in response.headers.get_list("set-cookie"))
    if browser is not None:
        assert browser.cookie("portal_session") is None


def test_oidc_mode_creates_no_local_admin_and_prints_no_password(
    oidc_provider: Provider,
    tmp_path: Path,
    database_url: str,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A local `admin` nobody can sign in as is a name waiting to be misused, and its one-time
    # password in a log is a secret for nothing.
    monkeypatch.delenv("PORTAL_ADMIN_PASSWORD", raising=False)
    oidc = tmp_path / "oidc"
    oidc.mkdir()
    with serve(oidc, auth=oidc_settings(oidc_provider), database_url=database_url) as running:
        assert running.run_db(store.count_users) == 0
        assert running.run_db(lambda db: store.get_user(db, "admin")) is None
        with running.client() as client:
            page = client.get("/auth/login")
            assert "Continue with Test IdP" in page.text and 'name="password"' not in page.text
    assert "one-time password" not in capfd.readouterr().err
    # the local provider still gets its first admin, printed once (and this capture sees it)
    local = tmp_path / "local"
    local.mkdir()
    with serve(local) as running:
        assert running.run_db(lambda db: store.get_user(db, "admin")) is not None
    assert "created user 'admin' with one-time password" in capfd.readouterr().err


def test_admins_entry_by_verified_email_signs_in_at_the_highest_level(
    oidc_provider: Provider, tmp_path: Path
) -> None:
    # The provider gives auth0-scope `ea`; the settings name them (any letter case) admin.
    extra = 'admins = ["Auth0-Scope@IDP.example"]\n'
    with oidc_portal(tmp_path, oidc_provider, extra=extra) as running:
        with Browser(running.url) as browser:
            assert browser.login("auth0-scope", next_path="/top/whoami").status_code == 303
            top = _whoami(browser, "/top/whoami")
            assert top.status_code == 200
            assert top.json()["user"] == "auth0-scope" and top.json()["level"] == "admin"
        row = user_row(running, subject="auth0-scope")
        assert row is not None and row.level == "admin"
        logins = [e for e in audit_events(running, "login") if e["username"] == "auth0-scope"]
        assert logins and logins[-1]["level"] == "admin" and "admins" in logins[-1]["admin"]
        # someone the settings do not name keeps what the provider gives
        with Browser(running.url) as other:
            assert other.login("okta-groups").status_code == 303
            refused = _whoami(other, "/top/whoami")
            assert refused.status_code == 403
            _assert_nothing_leaked(refused)


def test_admins_entry_by_username_holds_at_sign_in_and_on_bearer_tokens(
    oidc_provider: Provider, tmp_path: Path
) -> None:
    # level_source = "database": the table would say `stable` for a newcomer; `admins` wins, at
    # sign-in and on the person's own access token (which carries their preferred_username).
    extra = 'admins = ["no-levels"]\n'
    with oidc_portal(tmp_path, oidc_provider, level_source="database", extra=extra) as running:
        with Browser(running.url) as browser:
            assert browser.login("no-levels").status_code == 303
            top = _whoami(browser, "/top/whoami")
            assert top.status_code == 200 and top.json()["level"] == "admin"
        token = user_access_token(oidc_provider.issuer, "no-levels", OTHER_APP, AUDIENCE)
        with running.client() as client:
            bearer = client.get("/top/whoami", headers={"authorization": f"Bearer {token}", **JSON})
            assert bearer.status_code == 200
            assert bearer.json()["user"] == "no-levels" and bearer.json()["level"] == "admin"
            # another person's token, with the same provider and client, is not made admin
            other = user_access_token(oidc_provider.issuer, "okta-groups", OTHER_APP, AUDIENCE)
            refused = client.get(
                "/top/whoami", headers={"authorization": f"Bearer {other}", **JSON}
            )
            assert refused.status_code == 403
            _assert_nothing_leaked(refused)


def test_admins_entry_needs_a_verified_email(oidc_provider: Provider, tmp_path: Path) -> None:
    # An unverified address is anyone's to type in at self-sign-up. With a `username_claim` the
    # provider does not send, the portal name falls back to that address: still no match.
    extra = 'admins = ["unverified-email@idp.example"]\nusername_claim = "nickname"\n'
    with oidc_portal(tmp_path, oidc_provider, extra=extra) as running:
        with Browser(running.url) as browser:
            assert browser.login("unverified-email").status_code == 303
            stable = _whoami(browser, "/stable/whoami")
            assert stable.json()["user"] == "unverified-email@idp.example"
            assert stable.json()["level"] == "stable"
            refused = _whoami(browser, "/top/whoami")
            assert refused.status_code == 403
            _assert_nothing_leaked(refused)
        row = user_row(running, subject="unverified-email")
        assert row is not None and row.level == "stable"


def test_admins_are_let_in_past_the_sign_in_rules(oidc_provider: Provider, tmp_path: Path) -> None:
    # require_level_claim refuses whoever the provider gave no level; the named admin is the
    # operator's own word and gets in.
    extra = 'admins = ["no-levels"]\nrequire_level_claim = true\n'
    with oidc_portal(tmp_path, oidc_provider, extra=extra) as running:
        with Browser(running.url) as admin:
            assert admin.login("no-levels").status_code == 303
            assert _whoami(admin, "/top/whoami").json()["level"] == "admin"
        with Browser(running.url) as stranger:
            refused = stranger.login("okta-groups")  # no access: scope, so no level
            assert refused.status_code == 403 and "not allowed into this portal" in refused.text
            _assert_nothing_leaked(refused, stranger)
            after = _whoami(stranger, "/stable/whoami")
            assert after.status_code == 401
            _assert_nothing_leaked(after, stranger)
        assert user_row(running, subject="okta-groups") is None


def _settings(**overrides: Any) -> OIDCSettings:
    return OIDCSettings(
        issuer="https://idp.example", client_id="portal", client_secret=Secret("s"), **overrides
    )


def _claims(**claims: Any) -> Mapping[str, Any]:
    return {"sub": "s-1", "preferred_username": "alice", **claims}


@pytest.mark.parametrize(
    ("admins", "claims", "admin"),
    [
        (("alice@lab.example",), _claims(email="Alice@Lab.example", email_verified=True), True),
        (("alice@lab.example",), _claims(email="alice@lab.example", email_verified="true"), True),
        (("alice@lab.example",), _claims(email="alice@lab.example", email_verified=False), False),
        (("alice@lab.example",), _claims(email="alice@lab.example"), False),
        (("alice",), _claims(), True),
        (("Alice",), _claims(), False),  # usernames match exactly
        (("s-1",), _claims(), False),  # not by subject
        ((), _claims(email="alice@lab.example", email_verified=True), False),
    ],
)
def test_who_the_admins_entries_name(
    admins: tuple[str, ...], claims: Mapping[str, Any], admin: bool
) -> None:
    who = identify(_settings(admins=admins), [claims], levels=LEVELS)
    assert isinstance(who, Claimed)
    assert who.admin is admin
    assert who.level == ("admin" if admin else "stable")


def test_one_rule_for_sign_in_and_bearer_levels() -> None:
    claims = _claims(scope="openid access:ea")
    assert identify(_settings(), [claims], levels=LEVELS) == Claimed(
        "s-1", "alice", "", "", "ea", False
    )
    database = identify(_settings(level_source="database"), [claims], levels=LEVELS)
    assert isinstance(database, Claimed) and database.level is None
    assert database.level_with("devel", LEVELS) == "devel"
    assert database.level_with(None, LEVELS) == "stable"
    named = identify(_settings(level_source="database", admins=("alice",)), [claims], levels=LEVELS)
    assert isinstance(named, Claimed) and named.level_with("stable", LEVELS) == "admin"
    refused = identify(_settings(require_level_claim=True), [_claims()], levels=LEVELS)
    assert isinstance(refused, Refusal)
