"""What the admin area and /account read and write beyond `store.py`: users paged and searched in
the database, a user's sessions and API tokens, changes guarded by the last-admin rule in one
transaction, re-authentication times, and the audit log read back.

Writes that change who may reach what append to the change feed in the same transaction, as in
`store.py`, so every worker learns of them on its next poll.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ..exceptions import UserError
from .engine import Database
from .models import AuditEvent, MountLevel, Session, User, utcnow
from .store import UserRecord, _change, _record, _revoke_all, _user


class LastAdmin(UserError):
    """The change would leave no enabled user at the highest level."""


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A browser session or an API token; `id` is its `sid`, what revocation names."""

    id: str
    username: str
    kind: str  # "browser" or "api"
    label: str
    created_at: dt.datetime
    last_seen_at: dt.datetime
    expires_at: dt.datetime
    revoked_at: dt.datetime | None
    authenticated_at: dt.datetime | None
    client: str


def _session_record(row: Session, username: str) -> SessionRecord:
    return SessionRecord(
        row.sid,
        username,
        row.kind,
        row.label,
        row.created_at,
        row.last_seen_at,
        row.expires_at,
        row.revoked_at,
        row.authenticated_at,
        row.client,
    )


def _like(text: str) -> str:
    """`text` as a LIKE pattern that matches it anywhere, its own wildcards taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def find_users(
    db: Database, *, q: str = "", offset: int = 0, limit: int = 50
) -> tuple[list[UserRecord], int]:
    """One page of users ordered by username, those whose username or email contains `q`
    (case as stored), and how many match in all. Paged in the database: two short queries
    whatever the number of users."""
    condition: ColumnElement[bool] | None = None
    if q:
        pattern = _like(q)
        condition = or_(
            User.username.like(pattern, escape="\\"), User.email.like(pattern, escape="\\")
        )
    count = select(func.count()).select_from(User)
    page = select(User).order_by(User.username).offset(offset).limit(limit)
    if condition is not None:
        count, page = count.where(condition), page.where(condition)
    async with db.session() as session:
        total = int(await session.scalar(count) or 0)
        users = [_record(user) for user in await session.scalars(page)]
    return users, total


async def sessions_of(
    db: Database, username: str, *, now: dt.datetime | None = None
) -> list[SessionRecord]:
    """The user's sessions and API tokens still in force (not revoked, not expired), newest
    first; UserError when there is no such user."""
    now = now or utcnow()
    async with db.session() as session:
        user = await _user(session, username)
        rows = await session.scalars(
            select(Session)
            .where(
                Session.user_id == user.id,
                Session.revoked_at.is_(None),
                Session.expires_at > now,
            )
            .order_by(Session.created_at.desc(), Session.sid)
        )
        return [_session_record(row, username) for row in rows]


async def all_tokens(db: Database, *, now: dt.datetime | None = None) -> list[SessionRecord]:
    """Every API token in force, of every user, by username then newest first."""
    now = now or utcnow()
    async with db.session() as session:
        rows = await session.execute(
            select(Session, User.username)
            .join(User, User.id == Session.user_id)
            .where(Session.kind == "api", Session.revoked_at.is_(None), Session.expires_at > now)
            .order_by(User.username, Session.created_at.desc(), Session.sid)
        )
        return [_session_record(row, username) for row, username in rows]


async def find_session(db: Database, sid: str) -> SessionRecord | None:
    """The session or token of id `sid`, revoked or not (None when unknown or pruned)."""
    async with db.session() as session:
        found = await session.execute(
            select(Session, User.username)
            .join(User, User.id == Session.user_id)
            .where(Session.sid == sid)
        )
        row = found.first()
        return _session_record(row[0], row[1]) if row is not None else None


async def sessions_by_prefix(db: Database, prefix: str, *, limit: int = 2) -> list[str]:
    """The ids of sessions in force that start with `prefix` (at most `limit`): the audit log
    and `token list` show 8 characters of an id, enough to revoke it by."""
    async with db.session() as session:
        rows = await session.scalars(
            select(Session.sid)
            .where(
                Session.sid.like(_like(prefix)[1:], escape="\\"),
                Session.revoked_at.is_(None),
            )
            .limit(limit)
        )
        return list(rows)


async def revoke_all_but(db: Database, username: str, keep: str) -> int:
    """Revoke every session and token of `username` except the session `keep`; how many."""
    async with db.session() as session:
        user = await _user(session, username)
        sids = (
            await session.scalars(
                select(Session.sid).where(
                    Session.user_id == user.id,
                    Session.revoked_at.is_(None),
                    Session.sid != keep,
                )
            )
        ).all()
        if sids:
            await session.execute(
                update(Session).where(Session.sid.in_(sids)).values(revoked_at=utcnow())
            )
        for sid in sids:
            _change(session, "session", sid)
        return len(sids)


async def revoke_everything(db: Database, username: str) -> int:
    """Revoke every session and API token of `username`; how many were in force."""
    async with db.session() as session:
        user = await _user(session, username)
        count = int(
            await session.scalar(
                select(func.count())
                .select_from(Session)
                .where(Session.user_id == user.id, Session.revoked_at.is_(None))
            )
            or 0
        )
        await _revoke_all(session, user)
        return count


async def _admins_left(session: AsyncSession, highest: str) -> int:
    """Enabled users at the highest level, read with row locks on MariaDB: two admins demoting
    each other at once cannot both see the other still there."""
    rows = await session.scalars(
        select(User.id).where(User.level == highest, User.active.is_(True)).with_for_update()
    )
    return len(rows.all())


async def update_user(
    db: Database,
    username: str,
    *,
    highest: str,
    level: str | None = None,
    active: bool | None = None,
    email: str | None = None,
    guard: bool = True,
) -> UserRecord:
    """Change any of a user's level, state and email in one transaction. With `guard`, a change
    that leaves no enabled user at `highest` is refused (LastAdmin) and nothing changes.
    Disabling revokes every session and token of theirs."""
    async with db.session() as session:
        user = await _user(session, username)
        # written first, then counted: on SQLite the write takes the lock, so the count
        # sees every change committed before it and none can slip in after
        if level is not None:
            user.level = level
        if email is not None:
            user.email = email
        if active is not None:
            user.active = active
            if not active:
                await _revoke_all(session, user)
        await session.flush()
        if guard and (level is not None or active is False):
            if await _admins_left(session, highest) == 0:
                raise LastAdmin(f"{username!r} is the last enabled {highest}")
        _change(session, "user", username)
        return _record(user)


async def delete_user(db: Database, username: str, *, highest: str, guard: bool = True) -> None:
    """Delete a user: their session rows go, every token of theirs names a `uid` nobody will
    hold again (see `store.delete_user`). With `guard`, the last enabled user at `highest` is
    not deleted (LastAdmin)."""
    async with db.session() as session:
        user = await _user(session, username)
        await session.execute(delete(Session).where(Session.user_id == user.id))
        await session.delete(user)
        await session.flush()
        if guard and user.level == highest and user.active:
            if await _admins_left(session, highest) == 0:
                raise LastAdmin(f"{username!r} is the last enabled {highest}")
        _change(session, "user", username)


async def touch_sessions(
    db: Database, sids: Iterable[str], now: dt.datetime, *, batch: int = 500
) -> None:
    """Record that these sessions and tokens were used at `now` (what workers saw since their
    last write). In a fixed order, so that two workers writing at once never deadlock."""
    ordered = sorted(sids)
    for start in range(0, len(ordered), batch):
        async with db.session() as session:
            await session.execute(
                update(Session)
                .where(Session.sid.in_(ordered[start : start + batch]))
                .values(last_seen_at=now)
            )


async def authenticated(
    db: Database, sid: str, *, now: dt.datetime | None = None
) -> dt.datetime | None:
    """When the person behind session `sid` last proved who they are; None for an unknown,
    revoked or expired session, or an API token."""
    now = now or utcnow()
    async with db.session() as session:
        return await session.scalar(
            select(Session.authenticated_at).where(
                Session.sid == sid, Session.revoked_at.is_(None), Session.expires_at > now
            )
        )


async def reauthenticated(db: Database, sid: str, *, now: dt.datetime | None = None) -> bool:
    """Record that session `sid` proved its user again now; False when it is not in force."""
    now = now or utcnow()
    async with db.session() as session:
        result = await session.execute(
            update(Session)
            .where(
                Session.sid == sid,
                Session.kind == "browser",
                Session.revoked_at.is_(None),
                Session.expires_at > now,
            )
            .values(authenticated_at=now, last_seen_at=now)
        )
        return bool(getattr(result, "rowcount", 0))


@dataclass(frozen=True, slots=True)
class Override:
    """A product level set at run time, over settings.toml's."""

    path: str
    level: str
    changed_at: dt.datetime
    changed_by: str


async def overrides(db: Database) -> dict[str, Override]:
    async with db.session() as session:
        rows = await session.scalars(select(MountLevel))
        return {r.path: Override(r.path, r.level, r.changed_at, r.changed_by) for r in rows}


@dataclass(frozen=True, slots=True)
class AuditRecord:
    id: int
    at: dt.datetime
    event: str
    username: str
    client: str
    detail: dict[str, Any]


def _audit_record(row: AuditEvent) -> AuditRecord:
    try:
        detail = json.loads(row.detail) if row.detail else {}
    except ValueError:
        detail = {"detail": row.detail}
    if not isinstance(detail, dict):
        detail = {"detail": detail}
    return AuditRecord(row.id, row.at, row.event, row.username, row.client, detail)


def is_refusal(event: str) -> bool:
    """Whether an audit event records a refusal or a failure: `denied` (and
    `denied.suppressed`), `*.failed` (a sign-in, a re-authentication), `*.refused`, `*_refused`."""
    return (
        event == "denied"
        or event.startswith("denied.")
        or event.endswith((".failed", ".refused", "_refused"))
    )


def _refusals() -> ColumnElement[bool]:
    """`is_refusal` in SQL."""
    name = AuditEvent.event
    return or_(
        name == "denied",
        name.like("denied.%"),
        name.like("%.failed"),
        name.like("%.refused"),
        name.like("%\\_refused", escape="\\"),
    )


async def find_audit(
    db: Database,
    *,
    user: str = "",
    event: str = "",
    since: dt.datetime | None = None,
    client: str = "",
    outcome: str = "",
    offset: int = 0,
    limit: int = 100,
) -> tuple[list[AuditRecord], int]:
    """Audit events newest first, and how many match: `user` matches the user an event is about
    or the admin who made it (`by`); `event` an event name, or every event under a prefix when
    it ends with `.` or `*` (`user.`); `since` naive UTC; `client` the address it came from;
    `outcome` "refused" (`is_refusal`) or "ok" (every other event)."""
    conditions: list[ColumnElement[bool]] = []
    if client:
        conditions.append(AuditEvent.client == client)
    if outcome == "refused":
        conditions.append(_refusals())
    elif outcome == "ok":
        conditions.append(~_refusals())
    if user:
        by = json.dumps({"by": user})[1:-1]  # `"by": "name"`, as sort_keys JSON writes it
        conditions.append(
            or_(AuditEvent.username == user, AuditEvent.detail.like(_like(by), escape="\\"))
        )
    if event:
        if event.endswith(("*", ".")):
            stem = event.rstrip("*")
            conditions.append(AuditEvent.event.like(_like(stem)[1:], escape="\\"))
        else:
            conditions.append(AuditEvent.event == event)
    if since is not None:
        conditions.append(AuditEvent.at >= since)
    where = and_(*conditions) if conditions else None
    count = select(func.count()).select_from(AuditEvent)
    page = select(AuditEvent).order_by(AuditEvent.id.desc()).offset(offset).limit(limit)
    if where is not None:
        count, page = count.where(where), page.where(where)
    async with db.session() as session:
        total = int(await session.scalar(count) or 0)
        rows: Sequence[AuditEvent] = (await session.scalars(page)).all()
    return [_audit_record(row) for row in rows], total
