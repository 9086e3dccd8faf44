"""Failed logins and bans, in the database so every worker shares them (DESIGN.md section 10).

Its own module with its own tables on the shared `Base` (created by migration 0002); the policy
that reads them is `portal_asgi.regulation`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import DateTime, Index, Integer, String, delete, func, select
from sqlalchemy.orm import Mapped, mapped_column

from .engine import Database
from .models import MARIADB_TABLE, Base, utcnow

Key = tuple[str, str]  # ("account", casefolded username) or ("address", client address)


class LoginFailure(Base):
    """One failed login, counted once for the account and once for the client address."""

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


async def banned_until(db: Database, keys: Sequence[Key], now: dt.datetime) -> dt.datetime | None:
    """The latest end of any ban in force on one of `keys`, or None."""
    if not keys:
        return None
    async with db.session() as session:
        ends = [
            ban.until
            for ban in await session.scalars(
                select(LoginBan).where(
                    LoginBan.until > now, LoginBan.kind.in_({k for k, _ in keys})
                )
            )
            if (ban.kind, ban.key) in set(keys)
        ]
    return max(ends) if ends else None


async def record_failure(
    db: Database,
    keys: Sequence[Key],
    *,
    now: dt.datetime,
    find_time: float,
    max_retries: int,
    ban_time: float,
) -> list[BanRecord]:
    """Count one failure on every key; ban each key that reached `max_retries` within
    `find_time`. Returns the bans this failure started."""
    since = now - dt.timedelta(seconds=find_time)
    until = now + dt.timedelta(seconds=ban_time)
    started: list[BanRecord] = []
    async with db.session() as session:
        # old rows are useless: pruning here keeps the table as small as the attack rate allows
        await session.execute(delete(LoginFailure).where(LoginFailure.at < since))
        for kind, key in keys:
            session.add(LoginFailure(kind=kind, key=key, at=now))
        await session.flush()
        for kind, key in keys:
            count = int(
                await session.scalar(
                    select(func.count())
                    .select_from(LoginFailure)
                    .where(LoginFailure.kind == kind, LoginFailure.key == key)
                    .where(LoginFailure.at >= since)
                )
                or 0
            )
            if count < max_retries:
                continue
            ban = await session.get(LoginBan, (kind, key))
            if ban is not None and ban.until > now:
                continue
            if ban is None:
                ban = LoginBan(kind=kind, key=key)
                session.add(ban)
            ban.until, ban.created_at, ban.failures = until, now, count
            # the ban starts a fresh count: its failures must not ban the key again when it ends
            await session.execute(
                delete(LoginFailure).where(LoginFailure.kind == kind, LoginFailure.key == key)
            )
            started.append(BanRecord(kind, key, until, now, count))
    return started


async def clear_failures(db: Database, key: Key) -> None:
    async with db.session() as session:
        await session.execute(
            delete(LoginFailure).where(LoginFailure.kind == key[0], LoginFailure.key == key[1])
        )


async def list_bans(db: Database, now: dt.datetime) -> list[BanRecord]:
    async with db.session() as session:
        rows = await session.scalars(
            select(LoginBan).where(LoginBan.until > now).order_by(LoginBan.until)
        )
        return [BanRecord(b.kind, b.key, b.until, b.created_at, b.failures) for b in rows]


async def clear_bans(db: Database, *, key: str | None = None) -> int:
    """Lift every ban (or those on `key`, an account or an address) and forget their failures."""
    async with db.session() as session:
        bans = delete(LoginBan)
        failures = delete(LoginFailure)
        if key is not None:
            bans = bans.where(LoginBan.key.in_({key, key.casefold()}))
            failures = failures.where(LoginFailure.key.in_({key, key.casefold()}))
        result = await session.execute(bans)
        await session.execute(failures)
        return int(getattr(result, "rowcount", 0) or 0)
