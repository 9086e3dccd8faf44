"""What the portal reads and writes, as plain async functions over a `Database`.

Every write that changes who may reach what also appends to the change feed in the same
transaction, so every worker learns of it on its next poll (see directory.py).
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ..exceptions import UserError
from ..passwords import hash_password, verify_password
from .engine import Database
from .models import AuditEvent, Change, MountLevel, Session, User, utcnow


@dataclass(frozen=True, slots=True)
class UserRecord:
    id: int
    username: str
    email: str
    name: str
    level: str
    active: bool
    provider: str
    created_at: dt.datetime
    last_login_at: dt.datetime | None


def _record(user: User) -> UserRecord:
    return UserRecord(
        user.id,
        user.username,
        user.email,
        user.name,
        user.level,
        user.active,
        user.provider,
        user.created_at,
        user.last_login_at,
    )


def new_sid() -> str:
    return secrets.token_urlsafe(24)


def _change(session: AsyncSession, kind: str, key: str) -> None:
    session.add(Change(kind=kind, key=key))


async def _user(session: AsyncSession, username: str) -> User:
    user = await session.scalar(select(User).where(User.username == username))
    if user is None:
        raise UserError(f"no user named {username!r}")
    return user


async def count_users(db: Database) -> int:
    async with db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(User)) or 0)


async def add_user(
    db: Database,
    username: str,
    *,
    level: str,
    password: str | None,
    email: str = "",
    name: str = "",
) -> UserRecord:
    if not username or len(username) > 150 or any(c.isspace() for c in username):
        raise UserError("a username is 1 to 150 characters without spaces")
    user = User(
        username=username,
        level=level,
        email=email,
        name=name,
        password_hash=hash_password(password) if password else None,
    )
    try:
        async with db.session() as session:
            session.add(user)
            await session.flush()
            _change(session, "user", username)
    except IntegrityError:
        raise UserError(f"a user named {username!r} already exists") from None
    return _record(user)


async def get_user(db: Database, username: str) -> UserRecord | None:
    async with db.session() as session:
        user = await session.scalar(select(User).where(User.username == username))
        return _record(user) if user else None


async def list_users(db: Database) -> list[UserRecord]:
    async with db.session() as session:
        return [
            _record(user) for user in await session.scalars(select(User).order_by(User.username))
        ]


async def set_level(db: Database, username: str, level: str) -> None:
    async with db.session() as session:
        user = await _user(session, username)
        user.level = level
        _change(session, "user", username)


async def _revoke_all(session: AsyncSession, user: User) -> None:
    sids = (
        await session.scalars(
            select(Session.sid).where(Session.user_id == user.id, Session.revoked_at.is_(None))
        )
    ).all()
    if sids:
        await session.execute(
            update(Session).where(Session.sid.in_(sids)).values(revoked_at=utcnow())
        )
    for sid in sids:
        _change(session, "session", sid)


async def set_active(db: Database, username: str, active: bool) -> None:
    """Disabling a user also revokes every session and token they hold."""
    async with db.session() as session:
        user = await _user(session, username)
        user.active = active
        if not active:
            await _revoke_all(session, user)
        _change(session, "user", username)


async def delete_user(db: Database, username: str) -> None:
    """Remove a user; their sessions and tokens go with them (ON DELETE CASCADE), and every
    worker drops the user from its directory, which ends those sessions there too."""
    async with db.session() as session:
        user = await _user(session, username)
        await session.execute(delete(Session).where(Session.user_id == user.id))
        await session.delete(user)
        _change(session, "user", username)


async def set_password(db: Database, username: str, password: str) -> None:
    async with db.session() as session:
        user = await _user(session, username)
        user.password_hash = hash_password(password)


async def upsert_oidc_user(
    db: Database,
    *,
    subject: str,
    username: str,
    email: str,
    name: str,
    level: str | None,
    default_level: str,
    fallback_username: str,
) -> UserRecord:
    """The user an OpenID provider vouched for, found by `subject` and refreshed (email, name,
    last login, and `level` unless None), or created at `level or default_level`. Never takes
    over an account by username: when `username` belongs to another account, the new one is
    named `fallback_username`. Records a "user" change so every worker learns the level."""
    try:
        async with db.session() as session:
            user = await session.scalar(select(User).where(User.subject == subject))
            if user is None:
                taken = await session.scalar(select(User.id).where(User.username == username))
                user = User(
                    username=fallback_username if taken is not None else username,
                    level=level or default_level,
                    provider="oidc",
                    subject=subject,
                    password_hash=None,
                )
                session.add(user)
            elif level is not None:
                user.level = level
            user.email = email[:254]
            user.name = name[:200]
            user.last_login_at = utcnow()
            await session.flush()
            _change(session, "user", user.username)
            return _record(user)
    except IntegrityError:  # two first logins of the same user at once: the other one won
        raise UserError(f"could not record the user with subject {subject!r}; try again") from None


async def username_for_subject(db: Database, subject: str) -> str | None:
    """The portal username of the OpenID provider user `subject`, or None before their first login."""
    async with db.session() as session:
        found = await session.scalar(select(User.username).where(User.subject == subject))
        return str(found) if found is not None else None


async def check_password(db: Database, username: str, password: str) -> UserRecord | None:
    """The user when the password is right and the account active; same work either way."""
    async with db.session() as session:
        user = await session.scalar(select(User).where(User.username == username))
    ok = verify_password(user.password_hash if user else None, password)
    if user is None or not ok or not user.active:
        return None
    return _record(user)


async def open_session(
    db: Database, username: str, *, lifetime: float, kind: str = "browser", label: str = ""
) -> tuple[str, UserRecord]:
    now = utcnow()
    sid = new_sid()
    async with db.session() as session:
        user = await _user(session, username)
        if not user.active:
            raise UserError(f"user {username!r} is disabled")
        session.add(
            Session(
                sid=sid,
                user_id=user.id,
                kind=kind,
                label=label,
                created_at=now,
                last_seen_at=now,
                expires_at=now + dt.timedelta(seconds=lifetime),
            )
        )
        if kind == "browser":
            user.last_login_at = now
        return sid, _record(user)


async def revoke_session(db: Database, sid: str) -> bool:
    async with db.session() as session:
        result = await session.execute(
            update(Session)
            .where(Session.sid == sid, Session.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
        _change(session, "session", sid)
        return bool(getattr(result, "rowcount", 0))


async def revoke_user_sessions(db: Database, username: str) -> None:
    async with db.session() as session:
        await _revoke_all(session, await _user(session, username))


async def set_mount_level(db: Database, path: str, level: str | None, *, by: str = "") -> None:
    """Override a mount's level from settings.toml at run time (None removes the override); every
    worker applies it on its next poll, open WebSockets included."""
    async with db.session() as session:
        row = await session.get(MountLevel, path)
        if level is None:
            if row is not None:
                await session.delete(row)
        elif row is None:
            session.add(MountLevel(path=path, level=level, changed_by=by[:150]))
        else:
            row.level, row.changed_at, row.changed_by = level, utcnow(), by[:150]
        _change(session, "mount", path)


@dataclass(frozen=True, slots=True)
class UserState:
    level: str
    active: bool
    email: str
    name: str


@dataclass(frozen=True, slots=True)
class Snapshot:
    last_change: int
    users: dict[str, UserState | None]  # None: the user no longer exists
    revoked: set[str]
    mount_levels: dict[str, str]  # "": the override was removed


async def snapshot(db: Database) -> Snapshot:
    """Everything a worker needs in memory to judge a request without the database."""
    async with db.session() as session:
        last = int(await session.scalar(select(func.max(Change.id))) or 0)
        users: dict[str, UserState | None] = {
            user.username: UserState(user.level, user.active, user.email, user.name)
            for user in await session.scalars(select(User))
        }
        revoked = set(
            await session.scalars(
                select(Session.sid).where(
                    Session.revoked_at.is_not(None), Session.expires_at > utcnow()
                )
            )
        )
        mounts = {row.path: row.level for row in await session.scalars(select(MountLevel))}
    return Snapshot(last, users, revoked, mounts)


async def changes_since(db: Database, last: int) -> Snapshot | None:
    """A partial snapshot of what changed after change `last`, or None when nothing did."""
    async with db.session() as session:
        changes: Sequence[Change] = (
            await session.scalars(select(Change).where(Change.id > last).order_by(Change.id))
        ).all()
        if not changes:
            return None
        usernames = {c.key for c in changes if c.kind == "user"}
        sids = {c.key for c in changes if c.kind == "session"}
        paths = {c.key for c in changes if c.kind == "mount"}
        users: dict[str, UserState | None] = dict.fromkeys(usernames)
        revoked: set[str] = set()
        if usernames:
            rows = await session.scalars(select(User).where(User.username.in_(usernames)))
            users.update({u.username: UserState(u.level, u.active, u.email, u.name) for u in rows})
        if sids:
            revoked = set(
                await session.scalars(
                    select(Session.sid).where(
                        Session.sid.in_(sids), Session.revoked_at.is_not(None)
                    )
                )
            )
        mounts: dict[str, str] = {}
        if paths:
            rows2 = await session.scalars(select(MountLevel).where(MountLevel.path.in_(paths)))
            mounts = {row.path: row.level for row in rows2}
            for path in paths - mounts.keys():
                mounts[path] = ""  # override removed: back to settings.toml
    return Snapshot(changes[-1].id, users, revoked, mounts)


async def audit(
    db: Database, event: str, *, username: str = "", client: str = "", **detail: object
) -> None:
    async with db.session() as session:
        session.add(
            AuditEvent(
                event=event,
                username=username[:150],
                client=client[:64],
                detail=json.dumps(detail, default=str, sort_keys=True),
            )
        )
