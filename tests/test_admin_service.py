"""The admin operations (admin/service.py) on the database alone, on SQLite and MariaDB: the
rules that do not need a request to show (two admins demoting each other at once, the account
page's own operations, forced password change, re-authentication times)."""

from __future__ import annotations

import asyncio

import pytest

from portal_asgi.admin import service
from portal_asgi.admin.errors import Invalid, LastAdmin, NotFound
from portal_asgi.db import accounts, store
from portal_asgi.db.engine import Database
from portal_asgi.exceptions import DatabaseUnavailable
from portal_asgi.levels import Levels
from portal_asgi.settings import DEFAULT_LEVELS

pytestmark = pytest.mark.anyio

LEVELS = Levels(DEFAULT_LEVELS)
PASSWORD = "a password of 12+"


def context(db: Database) -> service.Context:
    return service.Context(db, LEVELS)


async def enabled_admins(db: Database) -> list[str]:
    users, _ = await accounts.find_users(db, limit=500)
    return [u.username for u in users if u.level == LEVELS.highest and u.active]


async def test_two_admins_demoting_each_other_at_once_leave_one(
    db: Database, other_worker: Database
) -> None:
    for name in ("ann", "ben"):
        await store.add_user(db, name, level="admin", password=PASSWORD)
    for _ in range(5):
        results = await asyncio.gather(
            service.set_level(context(db), service.Actor("ann"), "ben", "ea"),
            service.set_level(context(other_worker), service.Actor("ben"), "ann", "ea"),
            return_exceptions=True,
        )
        for result in results:  # refused as last admin, or the database said "try again"
            assert not isinstance(result, Exception) or isinstance(
                result, LastAdmin | DatabaseUnavailable
            ), repr(result)
        assert len(await enabled_admins(db)) >= 1
        for name in ("ann", "ben"):  # both admins again for the next round
            await service.set_level(context(db), service.Actor.cli(), name, "admin")


async def test_change_password_needs_the_current_one_and_clears_the_forced_change(
    db: Database,
) -> None:
    await store.add_user(db, "amy", level="ea", password=PASSWORD, must_change_password=True)
    sid, _ = await store.open_session(db, "amy", lifetime=3600)
    amy = service.Actor("amy", "session", sid)
    ctx = context(db)
    with pytest.raises(Invalid) as wrong:
        await service.change_password(ctx, amy, "not the password", "a new password 1")
    assert wrong.value.field == "current_password"
    with pytest.raises(Invalid) as same:
        await service.change_password(ctx, amy, PASSWORD, PASSWORD)
    assert same.value.field == "new_password"
    with pytest.raises(Invalid) as short:
        await service.change_password(ctx, amy, PASSWORD, "short")
    assert short.value.field == "new_password"
    still = await store.check_password(db, "amy", PASSWORD)
    assert still is not None and still.must_change_password

    await service.change_password(ctx, amy, PASSWORD, "a new password 1")
    changed = await store.check_password(db, "amy", "a new password 1")
    assert changed is not None and not changed.must_change_password
    assert await store.check_password(db, "amy", PASSWORD) is None
    events = (await service.list_audit(ctx, user="amy", event="user.password.change")).events
    assert len(events) == 1 and "a new password" not in str(events[0])


async def test_sign_out_other_sessions_keeps_the_current_one(db: Database) -> None:
    await store.add_user(db, "amy", level="ea", password=PASSWORD)
    await store.add_user(db, "bob", level="ea", password=PASSWORD)
    here, _ = await store.open_session(db, "amy", lifetime=3600)
    await store.open_session(db, "amy", lifetime=3600)
    await store.open_session(db, "amy", lifetime=3600, kind="api", label="job")
    bobs, _ = await store.open_session(db, "bob", lifetime=3600)
    count = await service.sign_out_other_sessions(
        context(db), service.Actor("amy", "session", here)
    )
    assert count == 2
    assert [s.id for s in await accounts.sessions_of(db, "amy")] == [here]
    assert [s.id for s in await accounts.sessions_of(db, "bob")] == [bobs]


async def test_revoke_with_an_owner_refuses_someone_elses(db: Database) -> None:
    await store.add_user(db, "amy", level="ea", password=PASSWORD)
    await store.add_user(db, "bob", level="ea", password=PASSWORD)
    bobs, _ = await store.open_session(db, "bob", lifetime=3600)
    with pytest.raises(NotFound):
        await service.revoke_session(context(db), service.Actor("amy"), bobs, owner="amy")
    assert [s.id for s in await accounts.sessions_of(db, "bob")] == [bobs]


async def test_reauthenticate_refreshes_the_sessions_time(db: Database) -> None:
    await store.add_user(db, "amy", level="admin", password=PASSWORD)
    from portal_asgi.db.models import utcnow

    opened = utcnow().replace(year=utcnow().year - 1)
    sid, _ = await store.open_session(db, "amy", lifetime=3 * 365 * 86400, now=opened)
    amy = service.Actor("amy", "session", sid)
    ctx = context(db)
    assert not await service.recently_authenticated(ctx, amy)
    with pytest.raises(Invalid):
        await service.reauthenticate(ctx, amy, "wrong password")
    assert not await service.recently_authenticated(ctx, amy)
    await service.reauthenticate(ctx, amy, PASSWORD)
    assert await service.recently_authenticated(ctx, amy)
    # a token caller is never asked, a revoked session never passes
    assert await service.recently_authenticated(ctx, service.Actor("amy", "token", "x"))
    await store.revoke_session(db, sid)
    assert not await service.recently_authenticated(ctx, amy)
