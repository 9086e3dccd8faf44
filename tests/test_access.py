"""The one verdict on a caller (access.py), asked by requests and by open WebSockets alike."""

from __future__ import annotations

import math

import pytest

from portal_asgi import access
from portal_asgi.db.engine import Database
from portal_asgi.db.store import UserState
from portal_asgi.directory import NEVER, Directory
from portal_asgi.levels import Levels
from portal_asgi.user import PortalUser

LEVELS = Levels(("stable", "ea", "devel", "admin"))


@pytest.fixture
def directory() -> Directory:
    found = Directory(Database("sqlite+aiosqlite:///:memory:"), interval=1)
    found.users = {
        "ann": UserState("ea", True, "ann@example.org", "Ann", uid="u-ann"),
        "off": UserState("admin", False, "", "", uid="u-off"),
    }
    return found


def user(name: str, uid: str, **changes: object) -> PortalUser:
    fields: dict[str, object] = {"level": "stable", "sid": "s1", "expires": math.inf} | changes
    return PortalUser(username=name, uid=uid, **fields)  # type: ignore[arg-type]


def test_a_good_session_reaches_its_level_and_below_from_the_directory(
    directory: Directory,
) -> None:
    ann = user("ann", "u-ann", level="admin")  # the claim is not what counts
    assert access.verdict(directory, LEVELS, ann, "ea", 0) == access.GOOD
    assert access.verdict(directory, LEVELS, ann, "devel", 0) == access.BARRED


def test_revoked_expired_removed_or_renamed_ends_the_session(directory: Directory) -> None:
    directory.revoked["gone"] = NEVER
    assert access.standing(directory, user("ann", "u-ann", sid="gone"), 0) == access.ENDED
    assert access.standing(directory, user("ann", "u-ann", expires=10), 10) == access.ENDED
    assert access.standing(directory, user("bob", "u-bob"), 0) == access.ENDED
    # the name is someone else's now: the token's id does not fit
    assert access.standing(directory, user("ann", "u-old-ann"), 0) == access.ENDED


def test_a_disabled_user_is_barred_before_anything_else(directory: Directory) -> None:
    directory.revoked["s1"] = NEVER  # disabling revokes too; barred still wins
    assert access.standing(directory, user("off", "u-off"), 0) == access.BARRED


def test_a_provider_token_keeps_its_own_level_and_expiry(directory: Directory) -> None:
    machine = user("client-7", "", via="provider", level="devel", expires=100)
    assert access.verdict(directory, LEVELS, machine, "devel", 50) == access.GOOD
    assert access.verdict(directory, LEVELS, machine, "devel", 100) == access.ENDED
    disabled = user("off", "u-off", via="provider", level="admin")
    assert access.standing(directory, disabled, 0) == access.BARRED


def test_anonymous_reaches_public_only(directory: Directory) -> None:
    assert access.verdict(directory, LEVELS, None, "public", 0) == access.GOOD
    assert access.verdict(directory, LEVELS, None, "stable", 0) == access.ENDED
