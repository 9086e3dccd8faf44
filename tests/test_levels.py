"""Levels: `public`, then the configured ones low to high, carried as cumulative scopes."""

from __future__ import annotations

import pytest

from portal_asgi.levels import PUBLIC, Levels

LEVELS = Levels(("stable", "ea", "devel", "admin"))


def test_order() -> None:
    assert LEVELS.names == ("public", "stable", "ea", "devel", "admin")
    assert [LEVELS.rank(name) for name in LEVELS.names] == [0, 1, 2, 3, 4]
    assert LEVELS.lowest == "stable"
    assert LEVELS.highest == "admin"
    assert PUBLIC in LEVELS and "devel" in LEVELS
    assert "root" not in LEVELS


def test_unknown_levels_rank_below_public() -> None:
    assert LEVELS.rank("root") == -1
    assert LEVELS.rank("") == -1
    assert LEVELS.rank("Admin") == -1


@pytest.mark.parametrize(
    ("held", "allowed"),
    [
        (None, {"public"}),
        ("stable", {"public", "stable"}),
        ("ea", {"public", "stable", "ea"}),
        ("devel", {"public", "stable", "ea", "devel"}),
        ("admin", {"public", "stable", "ea", "devel", "admin"}),
    ],
)
def test_allows_is_cumulative(held: str | None, allowed: set[str]) -> None:
    assert {name for name in LEVELS.names if LEVELS.allows(held, name)} == allowed


def test_allows_denies_by_default() -> None:
    assert not LEVELS.allows("admin", "root")  # a mount at an unknown level: nobody
    assert not LEVELS.allows("root", "stable")  # a user at an unknown level: nothing but public
    assert LEVELS.allows("root", "public")
    assert not LEVELS.allows("public", "stable")  # "public" is not a level a user can hold
    assert not LEVELS.allows("", "stable")
    assert not LEVELS.allows("Admin", "stable")


@pytest.mark.parametrize(
    ("level", "scopes"),
    [
        ("stable", ["access:stable"]),
        ("ea", ["access:stable", "access:ea"]),
        ("devel", ["access:stable", "access:ea", "access:devel"]),
        ("admin", ["access:stable", "access:ea", "access:devel", "access:admin"]),
        ("public", []),
        ("root", []),
    ],
)
def test_cumulative_scopes(level: str, scopes: list[str]) -> None:
    assert LEVELS.scopes(level) == scopes


def test_scopes_with_another_prefix() -> None:
    levels = Levels(("member", "staff"), prefix="portal/")
    assert levels.scopes("staff") == ["portal/member", "portal/staff"]
    assert levels.highest_in(["portal/staff"]) == "staff"


@pytest.mark.parametrize(
    ("values", "prefix", "found"),
    [
        (["access:stable", "access:ea", "access:devel"], None, "devel"),
        (["access:devel", "access:stable"], None, "devel"),  # order does not matter
        (["access:ea"], None, "ea"),  # a lone scope counts: no need for the lower ones
        (["openid", "profile", "access:admin", "email"], None, "admin"),
        (["access:root", "access:stable"], None, "stable"),  # unknown names are skipped
        (["access:public"], None, None),  # public is not a level a user holds
        (["access:Admin"], None, None),
        (["stable", "ea"], None, None),  # no prefix, no level
        ([], None, None),
        (["portal-ea", "portal-devel"], "portal-", "devel"),
        (["stable", "ea"], "", "ea"),  # groups named after the levels themselves
        (["access:admin"], "portal-", None),  # another prefix: not ours
        (["access:stableish"], None, None),
    ],
)
def test_highest_in(values: list[str], prefix: str | None, found: str | None) -> None:
    assert LEVELS.highest_in(values, prefix) == found


def test_highest_in_accepts_any_iterable() -> None:
    assert LEVELS.highest_in(iter(("access:stable", "access:ea"))) == "ea"
    assert LEVELS.highest_in("access:ea access:devel".split()) == "devel"


def test_custom_levels() -> None:
    levels = Levels(("member", "staff", "owner"))
    assert levels.names == ("public", "member", "staff", "owner")
    assert levels.lowest == "member"
    assert levels.highest == "owner"
    assert levels.allows("staff", "member")
    assert not levels.allows("member", "staff")
    assert not levels.allows("admin", "member")  # a default level name means nothing here
    assert levels.scopes("owner") == ["access:member", "access:staff", "access:owner"]
