"""The `signing_keys` table: the portal's key set, shared by every worker and host, with every
change announced on the change feed (kind "key") so that each worker reloads it within one feed
interval (see signing.py for the worker's side, docs/keys.md for the operator's).

A key's life, in the table's columns:
- `active_from`: from then on it is the signing key, as the newest row whose `active_from` has
  come. `keys rotate` sets it a little ahead, so that every worker, and every product that
  caches the JWKS, holds the new public key before any token signed with it arrives.
- `retired_at`: when the next key took over (the rotation that adds a key sets it on the key it
  replaces). From then on the key only verifies, until `not_after`: the latest expiry of the
  sessions and API tokens (their rows) created before `retired_at + LAG`, plus GRACE. A worker
  that had not read the rotation yet may sign with the retired key for that long at most, and
  every token carries a session row whose `expires_at` bounds its `exp`.
- past `not_after`, no token it signed can be valid: it leaves every worker's ring at the next
  reload, and `prune` deletes the row.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from .engine import Database
from .models import Change, Session, SigningKeyRow, utcnow
from .store import GRACE, HORIZON

# Longest a worker may sign with a key after the key was retired: it reads the rotation at its
# next feed poll (seconds), and a worker that cannot poll cannot open sessions either.
LAG = HORIZON

FEED_KIND = "key"


@dataclass(frozen=True, slots=True)
class KeyRow:
    id: int
    kid: str
    private_pem: str  # as stored: encrypted when `[portal] key_passphrase` is set
    origin: str
    created_at: dt.datetime
    active_from: dt.datetime
    retired_at: dt.datetime | None
    not_after: dt.datetime | None  # retired keys: when every token they signed has expired


def _announce(session: AsyncSession, kid: str, now: dt.datetime) -> None:
    session.add(Change(kind=FEED_KIND, key=kid, created_at=now))


async def _not_after(
    session: AsyncSession, retired_at: dt.datetime, now: dt.datetime
) -> dt.datetime:
    last_signed = retired_at + LAG
    # rows already past GRACE cannot keep the key: their tokens are dead anyway (and pruned)
    newest = await session.scalar(
        select(func.max(Session.expires_at)).where(
            Session.created_at <= last_signed, Session.expires_at > now - GRACE
        )
    )
    return max(last_signed, newest or last_signed) + GRACE


async def read(db: Database, *, now: dt.datetime | None = None) -> list[KeyRow]:
    """Every key, oldest first; retired ones with their `not_after` as of `now`."""
    now = now or utcnow()
    async with db.session() as session:
        rows = (await session.scalars(select(SigningKeyRow).order_by(SigningKeyRow.id))).all()
        keys = []
        for row in rows:
            not_after = None
            if row.retired_at is not None:
                not_after = await _not_after(session, row.retired_at, now)
            keys.append(
                KeyRow(
                    row.id,
                    row.kid,
                    row.private_pem,
                    row.origin,
                    row.created_at,
                    row.active_from,
                    row.retired_at,
                    not_after,
                )
            )
    return keys


def signing_row(rows: list[KeyRow], now: dt.datetime) -> KeyRow | None:
    """The key that signs at `now`: the newest whose `active_from` has come."""
    started = [row for row in rows if row.active_from <= now]
    return max(started, key=lambda row: row.id) if started else None


async def import_first(
    db: Database, kid: str, private_pem: str, *, origin: str, now: dt.datetime | None = None
) -> bool:
    """Make this key the first one when the table is empty (the key the portal signed with
    before keys lived in the database, or a fresh one); False when there already was one."""
    now = now or utcnow()
    try:
        async with db.session() as session:
            if await session.scalar(select(func.count()).select_from(SigningKeyRow)):
                return False
            session.add(
                SigningKeyRow(
                    kid=kid,
                    private_pem=private_pem,
                    origin=origin,
                    created_at=now,
                    active_from=now,
                )
            )
            _announce(session, kid, now)
    except IntegrityError:  # another worker imported the same key (the same file) just now
        return False
    # Workers (or hosts) with different keys on an empty table at once may each have imported
    # theirs: all but the newest are retired, the same ones whoever does it, so that every
    # worker signs with one key and the others' tokens of the last moment still verify.
    async with db.session() as session:
        firsts = (
            await session.scalars(
                select(SigningKeyRow)
                .where(SigningKeyRow.retired_at.is_(None))
                .order_by(SigningKeyRow.id)
            )
        ).all()
        for row in firsts[:-1]:
            row.retired_at = now
            _announce(session, row.kid, now)
    return True


async def add_next(
    db: Database,
    kid: str,
    private_pem: str,
    *,
    active_from: dt.datetime,
    now: dt.datetime | None = None,
) -> list[str]:
    """A new key that signs from `active_from` on, replacing the key(s) signing until then.
    Returns the ids of the keys it replaces."""
    now = now or utcnow()
    async with db.session() as session:
        replaced = (
            await session.scalars(select(SigningKeyRow).where(SigningKeyRow.retired_at.is_(None)))
        ).all()
        for row in replaced:
            row.retired_at = active_from
        session.add(
            SigningKeyRow(
                kid=kid,
                private_pem=private_pem,
                origin="rotate",
                created_at=now,
                active_from=active_from,
            )
        )
        _announce(session, kid, now)
        return [row.kid for row in replaced]


async def prune(db: Database, *, now: dt.datetime | None = None) -> list[str]:
    """Delete the retired keys no valid token can name any more; their ids."""
    now = now or utcnow()
    rows = await read(db, now=now)
    signing = signing_row(rows, now)
    gone = [
        row.kid
        for row in rows
        if row.not_after is not None
        and row.not_after <= now
        and (signing is None or row.id != signing.id)
    ]
    if gone:
        async with db.session() as session:
            await session.execute(delete(SigningKeyRow).where(SigningKeyRow.kid.in_(gone)))
            for kid in gone:
                _announce(session, kid, now)
    return gone
