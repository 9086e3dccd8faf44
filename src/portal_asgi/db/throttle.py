"""Login attempts and bans, in the database so every worker (and every host) shares them.

Its own module with its own tables on the shared `Base` (created by migration 0002); the policy
that reads them is `portal_asgi.regulation`.

An attempt is counted before its password is checked, so a burst cannot check more passwords
than the limit allows. Counting must then be atomic across workers: the `login_bans` row of a
key (kind, key) is that key's lock as well as its ban. Every transaction that counts, bans or
forgets on a key first upserts that row, which takes its row lock (MariaDB) or the database's
write lock (SQLite), and only then reads the key's attempts; keys are always locked in sorted
order, so two logins cannot deadlock. On MariaDB these transactions read at READ COMMITTED: under
REPEATABLE READ a read could see a snapshot older than the lock it waited for. A row is a ban
while its `until` is in the future; a lock row made for counting starts at `NOT_BANNED`, in the
past whatever the clocks of the workers say.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import (
    ColumnElement,
    DateTime,
    Index,
    Integer,
    String,
    and_,
    delete,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from .engine import Database
from .models import MARIADB_TABLE, Base, utcnow

Key = tuple[str, str]  # ("account", casefolded username) or ("address", client address)

# Rows deleted per pruning: a bounded amount of work on a login that failed.
PRUNE_BATCH = 500

# The `until` of a lock row that is no ban. Not the time it was made: a worker whose clock reads
# a second earlier would take that for a ban in force.
NOT_BANNED = dt.datetime(2000, 1, 1)


class LoginFailure(Base):
    """One counted login attempt on one key: a failure, or a check still running."""

    __tablename__ = "login_failures"
    __table_args__ = (
        Index("ix_login_failures_kind_key_at", "kind", "key", "at"),
        MARIADB_TABLE,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))
    key: Mapped[str] = mapped_column(String(255))
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)


class LoginBan(Base):
    """A key's lock row; a ban while `until` is in the future."""

    __tablename__ = "login_bans"
    __table_args__ = MARIADB_TABLE

    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    until: Mapped[dt.datetime] = mapped_column(DateTime, index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    failures: Mapped[int] = mapped_column(Integer, default=0)


@dataclass(frozen=True, slots=True)
class BanRecord:
    kind: str
    key: str
    until: dt.datetime
    created_at: dt.datetime
    failures: int


@dataclass(frozen=True, slots=True)
class Counted:
    """What counting one attempt did: the row counted on each key when it was let through, or
    the end of the ban that refused it (and the bans the refusal started)."""

    rows: Mapping[Key, int] = field(default_factory=dict)
    banned_until: dt.datetime | None = None
    bans: Sequence[BanRecord] = ()


@dataclass(frozen=True, slots=True)
class Limits:
    max_retries: int
    find_time: float
    ban_time: float


def _where(
    columns: type[LoginBan] | type[LoginFailure], keys: Iterable[Key]
) -> ColumnElement[bool]:
    return or_(*(and_(columns.kind == kind, columns.key == key) for kind, key in keys))


async def _read_committed(session: AsyncSession, db: Database) -> None:
    """On MariaDB, let every read see what was committed before it (the first call of a
    transaction: its isolation level is set before its first statement)."""
    if db.dialect != "sqlite":
        await session.connection(execution_options={"isolation_level": "READ COMMITTED"})


async def _lock(session: AsyncSession, db: Database, keys: Iterable[Key], now: dt.datetime) -> None:
    """Take every key's lock row, creating it when missing: one statement, rows in sorted order."""
    rows = [
        {"kind": kind, "key": key, "until": NOT_BANNED, "created_at": now, "failures": 0}
        for kind, key in sorted(set(keys))
    ]
    if db.dialect == "sqlite":
        # the insert takes the database's write lock, whether it inserts or not
        lite = sqlite_insert(LoginBan).values(rows)
        await session.execute(lite.on_conflict_do_nothing(index_elements=["kind", "key"]))
    else:
        # an update that changes nothing, for the exclusive row lock it takes all the same
        ours = mysql_insert(LoginBan).values(rows)
        await session.execute(ours.on_duplicate_key_update(kind=LoginBan.kind))


async def _state(
    session: AsyncSession, keys: Sequence[Key], since: dt.datetime
) -> dict[Key, tuple[dt.datetime, int]]:
    """Each locked key's ban end and its attempts since `since`, in one query."""
    found = await session.execute(
        select(LoginBan.kind, LoginBan.key, LoginBan.until, func.count(LoginFailure.id))
        .outerjoin(
            LoginFailure,
            and_(
                LoginFailure.kind == LoginBan.kind,
                LoginFailure.key == LoginBan.key,
                LoginFailure.at >= since,
            ),
        )
        .where(_where(LoginBan, keys))
        .group_by(LoginBan.kind, LoginBan.key, LoginBan.until)
    )
    return {(kind, key): (until, int(count)) for kind, key, until, count in found}


async def _banned_until(
    session: AsyncSession, keys: Sequence[Key], now: dt.datetime
) -> dt.datetime | None:
    ends = await session.scalars(
        select(LoginBan.until).where(_where(LoginBan, keys), LoginBan.until > now)
    )
    return max(ends, default=None)


async def _ban(
    session: AsyncSession, key: Key, failures: int, now: dt.datetime, limits: Limits
) -> BanRecord:
    until = now + dt.timedelta(seconds=limits.ban_time)
    kind, name = key
    await session.execute(
        update(LoginBan)
        .where(LoginBan.kind == kind, LoginBan.key == name)
        .values(until=until, created_at=now, failures=failures)
    )
    # the ban starts a fresh count: its attempts must not ban the key again when it ends
    await session.execute(
        delete(LoginFailure).where(LoginFailure.kind == kind, LoginFailure.key == name)
    )
    return BanRecord(kind, name, until, now, failures)


async def count_attempt(
    db: Database, keys: Sequence[Key], *, now: dt.datetime, limits: Limits
) -> Counted:
    """Count one login attempt on every key before its password is checked. Refused when a key
    is banned, or already holds `max_retries` attempts within `find_time` (failures, and checks
    still running): that refusal bans the full keys."""
    since = now - dt.timedelta(seconds=limits.find_time)
    async with db.session() as session:
        await _read_committed(session, db)
        # A ban in force refuses without a lock: a flood after the ban does not queue on it.
        until = await _banned_until(session, keys, now)
        if until is not None:
            return Counted(banned_until=until)
        await _lock(session, db, keys, now)
        state = await _state(session, keys, since)
        ends = [end for end, _ in state.values() if end > now]
        if ends:  # started while this attempt waited for the lock
            return Counted(banned_until=max(ends))
        full = [key for key in keys if state[key][1] >= limits.max_retries]
        if full:
            bans = [await _ban(session, key, state[key][1], now, limits) for key in full]
            return Counted(banned_until=max(ban.until for ban in bans), bans=bans)
        rows = {key: LoginFailure(kind=key[0], key=key[1], at=now) for key in keys}
        session.add_all(rows.values())
        await session.flush()
        return Counted(rows={key: row.id for key, row in rows.items()})


async def record_failure(
    db: Database, keys: Sequence[Key], *, now: dt.datetime, limits: Limits
) -> tuple[list[BanRecord], dt.datetime | None]:
    """A counted attempt failed (its row stays counted): ban each key that holds `max_retries`
    attempts within `find_time`. Returns the bans this started, and the end of the latest ban in
    force on any key (None when there is none)."""
    since = now - dt.timedelta(seconds=limits.find_time)
    started: list[BanRecord] = []
    ends: list[dt.datetime] = []
    async with db.session() as session:
        await _read_committed(session, db)
        await _lock(session, db, keys, now)
        for key, (end, count) in (await _state(session, keys, since)).items():
            if end > now:  # another login started it meanwhile
                ends.append(end)
            elif count >= limits.max_retries:
                started.append(await _ban(session, key, count, now, limits))
                ends.append(started[-1].until)
    return started, max(ends, default=None)


async def forget(db: Database, *, clear: Key, rows: Mapping[Key, int], now: dt.datetime) -> None:
    """After a right password: every attempt counted on `clear` is forgotten, and on the other
    keys the attempt's own `rows` only."""
    async with db.session() as session:
        await _read_committed(session, db)
        await _lock(session, db, [clear, *rows], now)
        await session.execute(
            delete(LoginFailure).where(LoginFailure.kind == clear[0], LoginFailure.key == clear[1])
        )
        refunded = [row for key, row in rows.items() if key != clear]
        if refunded:
            await session.execute(delete(LoginFailure).where(LoginFailure.id.in_(refunded)))


async def prune(db: Database, *, now: dt.datetime, find_time: float) -> None:
    """Drop attempts older than `find_time`, then the lock rows that count nothing and whose
    ban (if any) ended before that. Only rows no one holds (SKIP LOCKED): pruning never waits,
    so it cannot deadlock a login; what it skips, a later pruning takes. A lock row deleted is
    made again by the next login that needs it."""
    since = now - dt.timedelta(seconds=find_time)
    async with db.session() as session:
        await _read_committed(session, db)
        old = list(
            await session.scalars(
                select(LoginFailure.id)
                .where(LoginFailure.at < since)
                .limit(PRUNE_BATCH)
                .with_for_update(skip_locked=True)
            )
        )
        if old:
            await session.execute(delete(LoginFailure).where(LoginFailure.id.in_(old)))
        stale = (
            await session.execute(
                select(LoginBan.kind, LoginBan.key)
                .where(LoginBan.until < since)
                .where(
                    ~select(LoginFailure.id)
                    .where(LoginFailure.kind == LoginBan.kind, LoginFailure.key == LoginBan.key)
                    .exists()
                )
                .limit(PRUNE_BATCH)
                .with_for_update(skip_locked=True)
            )
        ).all()
        for kind, key in stale:
            await session.execute(
                delete(LoginBan).where(
                    LoginBan.kind == kind, LoginBan.key == key, LoginBan.until < since
                )
            )


async def list_bans(db: Database, now: dt.datetime) -> list[BanRecord]:
    async with db.session() as session:
        rows = await session.scalars(
            select(LoginBan).where(LoginBan.until > now).order_by(LoginBan.until)
        )
        return [BanRecord(b.kind, b.key, b.until, b.created_at, b.failures) for b in rows]


async def clear_bans(db: Database, *, key: str | None = None) -> int:
    """Lift every ban (or those on `key`, an account or an address) and forget their attempts.
    Returns how many bans were in force."""
    now = utcnow()
    async with db.session() as session:
        bans = delete(LoginBan)
        in_force = select(func.count()).select_from(LoginBan).where(LoginBan.until > now)
        failures = delete(LoginFailure)
        if key is not None:
            bans = bans.where(LoginBan.key.in_({key, key.casefold()}))
            in_force = in_force.where(LoginBan.key.in_({key, key.casefold()}))
            failures = failures.where(LoginFailure.key.in_({key, key.casefold()}))
        count = int(await session.scalar(in_force) or 0)
        await session.execute(bans)  # lock rows too: a missing one is made again when needed
        await session.execute(failures)
        return count
