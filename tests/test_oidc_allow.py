"""Who the OpenID provider may sign in (`[auth.oidc] allowed_groups`, `allowed_email_domains`,
`require_level_claim`), against the real provider: a refused person gets a 403 page saying whom to
ask, a `login.refused` audit entry with the reason, no session and no user row; their access tokens
are refused as Bearer too. Without these rules anyone the provider knows gets in (with self-sign-up,
anyone on the internet)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2
import pytest

from portal_asgi.exceptions import SettingsError
from portal_asgi.settings import OIDCSettings, load_settings

from .oidc.browser import Browser, user_access_token
from .oidc.harness import AUDIENCE, OTHER_APP, Provider, audit_events, oidc_portal, user_row
from .servers import RunningPortal, settings_text

CONTACT = "portal-admins@lab.example"
JSON = {"accept": "application/json"}


@contextmanager
def _portal(tmp: Path, provider: Provider, rules: str, **settings: str) -> Iterator[RunningPortal]:
    extra = f'access_contact = "{CONTACT}"\n{rules}\n'
    with oidc_portal(tmp, provider, extra=extra, **settings) as running:
        yield running


def _assert_refused(portal: RunningPortal, account: str, reason_part: str) -> None:
    """`account` signs in at the provider and is turned away by the portal."""
    with Browser(portal.url) as browser:
        refused = browser.login(account)
        assert refused.status_code == 403, refused.text
        assert "not allowed into this portal" in refused.text
        assert f"ask {CONTACT}" in refused.text
        assert not any(
            c.startswith("portal_session=") for c in refused.headers.get_list("set-cookie")
        )
        assert browser.cookie("portal_session") is None
        assert browser.get("/stable/whoami", headers=JSON).status_code == 401

    def audited() -> bool:
        return any(
            event.get("subject") == account and reason_part in str(event.get("reason", ""))
            for event in audit_events(portal, "login.refused")
        )

    portal.wait_until(audited, timeout=15.0)
    assert user_row(portal, subject=account) is None  # refused before the user table


def _assert_let_in(portal: RunningPortal, account: str) -> None:
    with Browser(portal.url) as browser:
        assert browser.login(account).status_code == 303
        assert browser.get("/stable/whoami", headers=JSON).status_code == 200


def _bearer_status(portal: RunningPortal, provider: Provider, account: str) -> int:
    """What the portal answers `account`'s own access token (got by another client of theirs)."""
    token = user_access_token(provider.issuer, account, OTHER_APP, AUDIENCE)
    with httpx2.Client(base_url=portal.url, timeout=10) as client:
        headers = {"authorization": f"Bearer {token}", **JSON}
        return client.get("/stable/whoami", headers=headers).status_code


def test_allowed_groups_refuses_someone_in_none_of_them(
    oidc_provider: Provider, tmp_path: Path
) -> None:
    # With self-sign-up anyone can hold an account at the provider; only the group says "ours".
    with _portal(tmp_path, oidc_provider, 'allowed_groups = ["portal-ea", "staff"]') as portal:
        _assert_refused(portal, "no-levels", "not in allowed_groups")
        _assert_let_in(portal, "okta-groups")  # groups: Everyone, portal-ea, portal-stable
        assert _bearer_status(portal, oidc_provider, "no-levels") == 401
        assert _bearer_status(portal, oidc_provider, "okta-groups") == 200


def test_allowed_groups_reads_the_configured_groups_claim(
    oidc_provider: Provider, tmp_path: Path
) -> None:
    rules = 'groups_claim = "cognito:groups"\nallowed_groups = ["portal_admin"]'
    with _portal(tmp_path, oidc_provider, rules) as portal:
        _assert_refused(portal, "okta-groups", "cognito:groups claim")
        _assert_let_in(portal, "cognito-groups")


def test_allowed_email_domains_refuses_other_domains_and_unverified_addresses(
    oidc_provider: Provider, tmp_path: Path
) -> None:
    # An address the provider has not verified is anyone's to type in at self-sign-up.
    with _portal(tmp_path, oidc_provider, 'allowed_email_domains = ["IDP.example"]') as portal:
        _assert_refused(portal, "elsewhere", "'elsewhere.example' is not in allowed_email_domains")
        _assert_refused(portal, "unverified-email", "is not verified")
        _assert_let_in(portal, "okta-groups")  # okta-groups@idp.example, verified
        # access tokens carry no verified address here (as Auth0's): refused as Bearer
        assert _bearer_status(portal, oidc_provider, "unverified-email") == 401


def test_require_level_claim_refuses_users_the_provider_gave_no_level(
    oidc_provider: Provider, tmp_path: Path
) -> None:
    # Without the rule they would get in at the lowest level, `stable`.
    with _portal(
        tmp_path,
        oidc_provider,
        "require_level_claim = true",
        level_claim="groups",
        level_prefix="portal-",
    ) as portal:
        _assert_refused(portal, "no-levels", "no level in the groups claim")
        _assert_let_in(portal, "okta-groups")
        assert _bearer_status(portal, oidc_provider, "no-levels") == 401
        assert _bearer_status(portal, oidc_provider, "okta-groups") == 200


def _settings(tmp: Path, rules: str) -> OIDCSettings:
    auth = (
        'provider = "oidc"\n\n[auth.oidc]\nissuer = "https://idp.example"\n'
        f'client_id = "portal"\nclient_secret = "s"\n{rules}\n'
    )
    file = tmp / "settings.toml"
    file.write_text(settings_text(tmp, auth=auth))
    oidc = load_settings(file).auth.oidc
    assert oidc is not None
    return oidc


def test_allow_list_settings_are_checked_and_normalised(tmp_path: Path) -> None:
    oidc = _settings(
        tmp_path,
        'allowed_groups = ["Portal Staff"]\nallowed_email_domains = ["@Lab.Example.org"]\n'
        'require_level_claim = true\ngroups_claim = "cognito:groups"',
    )
    assert oidc.allowed_groups == ("Portal Staff",) and oidc.groups_claim == "cognito:groups"
    assert oidc.allowed_email_domains == ("lab.example.org",) and oidc.require_level_claim
    defaults = _settings(tmp_path, "")
    assert defaults.allowed_groups == () and defaults.groups_claim == "groups"
    assert defaults.allowed_email_domains == () and not defaults.require_level_claim
    # a string would have to be split, and group names may hold spaces
    with pytest.raises(SettingsError, match="allowed_groups"):
        _settings(tmp_path, 'allowed_groups = "Portal Staff"')
    with pytest.raises(SettingsError, match="allowed_email_domains"):
        _settings(tmp_path, 'allowed_email_domains = ["someone@lab.example.org"]')
