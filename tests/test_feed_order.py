"""The change feed never misses a committed change, whatever order transactions commit in.

MariaDB hands out a change's id when the row is inserted, but transactions commit in any order:
a revocation (id 4) may commit after a later change (id 5) was already read. These tests make
that happen on purpose with two real transactions: the first is held open after its flush (its
change id allocated, not committed) while the second commits and a worker polls; then the first
commits and the next poll must see it. SQLite serialises writers, so there the second waits for
the first and they commit in id order: the same test shows the feed holds there too.

Time that the directory judges by (the gap horizon, the resync period) is a clock the test moves.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.util import await_

from portal_asgi.db import store
from portal_asgi.db.engine import Database
from portal_asgi.db.models import Change
from portal_asgi.directory import Directory

from .helpers import Clock

pytestmark = pytest.mark.anyio

HOUR = 3600.0
WAIT = 30.0  # generous: a loaded 2-core machine


@asynccontextmanager
async def held_after_flush(db: Database) -> AsyncIterator[tuple[asyncio.Event, asyncio.Event]]:
    """The next transaction of `db` that flushes waits, flushed and uncommitted, until the test
    sets `release`; `flushed` tells the test it got there. One transaction only."""
    flushed, release = asyncio.Event(), asyncio.Event()
    armed = [True]

    def hold(session: OrmSession, _context: Any) -> None:
        if not armed[0] or session.bind is not db.engine.sync_engine:
            return
        armed[0] = False
        flushed.set()
        await_(release.wait())  # inside SQLAlchemy's greenlet: the event loop runs on

    event.listen(OrmSession, "after_flush", hold)
    try:
        yield flushed, release
    finally:
        release.set()
        event.remove(OrmSession, "after_flush", hold)


async def commit_out_of_order(
    db: Database,
    first: Callable[[], Coroutine[Any, Any, object]],
    second: Callable[[], Coroutine[Any, Any, object]],
    meanwhile: Callable[[], Awaitable[None]],
    *,
    then: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """`first()` flushes (its change id allocated) and is held; `second()` runs and, where the
    database lets it (MariaDB), commits; `meanwhile()` runs (a worker polls); then `first()`
    commits, and `then()` runs before `second()` is awaited (it waits for `first` on SQLite)."""
    async with held_after_flush(db) as (flushed, release):
        held = asyncio.create_task(first())
        await asyncio.wait_for(flushed.wait(), WAIT)
        later = asyncio.create_task(second())
        if db.dialect != "sqlite":
            await asyncio.wait_for(asyncio.shield(later), WAIT)  # committed before `first`
        await meanwhile()
        release.set()
        await asyncio.wait_for(held, WAIT)
        if then is not None:
            await then()
        await asyncio.wait_for(later, WAIT)


async def _two_sessions(db: Database) -> tuple[str, str]:
    await store.add_user(db, "alice", level="ea", password=None)
    first, _ = await store.open_session(db, "alice", lifetime=HOUR)
    second, _ = await store.open_session(db, "alice", lifetime=HOUR)
    return first, second


async def _change_ids(db: Database, sid: str) -> list[int]:
    async with db.session() as session:
        return list(await session.scalars(select(Change.id).where(Change.key == sid)))


async def test_a_change_committed_after_a_later_one_was_read_is_seen(
    db: Database, other_worker: Database
) -> None:
    """The revocation with the lower id commits after the worker read the higher one."""
    first, second = await _two_sessions(db)
    worker = Directory(other_worker, interval=60)
    await worker.load()

    async def poll_in_between() -> None:
        await worker.refresh()
        if db.dialect != "sqlite":
            assert worker.is_revoked(second)  # the later change, already committed
            assert not worker.is_revoked(first)  # the earlier one, not yet
            assert worker.pending  # ...and the worker knows it has not seen its id

    await commit_out_of_order(
        db,
        lambda: store.revoke_session(db, first),
        lambda: store.revoke_session(db, second),
        poll_in_between,
    )
    (first_id,) = await _change_ids(db, first)
    (second_id,) = await _change_ids(db, second)
    assert first_id < second_id  # the ids are in allocation order, whatever the commit order
    await worker.refresh()
    assert worker.is_revoked(first)
    assert worker.is_revoked(second)
    assert not worker.pending


async def test_a_snapshot_taken_between_the_commits_misses_nothing(
    db: Database, other_worker: Database
) -> None:
    """A worker that starts (loads its snapshot) while the earlier change is uncommitted."""
    first, second = await _two_sessions(db)
    worker = Directory(other_worker, interval=60)

    async def start_in_between() -> None:
        await worker.load()
        if db.dialect != "sqlite":
            assert worker.is_revoked(second) and not worker.is_revoked(first)

    await commit_out_of_order(
        db,
        lambda: store.revoke_session(db, first),
        lambda: store.revoke_session(db, second),
        start_in_between,
    )
    await worker.refresh()
    assert worker.is_revoked(first) and worker.is_revoked(second)


async def test_a_level_change_and_a_deletion_out_of_order(
    db: Database, other_worker: Database
) -> None:
    """Not only revocations: a user change that commits late is applied too."""
    await store.add_user(db, "alice", level="stable", password=None)
    await store.add_user(db, "bob", level="ea", password=None)
    worker = Directory(other_worker, interval=60)
    await worker.load()
    await commit_out_of_order(
        db,
        lambda: store.set_level(db, "alice", "admin"),
        lambda: store.delete_user(db, "bob"),
        _refresh(worker),
    )
    await worker.refresh()
    assert worker.user("alice").level == "admin"  # type: ignore[union-attr]
    assert worker.user("bob") is None


def _refresh(worker: Directory) -> Callable[[], Awaitable[None]]:
    async def refresh() -> None:
        await worker.refresh()

    return refresh


async def test_a_rolled_back_change_is_forgotten_after_the_horizon(
    db: Database, other_worker: Database
) -> None:
    """A rolled-back transaction leaves a permanent gap (MariaDB): it is asked for only until
    no transaction could still be running, so the work it costs stays bounded."""
    first, second = await _two_sessions(db)
    clock = Clock()
    worker = Directory(other_worker, interval=60, horizon=300, clock=clock)
    await worker.load()

    class Abandon(Exception):
        pass

    async with db.session() as session:
        before = int(await session.scalar(select(func.max(Change.id))) or 0)
    try:
        async with db.session() as session:
            session.add(Change(kind="session", key=first))
            await session.flush()
            raise Abandon
    except Abandon:
        pass
    await store.revoke_session(db, second)
    await worker.refresh()
    assert worker.is_revoked(second) and not worker.is_revoked(first)
    assert len(worker.pending) <= 1  # MariaDB: the rolled-back id; SQLite reuses it
    assert set(worker.pending) <= {before + 1}

    clock.advance(299)
    await worker.refresh()
    assert len(worker.pending) <= 1
    clock.advance(2)  # past the horizon: no transaction runs that long
    await worker.refresh()
    assert worker.pending == {}
    assert not worker.is_revoked(first)


async def test_a_transaction_longer_than_the_horizon_is_caught_by_the_resync(
    db: Database, other_worker: Database
) -> None:
    """The backstop: should a transaction outlive the horizon, the periodic reload from a
    snapshot still brings its change."""
    first, second = await _two_sessions(db)
    clock = Clock()
    worker = Directory(other_worker, interval=60, horizon=300, resync=900, clock=clock)
    await worker.load()

    async def poll_then_wait_too_long() -> None:
        await worker.refresh()
        clock.advance(301)
        await worker.refresh()  # the gap is given up as a rollback
        assert not worker.pending

    async def poll_after_commit() -> None:
        await worker.refresh()
        if db.dialect != "sqlite":
            assert not worker.is_revoked(first)  # not seen by the poll: too late for it

    await commit_out_of_order(
        db,
        lambda: store.revoke_session(db, first),
        lambda: store.revoke_session(db, second),
        poll_then_wait_too_long,
        then=poll_after_commit,
    )
    clock.advance(900)
    await worker.refresh()  # the resync
    assert worker.is_revoked(first) and worker.is_revoked(second)


async def test_a_worker_that_fell_behind_the_pruning_reloads(
    db: Database, other_worker: Database
) -> None:
    """Changes are pruned after `retention`: a worker that could not poll for that long reads
    a snapshot instead of the feed, so a pruned revocation still reaches it."""
    await store.add_user(db, "alice", level="ea", password=None)
    token, _ = await store.open_session(db, "alice", lifetime=365 * 24 * HOUR, kind="api")
    clock = Clock()
    worker = Directory(other_worker, interval=60, retention=24 * HOUR, resync=10**9, clock=clock)
    await worker.load()

    await store.revoke_session(db, token, now=clock())
    await store.set_level(db, "alice", "devel")  # a later change, so the revocation's can go
    clock.advance(2 * 24 * HOUR)
    pruned = await store.prune(db, retention=dt.timedelta(hours=24), now=clock())
    assert pruned.changes >= 1
    assert not await _change_ids(db, token)

    await worker.refresh()
    assert worker.is_revoked(token)
    assert worker.user("alice").level == "devel"  # type: ignore[union-attr]
