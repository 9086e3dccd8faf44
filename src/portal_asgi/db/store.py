"""What the portal reads and writes, as plain async functions over a `Database`.

Every write that changes who may reach what also appends to the change feed in the same
transaction, so every worker learns of it on its next poll (see directory.py).

Functions that write times take `now` (naive UTC) where tests need to move time along without
waiting; the portal itself leaves it out.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ..exceptions import UserError
from ..passwords import Hashing, hash_in_thread, verify_in_thread
from .engine import Database
from .models import AuditEvent, Change, MountLevel, Session, User, utcnow

# A token is signed moments after its session row is written, so its `exp` may pass the row's
# `expires_at` by the length of a request (and workers' clocks differ a little): a revocation is
# kept this much longer than its row's `expires_at`, never less.
GRACE = dt.timedelta(minutes=5)

# Longer than any transaction may run (the engine gives up on a call after 10 s): a change id
# allocated this long ago has been committed or rolled back by now (see directory.py).
HORIZON = dt.timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class UserRecord:
    id: int
    uid: str  # the public id tokens carry (`uid` claim); never reused, unlike `username`
    username: str
    email: str
    name: str
    level: str
    active: bool
    provider: str
    created_at: dt.datetime
    last_login_at: dt.datetime | None
    must_change_password: bool = False


def _record(user: User) -> UserRecord:
    return UserRecord(
        user.id,
        user.uid,
        user.username,
        user.email,
        user.name,
        user.level,
        user.active,
        user.provider,
        user.created_at,
        user.last_login_at,
        bool(user.must_change_password),
    )


def new_sid() -> str:
    # never starting with "-": ids are typed as arguments (`portal-asgi sessions revoke ID`),
    # where one would be taken for an option
    while True:
        sid = secrets.token_urlsafe(24)
        if not sid.startswith("-"):
            return sid


def _change(session: AsyncSession, kind: str, key: str, now: dt.datetime | None = None) -> None:
    session.add(Change(kind=kind, key=key, created_at=now or utcnow()))


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
    hashing: Hashing | None = None,
    must_change_password: bool = False,
) -> UserRecord:
    if not username or len(username) > 150 or any(c.isspace() for c in username):
        raise UserError("a username is 1 to 150 characters without spaces")
    user = User(
        username=username,
        level=level,
        email=email,
        name=name,
        password_hash=await hash_in_thread(password, hashing) if password else None,
        must_change_password=must_change_password,
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
    """Remove a user and their session rows. Every token of theirs names their `uid`, which no
    later user gets (not even one with the same name), so every worker refuses those tokens from
    its next poll on, revoked or not; no revocation has to outlive the rows."""
    async with db.session() as session:
        user = await _user(session, username)
        await session.execute(delete(Session).where(Session.user_id == user.id))
        await session.delete(user)
        _change(session, "user", username)


async def set_password(
    db: Database,
    username: str,
    password: str,
    *,
    hashing: Hashing | None = None,
    must_change: bool = False,
) -> None:
    """Set a password; `must_change` (an admin's reset) makes the next sign-in lead to a
    change of password, and a password the user chose clears it. Every worker learns of the
    flag from the feed."""
    # hashed before the transaction: a connection is not held for the length of a hash
    password_hash = await hash_in_thread(password, hashing)
    async with db.session() as session:
        user = await _user(session, username)
        user.password_hash = password_hash
        user.must_change_password = must_change
        _change(session, "user", username)


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


async def user_for_subject(db: Database, subject: str) -> UserRecord | None:
    """The portal user of the OpenID provider user `subject`, or None before their first login
    (or after their portal account was deleted)."""
    async with db.session() as session:
        found = await session.scalar(select(User).where(User.subject == subject))
        return _record(found) if found is not None else None


async def check_password(
    db: Database, username: str, password: str, *, hashing: Hashing | None = None
) -> UserRecord | None:
    """The user when the password is right and the account active; same work either way (an
    unknown name is checked against a dummy hash), in a thread within `hashing`'s bound."""
    async with db.session() as session:
        user = await session.scalar(select(User).where(User.username == username))
    ok = await verify_in_thread(user.password_hash if user else None, password, hashing)
    if user is None or not ok or not user.active:
        return None
    return _record(user)


async def open_session(
    db: Database,
    username: str,
    *,
    lifetime: float,
    kind: str = "browser",
    label: str = "",
    client: str = "",
    now: dt.datetime | None = None,
) -> tuple[str, UserRecord]:
    """A new browser session (its sign-in is its `authenticated_at`) or API token."""
    now = now or utcnow()
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
                authenticated_at=now if kind == "browser" else None,
                client=client[:64],
            )
        )
        if kind == "browser":
            user.last_login_at = now
        return sid, _record(user)


async def revoke_session(db: Database, sid: str, *, now: dt.datetime | None = None) -> bool:
    now = now or utcnow()
    async with db.session() as session:
        result = await session.execute(
            update(Session)
            .where(Session.sid == sid, Session.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        _change(session, "session", sid, now)
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
    uid: str = ""
    must_change_password: bool = False


def _state(user: User) -> UserState:
    return UserState(
        user.level, user.active, user.email, user.name, user.uid, bool(user.must_change_password)
    )


@dataclass(frozen=True, slots=True)
class Snapshot:
    last_change: int
    users: dict[str, UserState | None]  # None: the user no longer exists
    revoked: dict[str, dt.datetime]  # sid -> its row's expires_at: forgotten after that + GRACE
    mount_levels: dict[str, str]  # "": the override was removed
    # `changes_since`: the change ids it read. `snapshot`: the ids below `last_change` that were
    # not committed when it was taken, and may still be (see directory.py).
    seen: frozenset[int] = field(default_factory=frozenset)
    missing: frozenset[int] = field(default_factory=frozenset)
    keys: bool = False  # `changes_since`: the signing keys changed (db/signing_keys.py)


async def snapshot(
    db: Database,
    *,
    now: dt.datetime | None = None,
    horizon: dt.timedelta = HORIZON,
    max_missing: int = 10_000,
) -> Snapshot:
    """Everything a worker needs in memory to judge a request without the database, read in one
    transaction (one consistent view on both backends). Revocations are those some token may
    still carry (see GRACE). At most `max_missing` of the newest missing ids are reported."""
    now = now or utcnow()
    async with db.session() as session:
        last = int(await session.scalar(select(func.max(Change.id))) or 0)
        # Ids below `settled` were allocated before a change that is older than `horizon`: their
        # transactions have ended, and a missing one was rolled back (or pruned). Above it, a
        # missing id may belong to a transaction that commits after this read.
        settled = int(
            await session.scalar(
                select(func.max(Change.id)).where(Change.created_at < now - horizon)
            )
            or 0
        )
        settled = max(settled, last - max_missing)
        recent = set(await session.scalars(select(Change.id).where(Change.id > settled)))
        users: dict[str, UserState | None] = {
            user.username: _state(user) for user in await session.scalars(select(User))
        }
        rows = await session.execute(
            select(Session.sid, Session.expires_at).where(
                Session.revoked_at.is_not(None), Session.expires_at > now - GRACE
            )
        )
        revoked = {sid: expires for sid, expires in rows}
        mounts = {row.path: row.level for row in await session.scalars(select(MountLevel))}
    missing = frozenset(range(settled + 1, last + 1)) - recent
    return Snapshot(last, users, revoked, mounts, missing=missing)


async def changes_since(
    db: Database, last: int, *, pending: Collection[int] = ()
) -> Snapshot | None:
    """A partial snapshot of what changed: the changes after change `last`, and those of the ids
    in `pending` (below `last`, not committed when last read) that have appeared since. None
    when there are none."""
    condition = Change.id > last
    if pending:
        condition = or_(condition, Change.id.in_(sorted(pending)))
    async with db.session() as session:
        changes: Sequence[Change] = (
            await session.scalars(select(Change).where(condition).order_by(Change.id))
        ).all()
        if not changes:
            return None
        usernames = {c.key for c in changes if c.kind == "user"}
        sids = {c.key for c in changes if c.kind == "session"}
        paths = {c.key for c in changes if c.kind == "mount"}
        users: dict[str, UserState | None] = dict.fromkeys(usernames)
        revoked: dict[str, dt.datetime] = {}
        if usernames:
            rows = await session.scalars(select(User).where(User.username.in_(usernames)))
            users.update({u.username: _state(u) for u in rows})
        if sids:
            found = await session.execute(
                select(Session.sid, Session.expires_at).where(
                    Session.sid.in_(sids), Session.revoked_at.is_not(None)
                )
            )
            revoked = {sid: expires for sid, expires in found}
        mounts: dict[str, str] = {}
        if paths:
            rows2 = await session.scalars(select(MountLevel).where(MountLevel.path.in_(paths)))
            mounts = {row.path: row.level for row in rows2}
            for path in paths - mounts.keys():
                mounts[path] = ""  # override removed: back to settings.toml
    seen = frozenset(c.id for c in changes)
    keys = any(c.kind == "key" for c in changes)
    return Snapshot(max(seen), users, revoked, mounts, seen=seen, keys=keys)


@dataclass(frozen=True, slots=True)
class Pruned:
    sessions: int
    changes: int


async def prune(
    db: Database,
    *,
    retention: dt.timedelta,
    now: dt.datetime | None = None,
    horizon: dt.timedelta = HORIZON,
    batch: int = 1000,
) -> Pruned:
    """Delete what no worker needs any more, in short transactions of `batch` rows:
    - session rows (browser sessions and API tokens, revoked or not) whose `expires_at` is more
      than GRACE ago: every token carrying their sid has expired, so their revocation can go;
    - changes older than `retention` (a worker that fell further behind reloads a snapshot),
      except the newest change older than `horizon`: `snapshot` needs it to tell a pruned id
      from one whose transaction is still open, and it keeps the newest id in the table."""
    now = now or utcnow()
    sessions = changes = 0
    while True:
        async with db.session() as session:
            sids = (
                await session.scalars(
                    select(Session.sid).where(Session.expires_at < now - GRACE).limit(batch)
                )
            ).all()
            if sids:
                await session.execute(delete(Session).where(Session.sid.in_(sids)))
        sessions += len(sids)
        if len(sids) < batch:
            break
    while True:
        async with db.session() as session:
            keep = await session.scalar(
                select(func.max(Change.id)).where(Change.created_at < now - horizon)
            )
            ids = (
                await session.scalars(
                    select(Change.id)
                    .where(Change.created_at < now - retention, Change.id < (keep or 0))
                    .limit(batch)
                )
            ).all()
            if ids:
                await session.execute(delete(Change).where(Change.id.in_(ids)))
        changes += len(ids)
        if len(ids) < batch:
            break
    return Pruned(sessions, changes)


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
