"""Levels from a provider's claims, one test per provider family's shape, through a real login;
then the mapping functions on their own."""

from __future__ import annotations

from pathlib import Path

import pytest

from portal_asgi.levels import Levels
from portal_asgi.oidc.claims import (
    claim_at,
    claim_values,
    fallback_username,
    level_from,
    username_from,
)

from .oidc.browser import Browser
from .oidc.harness import PORTAL_USERINFO, Provider, oidc_portal
from .servers import mount_path

LEVELS = Levels(("stable", "ea", "devel", "admin"))
ABOVE = {"stable": "ea", "ea": "devel", "devel": "admin", "admin": None}


@pytest.mark.parametrize(
    ("account", "level_claim", "prefix", "expected"),
    [
        # Auth0: the access token's `scope` string ("access:stable access:ea")
        ("auth0-scope", "scope", "access:", "ea"),
        # Auth0 RBAC: the access token's `permissions` array
        ("auth0-permissions", "permissions", "access:", "devel"),
        # Okta: `groups` in the ID token, named with a prefix of the admin's choosing
        ("okta-groups", "groups", "portal-", "ea"),
        # Cognito: `cognito:groups` in the ID token
        ("cognito-groups", "cognito:groups", "portal_", "admin"),
        # Keycloak: realm roles, nested under `realm_access.roles`
        ("keycloak-roles", "realm_access.roles", "access:", "devel"),
        # no level named anywhere: the lowest level, what every signed-in user holds
        ("no-levels", "groups", "portal-", "stable"),
    ],
    ids=["auth0-scope", "auth0-permissions", "okta", "cognito", "keycloak", "none"],
)
def test_level_from_each_provider_shape(
    oidc_provider: Provider,
    tmp_path: Path,
    account: str,
    level_claim: str,
    prefix: str,
    expected: str,
) -> None:
    with oidc_portal(
        tmp_path, oidc_provider, level_claim=level_claim, level_prefix=prefix
    ) as running:
        with Browser(running.url) as browser:
            assert browser.login(account).status_code == 303
            whoami = browser.get(f"{mount_path(expected)}/whoami")
            assert whoami.status_code == 200
            assert whoami.json()["level"] == expected
            above = ABOVE[expected]
            if above is not None:
                denied = browser.get(
                    f"{mount_path(above)}/whoami", headers={"accept": "application/json"}
                )
                assert denied.status_code == 403


def test_claim_at_reads_names_and_dotted_paths() -> None:
    claims = {
        "scope": "openid access:ea",
        "realm_access": {"roles": ["access:devel"]},
        "https://portal.example/roles": ["access:admin"],  # Auth0 namespaced claim
        "cognito:groups": ["portal_ea"],
    }
    assert claim_at(claims, "scope") == "openid access:ea"
    assert claim_at(claims, "realm_access.roles") == ["access:devel"]
    assert claim_at(claims, "https://portal.example/roles") == ["access:admin"]
    assert claim_at(claims, "cognito:groups") == ["portal_ea"]
    assert claim_at(claims, "realm_access.missing") is None
    assert claim_at(claims, "scope.deeper") is None


def test_claim_values_take_scope_strings_and_lists_only() -> None:
    assert claim_values("openid  access:ea\taccess:devel") == [
        "openid",
        "access:ea",
        "access:devel",
    ]
    assert claim_values(["a", 1, None, "b"]) == ["a", "b"]
    assert claim_values({"roles": ["access:admin"]}) == []
    assert claim_values(42) == []


def test_highest_level_wins_across_sources_and_unknown_names_count_for_nothing() -> None:
    id_token = {"groups": ["access:stable", "access:superuser"]}
    access = {"groups": ["access:devel", "ACCESS:admin"]}
    assert level_from([id_token, access], path="groups", prefix="access:", levels=LEVELS) == "devel"
    assert level_from([{}], path="groups", prefix="access:", levels=LEVELS) is None
    # a prefix match only: "xaccess:admin" is not "access:admin"
    assert (
        level_from([{"scope": "xaccess:admin"}], path="scope", prefix="access:", levels=LEVELS)
        is None
    )


def test_usernames_come_from_the_configured_claim_then_email_then_subject() -> None:
    assert username_from({"sub": "s", "email": "e@x", "nickname": "nick"}, "nickname") == "nick"
    assert username_from({"sub": "s", "email": "e@x"}, "preferred_username") == "e@x"
    assert username_from({"sub": "auth0|123"}, "preferred_username") == "auth0|123"
    assert username_from({"sub": "s", "preferred_username": "Ann Lee"}, "preferred_username") == (
        "Ann_Lee"
    )
    assert fallback_username("admin", "sub-1") != fallback_username("admin", "sub-2")
    assert fallback_username("admin", "sub-1").startswith("admin~")


def test_level_from_userinfo_when_the_id_token_lacks_the_claim(
    oidc_provider: Provider, tmp_path: Path
) -> None:
    # Levels from the ID token's claims, and userinfo where it lacks them (docs/oidc.md).
    with oidc_portal(
        tmp_path,
        oidc_provider,
        client=PORTAL_USERINFO,
        level_claim="groups",
        level_prefix="portal-",
        audience=None,
        scopes="openid profile email",
    ) as running:
        with Browser(running.url) as browser:
            assert browser.login("userinfo-groups").status_code == 303
            whoami = browser.get("/devel/whoami")
            assert whoami.status_code == 200 and whoami.json()["level"] == "devel"
