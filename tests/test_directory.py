"""The in-memory directory every worker keeps, fed by the change feed; on SQLite and MariaDB.

"Another worker" is a second `Database` engine on the same database, as a second uvicorn worker
(or the CLI) would hold.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from portal_asgi.db import store
from portal_asgi.db.engine import Database
from portal_asgi.directory import Directory

pytestmark = pytest.mark.anyio

HOUR = 3600.0


async def until(condition: Callable[[], bool], within: float = 5.0) -> None:
    """Poll `condition()` until it holds (for changes that travel through the feed)."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within:.1f}s")
        await asyncio.sleep(0.02)


async def test_load_reads_users_revocations_and_mount_levels(db: Database) -> None:
    await store.add_user(db, "alice", level="ea", password=None, email="a@example.org")
    await store.add_user(db, "bob", level="stable", password=None)
    sid, _ = await store.open_session(db, "bob", lifetime=HOUR)
    await store.revoke_session(db, sid)
    await store.set_mount_level(db, "/dashboard", "devel", by="admin")

    directory = Directory(db, interval=60)
    assert not directory.loaded and directory.user("alice") is None
    await directory.load()

    assert directory.loaded
    alice = directory.user("alice")
    assert alice is not None and (alice.level, alice.email, alice.active) == (
        "ea",
        "a@example.org",
        True,
    )
    assert directory.is_revoked(sid)
    assert not directory.is_revoked("some-other-sid")
    assert directory.mount_levels == {"/dashboard": "devel"}
    assert directory.last_change > 0


async def test_refresh_learns_what_another_worker_changed(
    db: Database, other_worker: Database
) -> None:
    await store.add_user(db, "alice", level="stable", password=None)
    await store.add_user(db, "bob", level="ea", password=None)
    bobs, _ = await store.open_session(db, "bob", lifetime=HOUR)
    directory = Directory(db, interval=60)
    await directory.load()
    assert await directory.refresh() is False  # nothing new

    await store.set_level(other_worker, "alice", "devel")
    await store.revoke_session(other_worker, bobs)
    await store.add_user(other_worker, "carol", level="ea", password=None)
    await store.set_mount_level(other_worker, "/ea", "devel")

    assert await directory.refresh() is True
    assert directory.user("alice").level == "devel"  # type: ignore[union-attr]
    assert directory.is_revoked(bobs)
    assert directory.user("carol") is not None
    assert directory.mount_levels == {"/ea": "devel"}

    await store.set_mount_level(other_worker, "/ea", None)
    assert await directory.refresh() is True
    assert directory.mount_levels == {}


async def test_disabled_user_is_seen_with_their_sessions_revoked(
    db: Database, other_worker: Database
) -> None:
    await store.add_user(db, "alice", level="ea", password=None)
    sid, _ = await store.open_session(db, "alice", lifetime=HOUR)
    token, _ = await store.open_session(db, "alice", lifetime=HOUR, kind="api")
    directory = Directory(db, interval=60)
    await directory.load()

    await store.set_active(other_worker, "alice", False)
    await directory.refresh()

    assert not directory.user("alice").active  # type: ignore[union-attr]
    assert directory.is_revoked(sid) and directory.is_revoked(token)


async def test_deleted_user_disappears(db: Database, other_worker: Database) -> None:
    await store.add_user(db, "alice", level="ea", password=None)
    await store.add_user(db, "bob", level="ea", password=None)
    directory = Directory(db, interval=60)
    await directory.load()
    assert directory.user("alice") is not None

    await store.delete_user(other_worker, "alice")
    await directory.refresh()

    assert directory.user("alice") is None
    assert directory.user("bob") is not None


async def test_the_feed_task_polls_and_notifies(db: Database, other_worker: Database) -> None:
    """`run()` is what the portal starts: a change by another worker arrives within the interval,
    and listeners (open WebSockets re-checking) hear of it."""
    await store.add_user(db, "alice", level="stable", password=None)
    directory = Directory(db, interval=0.05)
    await directory.load()
    heard: list[int] = []
    directory.on_change(lambda: heard.append(directory.last_change))
    task = asyncio.create_task(directory.run())
    try:
        await store.set_level(other_worker, "alice", "admin")
        await until(lambda: directory.user("alice").level == "admin")  # type: ignore[union-attr]
        assert heard and heard[-1] == directory.last_change
    finally:
        directory.stop()  # returns at its next pause, never mid-query
        await asyncio.wait_for(task, timeout=10)


async def test_refresh_before_load_loads(db: Database) -> None:
    await store.add_user(db, "alice", level="ea", password=None)
    directory = Directory(db, interval=60)
    assert await directory.refresh() is True
    assert directory.loaded and directory.user("alice") is not None


async def test_the_feed_survives_an_unreachable_database(caplog: pytest.LogCaptureFixture) -> None:
    """Polling a database that does not answer is logged and retried, never fatal."""
    db = Database("mysql+asyncmy://root@127.0.0.1:1/nothing")
    directory = Directory(db, interval=0.01)
    task = asyncio.create_task(directory.run())
    try:
        await until(lambda: "database unavailable" in caplog.text)
        assert not task.done()
        assert not directory.loaded
    finally:
        directory.stop()  # returns at its next pause, never mid-query
        await asyncio.wait_for(task, timeout=10)
        await db.close()


async def test_a_revocation_made_while_down_is_recorded_by_the_feed(
    db: Database, other_worker: Database
) -> None:
    """A logout while the database is down: refused here at once, written when the feed runs,
    and from there seen by the other workers."""
    await store.add_user(db, "alice", level="ea", password=None)
    sid, _ = await store.open_session(db, "alice", lifetime=HOUR)
    directory = Directory(db, interval=0.05)
    await directory.load()

    directory.revoke_here(sid)
    assert directory.is_revoked(sid)
    assert sid not in (await store.snapshot(other_worker)).revoked

    task = asyncio.create_task(directory.run())
    try:
        for _ in range(200):
            if sid in (await store.snapshot(other_worker)).revoked:
                break
            await asyncio.sleep(0.02)
        assert sid in (await store.snapshot(other_worker)).revoked
        assert directory.is_revoked(sid)
    finally:
        directory.stop()  # returns at its next pause, never mid-query
        await asyncio.wait_for(task, timeout=10)
