"""Every admin and self-service (`/account`) operation, in one place: the admin API, the admin
and account pages and the command line call these functions and nothing else, so the rules
below hold whichever way a change arrives. Each change is written to the audit log with the
acting user (`by`) and their address (`client`); each refusal is an `AdminError` (errors.py)
carrying its HTTP status, its JSON code and, for bad input, the field at fault.

Rules:
- **Last admin.** No change may leave the portal without an enabled user at the highest level
  (`levels.highest`): lowering, disabling or deleting the last one is refused (409 last_admin).
  Checked in the same transaction as the change (db/accounts.py). The command line
  (`Actor.cli()`) is exempt: it is how an operator on the server gets back in.
- **Re-authentication.** Deleting a user, resetting a password and minting an API token for
  someone else need a sign-in (or `reauthenticate` with the current password) within the last
  `REAUTH_WINDOW` seconds, recorded per session (`sessions.authenticated_at`); a fresh OIDC
  sign-in is a new session, so it counts too. Callers by API token (portal or provider) are the
  credentials of scripts, minted on purpose and revocable: they are not asked, and neither is
  the command line.
- **Forced password change.** A reset password (given or generated) and the first start's
  admin password must be changed at the next sign-in (`must_change_password`, carried to every
  worker by the change feed); `change_password` clears it.

Every write is followed by a refresh of this worker's directory, so the change applies here at
once; other workers apply it on their next feed poll (within `[portal] feed_interval`).

Functions take a `Context` (what they need of the running portal, or of the command line) and,
for changes, an `Actor` (who is asking).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from sqlalchemy.exc import SQLAlchemyError

from .. import audit, claims
from ..db import accounts, store
from ..db.accounts import AuditRecord, Override, SessionRecord
from ..db.engine import Database
from ..db.models import utcnow
from ..db.store import UserRecord
from ..exceptions import DatabaseUnavailable, SettingsError, UserError
from ..levels import Levels
from ..passwords import Hashing
from ..settings import MountSettings, parse_duration
from ..user import PortalUser
from .errors import (
    BadRequest,
    Conflict,
    Exists,
    Invalid,
    LastAdmin,
    NotFound,
    ReauthenticationRequired,
    TooManyAttempts,
)

if TYPE_CHECKING:
    from ..directory import Directory
    from ..products import Product
    from ..regulation import Regulator
    from ..reload import ReloadResult
    from ..runtime import Runtime
    from ..tokens import TokenCodec

logger = logging.getLogger("portal_asgi.admin")

REAUTH_WINDOW = 10 * 60  # seconds a sign-in counts for the sensitive actions
MIN_PASSWORD = 12  # OWASP ASVS 2.1.1, as `users add`
MAX_PASSWORD = 1024
MAX_PAGE = 500  # users or audit events in one answer
DEFAULT_TTL = 30 * 86400
MAX_TTL = 366 * 86400
USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,149}$")

Via = Literal["session", "token", "provider", "cli"]


# --- who asks, and with what -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Actor:
    """Who asks for an operation: a signed-in user (by session cookie, portal API token or
    provider token), or the command line."""

    username: str
    via: Via = "session"
    sid: str = ""  # the session or token id the request came with
    client: str = ""  # their address, for the audit log

    @classmethod
    def of(cls, user: PortalUser, client: str = "") -> Actor:
        via: Via = user.via if user.via in ("session", "token", "provider") else "token"  # type: ignore[assignment]
        return cls(user.username, via, user.sid, client)

    @classmethod
    def cli(cls) -> Actor:
        return cls("cli", "cli")

    @property
    def is_script(self) -> bool:
        """Asking with a token (or from the command line): never asked to re-authenticate."""
        return self.via != "session"


@dataclass(frozen=True, slots=True)
class Context:
    """What the operations need: the database and levels always; the token codec to mint API
    tokens; the running portal (mounts, policy, settings) for product levels; the directory,
    refreshed after each write; bounded password hashing and login regulation for password
    checks."""

    db: Database
    levels: Levels
    codec: TokenCodec | None = None
    runtime: Runtime | None = None
    directory: Directory | None = None
    hashing: Hashing | None = None
    regulator: Regulator | None = None

    @classmethod
    def of(cls, runtime: Runtime, *, hashing: Hashing | None = None) -> Context:
        """Everything from the running portal. Password checks run in `hashing`'s threads
        (a bounded pool of its own when not given) and are counted by login regulation."""
        from ..regulation import Regulator

        security = runtime.settings.security
        return cls(
            db=runtime.db,
            levels=runtime.levels,
            codec=runtime.codec,
            runtime=runtime,
            directory=runtime.directory,
            hashing=hashing
            or Hashing(at_once=security.max_concurrent_hashes, waiting=security.max_waiting_hashes),
            regulator=Regulator(runtime.db, security),
        )

    async def refresh(self) -> None:
        """Apply a change to this worker at once; should the database fail now, the feed
        applies it at its next poll."""
        if self.directory is None:
            return
        try:
            await self.directory.refresh()
        except (DatabaseUnavailable, SQLAlchemyError) as exc:
            logger.warning("directory refresh after an admin change failed: %s", exc)


# --- what the operations answer ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UserPage:
    users: list[UserRecord]
    total: int  # how many match `q`, over every page
    q: str
    offset: int
    limit: int


@dataclass(frozen=True, slots=True)
class UserDetail:
    user: UserRecord
    sessions: list[SessionRecord]  # browser sessions in force, newest first
    tokens: list[SessionRecord]  # API tokens in force, newest first


@dataclass(frozen=True, slots=True)
class Created:
    user: UserRecord
    password: str | None  # the one-time password when none was given (shown once)


@dataclass(frozen=True, slots=True)
class PasswordReset:
    username: str
    password: str | None  # the generated one-time password (shown once); None when given


@dataclass(frozen=True, slots=True)
class Minted:
    id: str  # the token's session id: what revocation names
    token: str  # shown once; never stored
    username: str
    label: str
    expires_at: dt.datetime


@dataclass(frozen=True, slots=True)
class MountView:
    path: str
    title: str
    kind: str  # "flask", "starlette", "mixed" (Flask + ASGI WebSocket) or "upstream"
    file_level: str  # settings.toml's
    level: str  # in force now
    override: Override | None  # the run-time override, when one is set
    rules: tuple[dict[str, object], ...]
    upstream: str | None = None


@dataclass(frozen=True, slots=True)
class AuditPage:
    events: list[AuditRecord]
    total: int
    offset: int
    limit: int


# --- checks ------------------------------------------------------------------------------------


def _page_bounds(offset: int, limit: int) -> None:
    if offset < 0:
        raise Invalid("offset", "offset must be 0 or more")
    if not 1 <= limit <= MAX_PAGE:
        raise Invalid("limit", f"limit must be between 1 and {MAX_PAGE}")


def check_username(username: object) -> str:
    if not isinstance(username, str) or not USERNAME.match(username):
        raise Invalid(
            "username",
            "a username is 1 to 150 letters, digits and . _ @ + -, starting with a letter or digit",
        )
    return username


def check_level(levels: Levels, level: object, field: str = "level") -> str:
    if not isinstance(level, str) or level not in levels.configured:
        raise Invalid(field, f"unknown level {level!r}; levels: {', '.join(levels.configured)}")
    return level


def check_email(email: object) -> str:
    if not isinstance(email, str):
        raise Invalid("email", "email must be a string")
    email = email.strip()
    if email and (
        len(email) > 254
        or email.count("@") != 1
        or not all(part for part in email.split("@"))
        or any(ch.isspace() or not ch.isprintable() for ch in email)
    ):
        raise Invalid("email", f"{email!r} is not an email address")
    return email


def check_password(password: object, field: str = "password") -> str:
    if not isinstance(password, str):
        raise Invalid(field, "a password must be a string")
    if len(password) < MIN_PASSWORD:
        raise Invalid(field, f"a password needs at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise Invalid(field, f"a password has at most {MAX_PASSWORD} characters")
    return password


def check_label(label: object) -> str:
    if not isinstance(label, str) or len(label) > 200 or not label.isprintable():
        raise Invalid("label", "a label is at most 200 printable characters")
    return label


def check_ttl(ttl: object) -> float:
    """A token lifetime: seconds, or a duration such as `30d`; at most 366 days."""
    if ttl is None:
        return DEFAULT_TTL
    try:
        seconds = parse_duration(ttl, file="request", key="ttl")
    except SettingsError as exc:
        raise Invalid("ttl", exc.problem) from None
    if seconds < 60 or seconds > MAX_TTL:
        raise Invalid("ttl", "a token lives between 60 seconds and 366 days")
    return seconds


def one_time_password() -> str:
    return secrets.token_urlsafe(12)  # 16 characters, 96 bits


async def _existing(ctx: Context, username: str) -> UserRecord:
    user = await store.get_user(ctx.db, username)
    if user is None:
        raise NotFound(f"no user named {username!r}")
    return user


# --- re-authentication -------------------------------------------------------------------------


async def authenticated_at(ctx: Context, actor: Actor) -> dt.datetime | None:
    """When the actor's session last proved its user (sign-in or `reauthenticate`), naive UTC;
    None for token callers, the command line, or a session no longer in force."""
    if actor.via != "session" or not actor.sid:
        return None
    return await accounts.authenticated(ctx.db, actor.sid)


async def recently_authenticated(ctx: Context, actor: Actor) -> bool:
    """Whether the sensitive actions are open to the actor now (scripts always are)."""
    if actor.is_script:
        return True
    at = await authenticated_at(ctx, actor)
    return at is not None and (utcnow() - at).total_seconds() <= REAUTH_WINDOW


async def require_recent_authentication(ctx: Context, actor: Actor) -> None:
    """ReauthenticationRequired unless the actor signed in (or re-authenticated) within
    REAUTH_WINDOW seconds."""
    if not await recently_authenticated(ctx, actor):
        raise ReauthenticationRequired(
            f"confirm your password first: this needs a sign-in within the last "
            f"{REAUTH_WINDOW // 60} minutes"
        )


async def _verify_own_password(ctx: Context, actor: Actor, password: str, field: str) -> None:
    """The actor's current password, checked like a sign-in: regulated, in bounded threads."""
    user = await _existing(ctx, actor.username)
    if user.provider != "local":
        raise BadRequest("this account signs in through the identity provider: sign in there again")
    attempt = None
    if ctx.regulator is not None:
        attempt = await ctx.regulator.attempt(actor.username, actor.client)
        if attempt.retry_after:
            raise TooManyAttempts(attempt.retry_after)
    found = await store.check_password(ctx.db, actor.username, password, hashing=ctx.hashing)
    if found is None:
        await _audited(ctx, actor, "reauth.failed", actor.username)
        if attempt is not None and ctx.regulator is not None:
            retry_after = await ctx.regulator.failed(attempt)
            if retry_after:
                raise TooManyAttempts(retry_after)
        raise Invalid(field, "that is not your current password")
    if attempt is not None and ctx.regulator is not None:
        await ctx.regulator.succeeded(attempt)


async def reauthenticate(ctx: Context, actor: Actor, password: str) -> None:
    """Prove the actor's identity again with their current password; the sensitive actions are
    then open for REAUTH_WINDOW seconds. Invalid (field `password`) when it is wrong."""
    if actor.via != "session" or not actor.sid:
        raise BadRequest("only a browser session re-authenticates; tokens need not")
    if not isinstance(password, str) or not password:
        raise Invalid("password", "enter your current password")
    await _verify_own_password(ctx, actor, password[:MAX_PASSWORD], "password")
    if not await accounts.reauthenticated(ctx.db, actor.sid):
        raise BadRequest("this session has ended; sign in again")
    await audit.record(ctx.db, "reauth", username=actor.username, client=actor.client)


async def _audited(ctx: Context, actor: Actor, event: str, username: str, **detail: object) -> None:
    """An admin change in the audit log, with the admin who made it and from where."""
    await audit.record(
        ctx.db, event, username=username, client=actor.client, by=actor.username, **detail
    )


# --- users -------------------------------------------------------------------------------------


async def list_users(ctx: Context, *, q: str = "", offset: int = 0, limit: int = 50) -> UserPage:
    """A page of users by username, searched in the database (username or email containing
    `q`), with how many match in all."""
    _page_bounds(offset, limit)
    q = q.strip()[:254]
    users, total = await accounts.find_users(ctx.db, q=q, offset=offset, limit=limit)
    return UserPage(users, total, q, offset, limit)


async def get_user(ctx: Context, username: str) -> UserDetail:
    """The user with their browser sessions and API tokens in force; NotFound."""
    user = await _existing(ctx, username)
    try:
        rows = await accounts.sessions_of(ctx.db, username)
    except UserError:  # deleted in between
        raise NotFound(f"no user named {username!r}") from None
    return UserDetail(
        user,
        [row for row in rows if row.kind != "api"],
        [row for row in rows if row.kind == "api"],
    )


async def create_user(
    ctx: Context,
    actor: Actor,
    *,
    username: str,
    level: str,
    email: str = "",
    name: str = "",
    password: str | None = None,
) -> Created:
    """A local user. Without `password`, a one-time password is generated, returned once, and
    must be changed at the first sign-in. Exists (409) when the name is taken."""
    username = check_username(username)
    level = check_level(ctx.levels, level)
    email = check_email(email)
    if not isinstance(name, str) or len(name) > 200:
        raise Invalid("name", "a name is at most 200 characters")
    generated = None
    if password is None:
        generated = password = one_time_password()
    else:
        check_password(password)
    if await store.get_user(ctx.db, username) is not None:
        raise Exists(f"a user named {username!r} already exists")
    try:
        user = await store.add_user(
            ctx.db,
            username,
            level=level,
            password=password,
            email=email,
            name=name,
            hashing=ctx.hashing,
            must_change_password=generated is not None,
        )
    except UserError as exc:  # the name was taken meanwhile
        raise Exists(str(exc)) from None
    await _audited(
        ctx, actor, "user.add", username, level=level, one_time_password=generated is not None
    )
    await ctx.refresh()
    return Created(user, generated)


async def update_user(
    ctx: Context,
    actor: Actor,
    username: str,
    *,
    level: str | None = None,
    disabled: bool | None = None,
    email: str | None = None,
) -> UserRecord:
    """Change any of level, disabled and email at once (one transaction, one audit event per
    change). Disabling revokes every session and token of theirs. LastAdmin (409) when no
    enabled user would be left at the highest level."""
    if level is not None:
        level = check_level(ctx.levels, level)
    if disabled is not None and not isinstance(disabled, bool):
        raise Invalid("disabled", "disabled is true or false")
    if email is not None:
        email = check_email(email)
    before = await _existing(ctx, username)
    try:
        user = await accounts.update_user(
            ctx.db,
            username,
            highest=ctx.levels.highest,
            level=level,
            active=None if disabled is None else not disabled,
            email=email,
            guard=actor.via != "cli",
        )
    except accounts.LastAdmin as exc:
        raise LastAdmin(f"{exc}: make another user {ctx.levels.highest} first") from None
    except UserError:
        raise NotFound(f"no user named {username!r}") from None
    changes: list[tuple[str, dict[str, object]]] = []
    if level is not None and level != before.level:
        changes.append(("user.level", {"level": level, "was": before.level}))
    if disabled is not None and disabled == before.active:
        changes.append(("user.disable" if disabled else "user.enable", {}))
    if email is not None and email != before.email:
        changes.append(("user.email", {"email": email, "was": before.email}))
    for event, detail in changes:
        await _audited(ctx, actor, event, username, **detail)
    await ctx.refresh()
    return user


async def set_level(ctx: Context, actor: Actor, username: str, level: str) -> UserRecord:
    return await update_user(ctx, actor, username, level=level)


async def set_disabled(ctx: Context, actor: Actor, username: str, disabled: bool) -> UserRecord:
    return await update_user(ctx, actor, username, disabled=disabled)


async def set_email(ctx: Context, actor: Actor, username: str, email: str) -> UserRecord:
    return await update_user(ctx, actor, username, email=email)


async def reset_password(
    ctx: Context,
    actor: Actor,
    username: str,
    password: str | None = None,
    *,
    must_change: bool = True,
) -> PasswordReset:
    """Set a local user's password: `password`, or a generated one-time one returned once.
    It must be changed at their next sign-in (unless `must_change` is False: `users passwd`
    run by the operator). Needs a recent sign-in."""
    if password is not None:
        check_password(password)
    user = await _existing(ctx, username)
    if user.provider != "local":
        raise BadRequest(f"{username!r} signs in through the identity provider: no password here")
    await require_recent_authentication(ctx, actor)
    generated = None
    if password is None:
        generated = password = one_time_password()
    try:
        await store.set_password(
            ctx.db, username, password, hashing=ctx.hashing, must_change=must_change
        )
    except UserError:
        raise NotFound(f"no user named {username!r}") from None
    await _audited(
        ctx,
        actor,
        "user.password.reset",
        username,
        one_time_password=generated is not None,
        must_change=must_change,
    )
    await ctx.refresh()
    return PasswordReset(username, generated)


async def delete_user(ctx: Context, actor: Actor, username: str) -> None:
    """Delete a user; every session and token of theirs stops working at once (their `uid` is
    never handed out again). Needs a recent sign-in; LastAdmin for the last enabled admin."""
    await _existing(ctx, username)
    await require_recent_authentication(ctx, actor)
    try:
        await accounts.delete_user(
            ctx.db, username, highest=ctx.levels.highest, guard=actor.via != "cli"
        )
    except accounts.LastAdmin as exc:
        raise LastAdmin(f"{exc}: make another user {ctx.levels.highest} first") from None
    except UserError:
        raise NotFound(f"no user named {username!r}") from None
    await _audited(ctx, actor, "user.delete", username)
    await ctx.refresh()


async def sign_out_everywhere(ctx: Context, actor: Actor, username: str) -> int:
    """Revoke every browser session and API token of the user; how many were in force."""
    try:
        count = await accounts.revoke_everything(ctx.db, username)
    except UserError:
        raise NotFound(f"no user named {username!r}") from None
    await _audited(ctx, actor, "user.sign_out", username, count=count)
    await ctx.refresh()
    return count


async def sign_out_other_sessions(ctx: Context, actor: Actor) -> int:
    """/account: revoke every session and API token of the actor but the session they use."""
    try:
        count = await accounts.revoke_all_but(ctx.db, actor.username, actor.sid)
    except UserError:
        raise NotFound(f"no user named {actor.username!r}") from None
    await _audited(ctx, actor, "user.sign_out_others", actor.username, count=count)
    await ctx.refresh()
    return count


async def find_session(ctx: Context, session_id: str) -> SessionRecord:
    """A session or token in force by id, or by a unique prefix of at least 8 characters (what
    the audit log shows); NotFound, or Conflict when the prefix is ambiguous."""
    if not isinstance(session_id, str) or not 8 <= len(session_id) <= 64:
        raise NotFound("no such session or token")
    found = await accounts.find_session(ctx.db, session_id)
    if found is None:
        matches = await accounts.sessions_by_prefix(ctx.db, session_id)
        if len(matches) > 1:
            raise Conflict(f"{session_id!r} is the start of several ids; give more of it")
        found = await accounts.find_session(ctx.db, matches[0]) if matches else None
    if found is None or found.revoked_at is not None or found.expires_at <= utcnow():
        raise NotFound("no such session or token in force")
    return found


async def revoke_session(
    ctx: Context, actor: Actor, session_id: str, *, owner: str | None = None
) -> SessionRecord:
    """Revoke one browser session or API token by id (or unique prefix). With `owner` (the
    account page), only one of theirs: anyone else's is NotFound, as if it did not exist."""
    found = await find_session(ctx, session_id)
    if owner is not None and found.username != owner:
        raise NotFound("no such session or token in force")
    await store.revoke_session(ctx.db, found.id)
    event = "token.revoke" if found.kind == "api" else "session.revoke"
    await _audited(ctx, actor, event, found.username, sid=found.id[:8])
    await ctx.refresh()
    return found


async def list_tokens(ctx: Context, username: str | None = None) -> list[SessionRecord]:
    """API tokens in force: the user's, or everyone's."""
    if username is None:
        return await accounts.all_tokens(ctx.db)
    return (await get_user(ctx, username)).tokens


async def mint_token(
    ctx: Context, actor: Actor, username: str, *, label: str = "", ttl: object = None
) -> Minted:
    """An API token for `username` (label, lifetime: seconds or `30d`, default 30 days), the
    token string returned once. For someone else it needs a recent sign-in."""
    label = check_label(label)
    seconds = check_ttl(ttl)
    if ctx.codec is None:
        raise RuntimeError("minting a token needs the token codec")
    user = await _existing(ctx, username)
    if not user.active:
        raise Conflict(f"{username!r} is disabled")
    if username != actor.username:
        await require_recent_authentication(ctx, actor)
    # the clock read before the row is written: `exp` never passes the row's `expires_at`
    now = int(time.time())
    try:
        sid, opened = await store.open_session(
            ctx.db, username, lifetime=seconds, kind="api", label=label, client=actor.client
        )
    except UserError:
        raise NotFound(f"no user named {username!r}") from None
    token = ctx.codec.sign(
        claims.api_token(ctx.levels, opened.username, opened, sid=sid, now=now, ttl=seconds)
    )
    await _audited(ctx, actor, "token.mint", username, sid=sid[:8], ttl=int(seconds), label=label)
    expires = dt.datetime.fromtimestamp(now + int(seconds), dt.UTC).replace(tzinfo=None)
    return Minted(sid, token, username, label, expires)


# --- the signed-in user's own password ----------------------------------------------------------


async def change_password(ctx: Context, actor: Actor, current: str, new: str) -> None:
    """/account: a local user's new password, the current one required (Invalid naming
    `current_password` when wrong, `new_password` when the new one is unfit). Clears a forced
    change, and counts as a fresh sign-in for this session."""
    if not isinstance(current, str) or not current:
        raise Invalid("current_password", "enter your current password")
    check_password(new, "new_password")
    if new == current:
        raise Invalid("new_password", "choose a password other than the current one")
    await _verify_own_password(ctx, actor, current[:MAX_PASSWORD], "current_password")
    try:
        await store.set_password(ctx.db, actor.username, new, hashing=ctx.hashing)
    except UserError:
        raise NotFound(f"no user named {actor.username!r}") from None
    if actor.via == "session" and actor.sid:
        await accounts.reauthenticated(ctx.db, actor.sid)
    await _audited(ctx, actor, "user.password.change", actor.username)
    await ctx.refresh()


# --- product levels ----------------------------------------------------------------------------


def _runtime(ctx: Context) -> Runtime:
    if ctx.runtime is None:
        raise RuntimeError("product levels need the running portal")
    return ctx.runtime


def _kind(product: Product) -> str:
    from ..bridge import WSGIBridge

    mount = product.mount
    if mount.upstream:
        return "upstream"
    if mount.websocket:
        return "mixed"
    # by its lifespan apps: `product.app` of a running portal is wrapped (reload.Tracked)
    flask = any(isinstance(app, WSGIBridge) for app in product.lifespan_apps)
    return "flask" if flask else "starlette"


def _rules(mount: MountSettings) -> tuple[dict[str, object], ...]:
    """As settings.toml writes them: `{path, level}`, or `{path, block = true}`."""
    return tuple(
        {"path": rule.path, "block": True}
        if rule.level is None
        else {"path": rule.path, "level": rule.level}
        for rule in mount.rules
    )


async def list_mounts(ctx: Context) -> list[MountView]:
    """Every mount by path: kind, title, the level of settings.toml, the level in force and
    the run-time override, if any."""
    runtime = _runtime(ctx)
    overrides = await accounts.overrides(ctx.db)
    views = []
    for product in sorted(runtime.products, key=lambda p: p.mount.path):
        mount = product.mount
        views.append(
            MountView(
                path=mount.path,
                title=mount.title,
                kind=_kind(product),
                file_level=mount.level,
                level=runtime.policy.level(mount.path),
                override=overrides.get(mount.path),
                rules=_rules(mount),
                upstream=mount.upstream,
            )
        )
    return views


async def set_mount_level(ctx: Context, actor: Actor, path: str, level: str | None) -> MountView:
    """Override a mount's level at run time (None: back to settings.toml's). Every worker
    applies it within one feed interval, open WebSockets included."""
    runtime = _runtime(ctx)
    if not isinstance(path, str) or not path:
        raise Invalid("path", "path names a mount, such as /test")
    if level is not None and (not isinstance(level, str) or level not in ctx.levels):
        raise Invalid(
            "level", f"unknown level {level!r}; levels: {', '.join(ctx.levels.names)} or null"
        )
    paths = {product.mount.path for product in runtime.products}
    if path.rstrip("/") in paths:
        path = path.rstrip("/")
    if path not in paths:
        raise NotFound(f"no mount at {path!r}")
    await store.set_mount_level(ctx.db, path, level, by=actor.username)
    await audit.record(
        ctx.db,
        "mount.level" if level is not None else "mount.revert",
        client=actor.client,
        by=actor.username,
        path=path,
        level=level if level is not None else "",
    )
    await ctx.refresh()
    return next(view for view in await list_mounts(ctx) if view.path == path)


# --- the audit log -----------------------------------------------------------------------------


def _since(since: str | dt.datetime | None) -> dt.datetime | None:
    if since is None or since == "":
        return None
    if isinstance(since, dt.datetime):
        found = since
    else:
        try:
            found = dt.datetime.fromisoformat(since.strip().replace("Z", "+00:00"))
        except ValueError:
            raise Invalid("since", f"{since!r} is not an ISO 8601 time") from None
    if found.tzinfo is not None:
        found = found.astimezone(dt.UTC).replace(tzinfo=None)
    return found


async def list_audit(
    ctx: Context,
    *,
    user: str = "",
    event: str = "",
    since: str | dt.datetime | None = None,
    client: str = "",
    outcome: str = "",
    offset: int = 0,
    limit: int = 100,
) -> AuditPage:
    """Audit events newest first: about `user` or made by them, named `event` (or under a
    prefix ending in `.`), at or after `since` (ISO 8601; naive means UTC), from the address
    `client`, with the `outcome` "ok" or "refused" (a denial or a failure)."""
    _page_bounds(offset, limit)
    events, total = await accounts.find_audit(
        ctx.db,
        user=user.strip(),
        event=event.strip(),
        since=_since(since),
        client=client.strip(),
        outcome=_outcome(outcome),
        offset=offset,
        limit=limit,
    )
    return AuditPage(events, total, offset, limit)


def _outcome(outcome: str) -> str:
    if outcome not in ("", "ok", "refused"):
        raise Invalid("outcome", "outcome is ok or refused")
    return outcome


CSV_COLUMNS = ("id", "at", "event", "username", "by", "client", "detail")


def audit_csv(events: Iterable[AuditRecord]) -> str:
    """Events as CSV (header first; `at` ISO 8601 UTC; the rest of the detail as JSON). Cells
    that a spreadsheet would take for a formula are quoted with a leading `'`."""
    import json

    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for event in events:
        rest = {key: value for key, value in event.detail.items() if key != "by"}
        row = [
            str(event.id),
            event.at.isoformat() + "Z",
            event.event,
            event.username,
            str(event.detail.get("by", "")),
            event.client,
            json.dumps(rest, sort_keys=True, default=str) if rest else "",
        ]
        writer.writerow([_no_formula(cell) for cell in row])
    return out.getvalue()


def _no_formula(cell: str) -> str:
    # CSV injection (OWASP): a cell starting with = + - @ is a formula to spreadsheets
    return "'" + cell if cell[:1] in ("=", "+", "-", "@", "\t", "\r") else cell


async def export_audit(
    ctx: Context,
    *,
    user: str = "",
    event: str = "",
    since: str | dt.datetime | None = None,
    client: str = "",
    outcome: str = "",
    limit: int = 10_000,
) -> str:
    """The filtered audit log (as `list_audit`) as CSV, newest first, at most `limit` events
    (up to 100,000)."""
    if not 1 <= limit <= 100_000:
        raise Invalid("limit", "limit must be between 1 and 100000")
    events, _ = await accounts.find_audit(
        ctx.db,
        user=user.strip(),
        event=event.strip(),
        since=_since(since),
        client=client.strip(),
        outcome=_outcome(outcome),
        limit=limit,
    )
    return audit_csv(events)


__all__ = [
    "REAUTH_WINDOW",
    "Actor",
    "AuditPage",
    "Context",
    "Created",
    "Minted",
    "MountView",
    "PasswordReset",
    "UserDetail",
    "UserPage",
    "audit_csv",
    "authenticated_at",
    "change_password",
    "create_user",
    "delete_user",
    "export_audit",
    "find_session",
    "get_user",
    "list_audit",
    "list_mounts",
    "list_tokens",
    "list_users",
    "mint_token",
    "reauthenticate",
    "recently_authenticated",
    "reload_settings",
    "require_recent_authentication",
    "reset_password",
    "revoke_session",
    "set_disabled",
    "set_email",
    "set_level",
    "set_mount_level",
    "sign_out_everywhere",
    "sign_out_other_sessions",
    "update_user",
]


# --- settings reload (added for the admin pages) -----------------------------------------------


async def reload_settings(ctx: Context, actor: Actor) -> ReloadResult:
    """Read settings.toml again and apply it in this worker (reload.py), or keep the settings
    in force and return the error; audited either way. BadRequest when this portal has no
    reloader (one built without `Portal`)."""
    reloader = _runtime(ctx).reloader
    if reloader is None:
        raise BadRequest("this portal cannot reload its settings")
    result = await reloader.reload("admin")
    detail = {"error": result.error} if result.error else {}
    try:
        await audit.record(
            ctx.db,
            "settings.reload" if result.applied else "settings.reload.refused",
            client=actor.client,
            by=actor.username,
            **detail,
        )
    except DatabaseUnavailable as exc:  # the log line is written; a reload needs no database
        logger.error("audit entry of a settings reload not stored: %s", exc)
    return result
