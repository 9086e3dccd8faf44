"""Revocations and changes stay bounded: what no unexpired token can need is pruned, in memory and
in the tables, and an unexpired revoked token stays refused through it all. On SQLite and MariaDB,
with time the test moves (each login a minute after the last) instead of waiting."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from portal_asgi.db import store
from portal_asgi.db.engine import Database
from portal_asgi.db.models import Change, Session
from portal_asgi.directory import Directory

from .helpers import Clock

pytestmark = pytest.mark.anyio

HOUR = 3600.0
DAY = 24 * HOUR
CYCLES = 10_000
STEP = 60.0  # seconds between two logins: 10,000 of them span about a week
POLL_EVERY = 10  # cycles between two feed polls (ten minutes of the test's time)
PRUNE_EVERY = 100  # cycles between two prunings (see the bounds below)


async def _rows(db: Database, table: type[Session] | type[Change]) -> int:
    async with db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(table)) or 0)


async def test_revocations_changes_and_sessions_stay_bounded_over_10000_logins(
    db: Database, other_worker: Database
) -> None:
    clock = Clock()
    await store.add_user(db, "alice", level="ea", password=None)
    # `token mint --ttl 365d`, revoked at once: it must stay refused all along
    token, _ = await store.open_session(db, "alice", lifetime=365 * DAY, kind="api", now=clock())
    await store.revoke_session(db, token, now=clock())
    worker = Directory(other_worker, interval=2, retention=DAY, clock=clock)
    await worker.load()

    # A revoked session is kept while a token may carry it (its hour, plus GRACE), and pruning
    # runs every PRUNE_EVERY cycles; changes are kept for a day.
    grace = store.GRACE.total_seconds()
    most_sessions = (HOUR + grace) / STEP + PRUNE_EVERY + 2
    most_changes = DAY / STEP + PRUNE_EVERY + 3
    largest = {"revoked": 0, "sessions": 0, "changes": 0}
    for cycle in range(1, CYCLES + 1):
        sid, _ = await store.open_session(db, "alice", lifetime=HOUR, now=clock())
        await store.revoke_session(db, sid, now=clock())  # logout
        clock.advance(STEP)
        if cycle % POLL_EVERY == 0:
            await worker.refresh()
            assert worker.is_revoked(sid)
        if cycle % PRUNE_EVERY == 0:
            await worker.prune()
            largest["revoked"] = max(largest["revoked"], len(worker.revoked))
            largest["sessions"] = max(largest["sessions"], await _rows(db, Session))
            largest["changes"] = max(largest["changes"], await _rows(db, Change))
            assert worker.is_revoked(token)

    assert largest["revoked"] <= most_sessions, largest
    assert largest["sessions"] <= most_sessions, largest
    assert largest["changes"] <= most_changes, largest
    assert len(worker.pending) == 0  # no gaps: nothing was rolled back
    # pruning did run: far fewer than the 10,000 revocations and changes are kept
    assert len(worker.revoked) < CYCLES / 20
    assert await _rows(db, Change) < CYCLES / 5

    # The long-lived revoked token stays refused: here, and by a worker that starts now.
    assert worker.is_revoked(token)
    fresh = Directory(db, interval=2, clock=clock)
    await fresh.load()
    assert fresh.is_revoked(token)
    assert len(fresh.revoked) <= most_sessions


async def test_pruning_forgets_a_revocation_only_after_every_token_with_it_expired(
    db: Database, other_worker: Database
) -> None:
    clock = Clock()
    await store.add_user(db, "alice", level="ea", password=None)
    short, _ = await store.open_session(db, "alice", lifetime=HOUR, now=clock())
    long, _ = await store.open_session(db, "alice", lifetime=30 * DAY, kind="api", now=clock())
    await store.revoke_session(db, short, now=clock())
    await store.revoke_session(db, long, now=clock())
    worker = Directory(other_worker, interval=2, clock=clock)
    await worker.load()

    clock.advance(HOUR + store.GRACE.total_seconds() - 1)  # a token may still be valid
    await worker.prune()
    assert worker.is_revoked(short) and worker.is_revoked(long)
    assert short in (await store.snapshot(db, now=clock())).revoked

    clock.advance(2)
    pruned = await worker.prune()
    assert pruned.sessions == 1
    assert not worker.is_revoked(short)  # every token carrying it has expired
    assert worker.is_revoked(long)
    assert short not in (await store.snapshot(db, now=clock())).revoked

    clock.advance(30 * DAY)
    await worker.prune()
    assert not worker.is_revoked(long)
    assert await _rows(db, Session) == 0


async def test_pruning_keeps_the_newest_change(db: Database) -> None:
    """However old, the newest settled change stays: the id counter (SQLite) and a snapshot's
    idea of which ids are settled both rest on it."""
    clock = Clock()
    await store.add_user(db, "alice", level="ea", password=None)
    await store.set_level(db, "alice", "devel")
    clock.advance(30 * DAY)
    await store.prune(db, retention=dt.timedelta(days=1), now=clock())
    async with db.session() as session:
        ids = list(await session.scalars(select(Change.id)))
    assert len(ids) == 1
    await store.set_level(db, "alice", "admin")
    async with db.session() as session:
        assert max(await session.scalars(select(Change.id))) > ids[0]
