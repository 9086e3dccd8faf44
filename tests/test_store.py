"""The database layer (portal_asgi.db.store), each test once on SQLite and once on MariaDB."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from portal_asgi.db import store
from portal_asgi.db.engine import Database
from portal_asgi.db.models import AuditEvent, Session
from portal_asgi.exceptions import UserError

pytestmark = pytest.mark.anyio

HOUR = 3600.0


async def test_add_get_and_list_users(db: Database) -> None:
    added = await store.add_user(
        db, "alice", level="ea", password="alice-password", email="a@example.org", name="Alice"
    )
    await store.add_user(db, "bob", level="stable", password=None)

    got = await store.get_user(db, "alice")
    assert got == added
    assert (got.username, got.level, got.email, got.name) == (
        "alice",
        "ea",
        "a@example.org",
        "Alice",
    )
    assert got.active and got.provider == "local" and got.last_login_at is None
    assert await store.get_user(db, "nobody") is None
    assert [u.username for u in await store.list_users(db)] == ["alice", "bob"]
    assert await store.count_users(db) == 2


async def test_duplicate_user_is_refused(db: Database) -> None:
    await store.add_user(db, "alice", level="ea", password="first-password")
    with pytest.raises(UserError, match="already exists"):
        await store.add_user(db, "alice", level="admin", password="second-password")
    # The first account is untouched: same level, same password.
    assert (await store.get_user(db, "alice")).level == "ea"  # type: ignore[union-attr]
    assert await store.check_password(db, "alice", "first-password") is not None
    assert await store.check_password(db, "alice", "second-password") is None
    assert await store.count_users(db) == 1


@pytest.mark.parametrize("username", ["", "two words", "x" * 151])
async def test_bad_usernames_are_refused(db: Database, username: str) -> None:
    with pytest.raises(UserError):
        await store.add_user(db, username, level="ea", password="some-password")
    assert await store.count_users(db) == 0


async def test_check_password(db: Database) -> None:
    await store.add_user(db, "alice", level="devel", password="right-password")
    await store.add_user(db, "carol", level="devel", password=None)  # an OIDC-only user

    user = await store.check_password(db, "alice", "right-password")
    assert user is not None and user.username == "alice" and user.level == "devel"
    assert await store.check_password(db, "alice", "wrong-password") is None
    assert await store.check_password(db, "alice", "") is None
    assert await store.check_password(db, "nobody", "right-password") is None
    assert await store.check_password(db, "carol", "") is None

    await store.set_active(db, "alice", False)
    assert await store.check_password(db, "alice", "right-password") is None
    await store.set_active(db, "alice", True)
    assert await store.check_password(db, "alice", "right-password") is not None


async def test_set_password(db: Database) -> None:
    await store.add_user(db, "alice", level="ea", password="old-password")
    await store.set_password(db, "alice", "new-password")
    assert await store.check_password(db, "alice", "old-password") is None
    assert await store.check_password(db, "alice", "new-password") is not None


async def test_set_level(db: Database) -> None:
    await store.add_user(db, "alice", level="stable", password=None)
    await store.set_level(db, "alice", "devel")
    assert (await store.get_user(db, "alice")).level == "devel"  # type: ignore[union-attr]
    with pytest.raises(UserError, match="no user"):
        await store.set_level(db, "nobody", "devel")


async def test_set_level_keeps_sessions(db: Database) -> None:
    """Changing a level does not end a session: it applies from the next request."""
    await store.add_user(db, "alice", level="stable", password=None)
    sid, _ = await store.open_session(db, "alice", lifetime=HOUR)
    await store.set_level(db, "alice", "ea")
    assert sid not in (await store.snapshot(db)).revoked


async def test_disabling_a_user_revokes_their_sessions_and_tokens(db: Database) -> None:
    await store.add_user(db, "alice", level="ea", password=None)
    await store.add_user(db, "bob", level="ea", password=None)
    browser, _ = await store.open_session(db, "alice", lifetime=HOUR)
    token, _ = await store.open_session(db, "alice", lifetime=30 * 24 * HOUR, kind="api")
    bobs, _ = await store.open_session(db, "bob", lifetime=HOUR)

    await store.set_active(db, "alice", False)

    snap = await store.snapshot(db)
    assert {browser, token} <= snap.revoked.keys()
    assert bobs not in snap.revoked
    assert snap.users["alice"] is not None and not snap.users["alice"].active
    assert not (await store.get_user(db, "alice")).active  # type: ignore[union-attr]
    with pytest.raises(UserError, match="disabled"):
        await store.open_session(db, "alice", lifetime=HOUR)


async def test_open_and_revoke_session(db: Database) -> None:
    await store.add_user(db, "alice", level="ea", password=None)
    sid, user = await store.open_session(db, "alice", lifetime=HOUR)
    assert user.username == "alice" and len(sid) >= 32
    assert (await store.get_user(db, "alice")).last_login_at is not None  # type: ignore[union-attr]

    async with db.session() as session:
        row = await session.get(Session, sid)
        assert row is not None and row.kind == "browser" and row.revoked_at is None
        assert (row.expires_at - row.created_at).total_seconds() == HOUR

    assert await store.revoke_session(db, sid) is True
    assert await store.revoke_session(db, sid) is False  # already revoked
    assert await store.revoke_session(db, "no-such-sid") is False
    assert sid in (await store.snapshot(db)).revoked


async def test_api_token_is_a_session_of_kind_api(db: Database) -> None:
    await store.add_user(db, "alice", level="ea", password=None)
    sid, _ = await store.open_session(db, "alice", lifetime=HOUR, kind="api", label="ci")
    async with db.session() as session:
        row = await session.get(Session, sid)
        assert row is not None and (row.kind, row.label) == ("api", "ci")
    # Minting a token is not a login.
    assert (await store.get_user(db, "alice")).last_login_at is None  # type: ignore[union-attr]


async def test_open_session_for_unknown_user(db: Database) -> None:
    with pytest.raises(UserError, match="no user"):
        await store.open_session(db, "nobody", lifetime=HOUR)


async def test_revoke_user_sessions(db: Database) -> None:
    """ "Sign out everywhere": every session of one user, nobody else's; the user stays active."""
    await store.add_user(db, "alice", level="ea", password=None)
    await store.add_user(db, "bob", level="ea", password=None)
    alice = [(await store.open_session(db, "alice", lifetime=HOUR))[0] for _ in range(3)]
    bob, _ = await store.open_session(db, "bob", lifetime=HOUR)

    await store.revoke_user_sessions(db, "alice")

    revoked = (await store.snapshot(db)).revoked
    assert set(alice) <= revoked.keys() and bob not in revoked
    assert (await store.get_user(db, "alice")).active  # type: ignore[union-attr]


async def test_delete_user_removes_their_sessions(db: Database) -> None:
    """The rows go; the user's tokens are refused because they name a uid nobody holds any
    more (tests/test_user_ids.py)."""
    await store.add_user(db, "alice", level="ea", password="alice-password")
    sid, _ = await store.open_session(db, "alice", lifetime=HOUR)
    await store.delete_user(db, "alice")
    assert await store.get_user(db, "alice") is None
    assert await store.check_password(db, "alice", "alice-password") is None
    async with db.session() as session:
        assert await session.get(Session, sid) is None
    assert "alice" not in (await store.snapshot(db)).users


async def test_snapshot_is_what_a_worker_needs(db: Database) -> None:
    empty = await store.snapshot(db)
    assert (empty.last_change, empty.users, empty.revoked, empty.mount_levels) == (0, {}, {}, {})

    await store.add_user(db, "alice", level="devel", password=None, email="a@example.org")
    sid, _ = await store.open_session(db, "alice", lifetime=HOUR)
    await store.revoke_session(db, sid)
    snap = await store.snapshot(db)
    assert snap.last_change > 0
    state = snap.users["alice"]
    assert state is not None
    assert (state.level, state.active, state.email) == ("devel", True, "a@example.org")
    assert snap.revoked.keys() == {sid}


async def test_snapshot_forgets_revocations_of_expired_sessions(db: Database) -> None:
    """An expired session is refused by its `exp` anyway; workers need not remember it, once
    `store.GRACE` has passed too (a token's `exp` may pass its row's by a request's length)."""
    await store.add_user(db, "alice", level="ea", password=None)
    grace = store.GRACE.total_seconds()
    long_gone, _ = await store.open_session(db, "alice", lifetime=-grace - 60)
    just_gone, _ = await store.open_session(db, "alice", lifetime=-60)
    await store.revoke_session(db, long_gone)
    await store.revoke_session(db, just_gone)
    revoked = (await store.snapshot(db)).revoked
    assert long_gone not in revoked
    assert just_gone in revoked


async def test_changes_since_tells_a_second_worker_what_changed(
    db: Database, other_worker: Database
) -> None:
    await store.add_user(db, "alice", level="stable", password=None)
    await store.add_user(db, "bob", level="ea", password=None)
    bobs, _ = await store.open_session(db, "bob", lifetime=HOUR)
    start = await store.snapshot(other_worker)
    assert await store.changes_since(other_worker, start.last_change) is None

    # The first worker (or the CLI) changes things...
    alices, _ = await store.open_session(db, "alice", lifetime=HOUR)
    await store.set_level(db, "alice", "devel")
    await store.revoke_session(db, bobs)

    # ...and the second learns exactly that, and nothing about what did not change.
    news = await store.changes_since(other_worker, start.last_change)
    assert news is not None and news.last_change > start.last_change
    assert set(news.users) == {"alice"}
    assert news.users["alice"] is not None and news.users["alice"].level == "devel"
    assert news.revoked.keys() == {bobs}
    assert alices not in news.revoked
    assert await store.changes_since(other_worker, news.last_change) is None


async def test_changes_since_reports_a_deleted_user_as_none(
    db: Database, other_worker: Database
) -> None:
    await store.add_user(db, "alice", level="ea", password=None)
    last = (await store.snapshot(other_worker)).last_change
    await store.delete_user(db, "alice")
    news = await store.changes_since(other_worker, last)
    assert news is not None and news.users == {"alice": None}


async def test_changes_since_reports_disabling_with_revocations(
    db: Database, other_worker: Database
) -> None:
    await store.add_user(db, "alice", level="ea", password=None)
    sid, _ = await store.open_session(db, "alice", lifetime=HOUR)
    last = (await store.snapshot(other_worker)).last_change
    await store.set_active(db, "alice", False)
    news = await store.changes_since(other_worker, last)
    assert news is not None
    assert news.users["alice"] is not None and not news.users["alice"].active
    assert news.revoked.keys() == {sid}


async def test_audit(db: Database) -> None:
    await store.audit(db, "login.failed", username="mallory", client="192.0.2.7", reason="pw")
    await store.audit(db, "login", username="u" * 300, client="c" * 100)
    async with db.session() as session:
        rows = (await session.scalars(select(AuditEvent).order_by(AuditEvent.id))).all()
    assert [row.event for row in rows] == ["login.failed", "login"]
    first, second = rows
    assert (first.username, first.client) == ("mallory", "192.0.2.7")
    assert json.loads(first.detail) == {"reason": "pw"}
    assert first.at is not None
    # Over-long fields are cut to the column, not refused (MariaDB would reject them).
    assert (len(second.username), len(second.client)) == (150, 64)


async def test_unicode_round_trips(db: Database) -> None:
    """MariaDB's `utf8` is 3 bytes; the portal needs utf8mb4 for names like these."""
    await store.add_user(db, "zoë", level="ea", password=None, name="Zoë 🌋 Ōtaki")
    user = await store.get_user(db, "zoë")
    assert user is not None and user.name == "Zoë 🌋 Ōtaki"


async def test_usernames_are_case_sensitive_on_every_backend(db: Database) -> None:
    """MariaDB's default collation would make `Alice` a duplicate of `alice` (and let `ALICE`
    sign in as `alice`); the tables use a binary collation so both backends agree."""
    await store.add_user(db, "alice", level="stable", password="lower-password")
    await store.add_user(db, "Alice", level="admin", password="upper-password")
    assert await store.check_password(db, "ALICE", "lower-password") is None
    assert await store.check_password(db, "alice", "upper-password") is None
    upper = await store.check_password(db, "Alice", "upper-password")
    assert upper is not None and upper.level == "admin"
