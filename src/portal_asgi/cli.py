"""`portal-asgi`: a thin command line over the same functions the web pages call.

Only `db upgrade` changes the schema; every other command refuses a database whose schema is
missing or behind. Heavy modules (SQLAlchemy, Alembic, the products) are imported inside the
commands that need them, so that the command line starts quickly.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import getpass
import json
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from .exceptions import PortalError, SchemaOutOfDate, UserError
from .levels import Levels
from .settings import Settings, load_settings, parse_duration

if TYPE_CHECKING:
    from .admin.service import Context
    from .db.accounts import SessionRecord
    from .db.engine import Database
    from .db.models import AuditEvent
    from .tokens import TokenCodec

Command = Callable[[argparse.Namespace, Settings], Awaitable[int]]


def _levels(settings: Settings) -> Levels:
    return Levels(settings.portal.levels)


def _check_level(settings: Settings, level: str) -> str:
    if level not in settings.portal.levels:
        raise UserError(f"unknown level {level!r} (levels: {', '.join(settings.portal.levels)})")
    return level


def access_table(settings: Settings) -> list[tuple[str, str, str]]:
    """(path, level, who may reach it), longest path first as the router sees them; each
    mount's rules right below it."""
    from .products import load_products

    levels = _levels(settings)

    def who(level: str) -> str:
        if level == "public":
            return "everyone"
        return ", ".join(name for name in levels.configured if levels.allows(name, level))

    rows = []
    for product in load_products(settings):
        mount = product.mount
        rows.append((mount.path, mount.level, who(mount.level)))
        # each rule below its mount: a sub-path raised to a level, or blocked
        for rule in mount.rules:
            reach = "nobody: answers 404" if rule.level is None else who(rule.level)
            rows.append((mount.path + rule.path, rule.level or "blocked", reach))
    return rows


def _print_table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> None:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print(
            "  ".join(
                str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)
            ).rstrip()
        )


async def cmd_check(args: argparse.Namespace, settings: Settings) -> int:
    rows = access_table(settings)
    rules = sum(len(mount.rules) for mount in settings.mounts)
    print(
        f"{settings.file}: OK, {len(settings.mounts)} mounts"
        + (f" ({rules} rule{'s' if rules > 1 else ''})" if rules else "")
        + f", levels public < {' < '.join(settings.portal.levels)}"
    )
    _print_table(rows, ("path", "level", "who may reach it"))
    if args.online:
        return await _check_online(settings)
    return 0


async def _check_online(settings: Settings) -> int:
    """`check --online`: what the OIDC provider answers now; 1 when sign-in would not work."""
    oidc = settings.auth.oidc
    if oidc is None:
        print("online: nothing to fetch ([auth] provider is local, no [auth.oidc] table)")
        return 0
    from .oidc.online import check_provider

    print(f"online: OIDC provider {oidc.issuer} (timeout {oidc.timeout:g}s)")
    findings = await check_provider(oidc)
    for finding in findings:
        print(f"  {finding.severity.upper():8} {finding.message}")
    errors = sum(1 for f in findings if f.severity == "error")
    warnings = sum(1 for f in findings if f.severity == "warning")
    verdict = "OK" if not errors else "FAILED"
    print(f"online: {verdict}, {errors} error(s), {warnings} warning(s)")
    if errors:
        print(
            f"portal-asgi: error: the OIDC provider check found {errors} error(s)", file=sys.stderr
        )
    return 1 if errors else 0


async def cmd_routes(args: argparse.Namespace, settings: Settings) -> int:
    from .products import load_products

    portal = [
        ("/auth/login", "public", "portal: sign in"),
        ("/auth/logout", "public", "portal: sign out (POST)"),
        ("/auth/callback", "public", "portal: OIDC redirect target"),
        ("/healthz", "public", "portal: health"),
        ("/readyz", "public", "portal: readiness"),
        ("/.well-known/jwks.json", "public", "portal: signing keys"),
        ("/static", "public", "portal: stylesheet"),
        ("/", settings.portal.levels[0], "portal: product catalogue"),
    ]
    products = []
    for product in load_products(settings):
        mount = product.mount
        kind = f"{mount.app} + websocket {mount.websocket}" if mount.websocket else mount.app
        if mount.upstream is not None:
            kind = f"upstream {mount.upstream}"
        products.append((mount.path + "/", mount.level, kind))
        for rule in mount.rules:
            what = "blocked (404)" if rule.level is None else f"level {rule.level}"
            served = f"rule of {mount.path}/: {what}"
            products.append((mount.path + rule.path, rule.level or "blocked", served))
    _print_table([*portal, *products], ("path", "level", "served by"))
    return 0


async def _with_db(settings: Settings, work: Callable[[Database], Awaitable[int]]) -> int:
    """Run `work` on the portal's database, which must hold the newest schema (SchemaOutOfDate
    names `portal-asgi db upgrade` otherwise); a missing SQLite file is not created either."""
    from .db import migrate
    from .db.engine import Database

    url = settings.portal.database_url
    if (missing := migrate.missing_file(url)) is not None:
        raise SchemaOutOfDate(f"no database at {missing}: {migrate.UPGRADE}")
    db = Database(url)
    try:
        await migrate.check(db)
        return await work(db)
    finally:
        await db.close()


async def _codec(settings: Settings, db: Database) -> TokenCodec:
    """The portal's own token codec, with the keys the running portal holds now (from the
    database, or pinned by settings: signing.py)."""
    from .signing import current_ring
    from .tokens import TokenCodec

    ring = await current_ring(settings.portal, db)
    return TokenCodec(ring, issuer=settings.portal.base_url)


def _read_password(args: argparse.Namespace) -> str:
    if not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("Password: ")
        if password != getpass.getpass("Password again: "):
            raise UserError("the passwords differ")
    if len(password) < 12:  # OWASP ASVS 2.1.1
        raise UserError("a password needs at least 12 characters")
    return password


async def cmd_users_add(args: argparse.Namespace, settings: Settings) -> int:
    from . import audit
    from .db import store

    level = _check_level(settings, args.level)
    password = _read_password(args)

    async def work(db: Database) -> int:
        user = await store.add_user(
            db,
            args.name,
            level=level,
            password=password,
            email=args.email or "",
            name=args.full_name or "",
        )
        await audit.record(db, "user.add", username=user.username, level=user.level, by="cli")
        print(f"added {user.username} at level {user.level}")
        return 0

    return await _with_db(settings, work)


async def cmd_users_set_level(args: argparse.Namespace, settings: Settings) -> int:
    from . import audit
    from .db import store

    level = _check_level(settings, args.level)

    async def work(db: Database) -> int:
        await store.set_level(db, args.name, level)
        await audit.record(db, "user.level", username=args.name, level=level, by="cli")
        print(f"{args.name} is now at level {level}")
        return 0

    return await _with_db(settings, work)


async def _set_active(args: argparse.Namespace, settings: Settings, active: bool) -> int:
    from . import audit
    from .db import store

    async def work(db: Database) -> int:
        await store.set_active(db, args.name, active)
        event = "user.enable" if active else "user.disable"
        await audit.record(db, event, username=args.name, by="cli")
        done = "enabled" if active else "disabled; their sessions and tokens are revoked"
        print(f"{args.name} is {done}")
        return 0

    return await _with_db(settings, work)


async def cmd_users_disable(args: argparse.Namespace, settings: Settings) -> int:
    return await _set_active(args, settings, False)


async def cmd_users_enable(args: argparse.Namespace, settings: Settings) -> int:
    return await _set_active(args, settings, True)


def _confirm(question: str) -> bool:
    """Ask on the terminal; False unless the answer is yes."""
    print(f"{question} [y/N] ", end="", file=sys.stderr, flush=True)
    return sys.stdin.readline().strip().lower() in ("y", "yes")


async def cmd_users_delete(args: argparse.Namespace, settings: Settings) -> int:
    from .admin import service

    if not args.yes:
        if not sys.stdin.isatty():
            raise UserError("deleting a user needs --yes when stdin is not a terminal")
        if not _confirm(f"Delete user {args.name!r} and end all their sessions and tokens?"):
            print("nothing deleted", file=sys.stderr)
            return 1

    async def work(db: Database) -> int:
        await service.delete_user(_context(settings, db), service.Actor.cli(), args.name)
        print(f"deleted {args.name}; their sessions and tokens are revoked")
        return 0

    return await _with_db(settings, work)


async def cmd_users_list(args: argparse.Namespace, settings: Settings) -> int:
    from .db import store

    async def work(db: Database) -> int:
        rows = [
            (
                u.username,
                u.level,
                "active" if u.active else "disabled",
                u.provider,
                u.email,
                u.last_login_at.isoformat(sep=" ") if u.last_login_at else "never",
            )
            for u in await store.list_users(db)
        ]
        _print_table(rows, ("username", "level", "state", "provider", "email", "last login"))
        return 0

    return await _with_db(settings, work)


def _context(settings: Settings, db: Database, codec: TokenCodec | None = None) -> Context:
    """What the admin operations need, for the command line (admin/service.py)."""
    from .admin.service import Context

    return Context(db, _levels(settings), codec=codec)


def _when(value: dt.datetime | None) -> str:
    return value.isoformat(sep=" ") if value is not None else "-"


async def cmd_users_passwd(args: argparse.Namespace, settings: Settings) -> int:
    """A new password for a local user, read like `users add`'s."""
    from .admin import service

    password = _read_password(args)

    async def work(db: Database) -> int:
        await service.reset_password(
            _context(settings, db),
            service.Actor.cli(),
            args.name,
            password,
            must_change=args.must_change,
        )
        then = "; it must be changed at the next sign-in" if args.must_change else ""
        print(f"password of {args.name} set{then}")
        return 0

    return await _with_db(settings, work)


async def cmd_users_sign_out(args: argparse.Namespace, settings: Settings) -> int:
    from .admin import service

    async def work(db: Database) -> int:
        count = await service.sign_out_everywhere(
            _context(settings, db), service.Actor.cli(), args.name
        )
        print(f"{args.name} is signed out everywhere: {count} session(s) and token(s) revoked")
        return 0

    return await _with_db(settings, work)


def _session_rows(rows: Sequence[SessionRecord], *, user: bool = False) -> list[tuple[str, ...]]:
    return [
        (
            row.id,
            *((row.username,) if user else ()),
            "token" if row.kind == "api" else "session",
            row.label or "-",
            _when(row.created_at),
            _when(row.last_seen_at),
            _when(row.expires_at),
            row.client or "-",
        )
        for row in rows
    ]


SESSION_COLUMNS = ("created (UTC)", "last seen", "expires", "client")


async def cmd_sessions_list(args: argparse.Namespace, settings: Settings) -> int:
    """The user's browser sessions and API tokens in force, newest first."""
    from .admin import service

    async def work(db: Database) -> int:
        found = await service.get_user(_context(settings, db), args.name)
        rows = _session_rows([*found.sessions, *found.tokens])
        _print_table(rows, ("id", "kind", "label", *SESSION_COLUMNS))
        return 0

    return await _with_db(settings, work)


async def cmd_sessions_revoke(args: argparse.Namespace, settings: Settings) -> int:
    """One session or token by id, or by the first 8+ characters the audit log shows."""
    from .admin import service

    async def work(db: Database) -> int:
        found = await service.revoke_session(_context(settings, db), service.Actor.cli(), args.id)
        what = "token" if found.kind == "api" else "session"
        print(f"revoked {what} {found.id} of {found.username}")
        return 0

    return await _with_db(settings, work)


async def cmd_token_list(args: argparse.Namespace, settings: Settings) -> int:
    """API tokens in force: ids, labels, expiry, last use."""
    from .admin import service

    async def work(db: Database) -> int:
        tokens = await service.list_tokens(_context(settings, db), args.name)
        rows = _session_rows(tokens, user=True)
        _print_table(rows, ("id", "user", "kind", "label", *SESSION_COLUMNS))
        return 0

    return await _with_db(settings, work)


async def cmd_token_mint(args: argparse.Namespace, settings: Settings) -> int:
    from . import audit, claims
    from .db import store

    ttl = parse_duration(args.ttl, file="--ttl", key="ttl")

    async def work(db: Database) -> int:
        codec = await _codec(settings, db)
        # the clock read before the row is written: `exp` never passes the row's `expires_at`,
        # which is what decides when the token's revocation may be forgotten
        now = int(time.time())
        sid, user = await store.open_session(
            db, args.name, lifetime=ttl, kind="api", label=args.label
        )
        token = codec.sign(
            claims.api_token(_levels(settings), user.username, user, sid=sid, now=now, ttl=ttl)
        )
        await audit.record(db, "token.mint", username=user.username, sid=sid[:8], ttl=int(ttl))
        print(
            f"API token for {user.username} (level {user.level}), valid {args.ttl}:",
            file=sys.stderr,
        )
        print(token)
        return 0

    return await _with_db(settings, work)


async def cmd_token_revoke(args: argparse.Namespace, settings: Settings) -> int:
    """By the token string, its id, or the first 8+ characters of its id."""
    from .admin import service
    from .admin.errors import NotFound

    async def work(db: Database) -> int:
        codec = await _codec(settings, db)
        try:
            sid = codec.verify(args.token)["sid"]
        except PortalError:
            sid = args.token  # an id, or the first 8+ characters of one
        try:
            await service.revoke_session(_context(settings, db), service.Actor.cli(), sid)
        except NotFound:
            raise UserError("no such active token") from None
        print("revoked")
        return 0

    return await _with_db(settings, work)


async def cmd_keys_list(args: argparse.Namespace, settings: Settings) -> int:
    from . import signing

    async def work(db: Database | None) -> int:
        infos = await signing.describe(settings.portal, db)
        if not infos:
            print(
                "no keys in the database yet: the portal's first start (or `keys rotate`) "
                "imports the key of [portal] key_file or key"
            )
            return 0
        rows = [(i.kid, i.created, i.state, i.source) for i in infos]
        _print_table(rows, ("kid", "created (UTC)", "state", "source"))
        return 0

    if settings.portal.key_rotation == "manual":  # pinned by settings: no database needed
        return await work(None)
    return await _with_db(settings, work)


async def cmd_keys_rotate(args: argparse.Namespace, settings: Settings) -> int:
    from . import audit, signing

    pinned = signing.pinned(settings.portal)
    if pinned is not None:
        raise UserError(pinned)
    # 0 is fine here (sign at once), unlike a duration in settings
    zero = args.activate_in.strip() in ("0", "0s")
    activate_in = 0.0 if zero else parse_duration(args.activate_in, file="--activate-in", key="")

    async def work(db: Database) -> int:
        done = await signing.rotate(settings.portal, db, activate_in=activate_in)
        await audit.record(
            db, "key.rotate", kid=done.kid, replaced=",".join(done.replaced), by="cli"
        )
        print(f"new signing key {done.kid}: in every portal's JWKS within a feed interval,")
        print(f"  signing from {signing.when(done.active_from)}")
        for kid in done.replaced:
            print(f"  {kid} then verifies only, until every token it signed has expired")
        return 0

    return await _with_db(settings, work)


async def cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    """The one command that changes the schema: says each step before it runs."""
    from .db import migrate
    from .db.engine import Database

    db = Database(settings.portal.database_url)
    steps: list[str] = []

    def progress(line: str) -> None:
        steps.append(line)
        print(f"  {line}", flush=True)

    try:
        url = db.engine.url.render_as_string(hide_password=True)
        print(f"upgrading the database at {url}", flush=True)
        revision = await migrate.upgrade(db, progress=progress)
        if not steps:
            print("  nothing to migrate")
        print(f"database ready at revision {revision}: {url}")
        return 0
    finally:
        await db.close()


async def cmd_bans_list(args: argparse.Namespace, settings: Settings) -> int:
    from .db import throttle
    from .db.models import utcnow

    async def work(db: Database) -> int:
        rows = [
            (b.kind, b.key, b.until.isoformat(sep=" "), str(b.failures))
            for b in await throttle.list_bans(db, utcnow())
        ]
        _print_table(rows, ("kind", "account or address", "banned until (UTC)", "failures"))
        return 0

    return await _with_db(settings, work)


async def cmd_bans_clear(args: argparse.Namespace, settings: Settings) -> int:
    from . import audit
    from .db import throttle

    async def work(db: Database) -> int:
        count = await throttle.clear_bans(db, key=args.key)
        await audit.record(db, "ban.clear", key=args.key or "*", count=count)
        print(f"lifted {count} ban{'s' if count != 1 else ''}")
        return 0

    return await _with_db(settings, work)


def _audit_line(event: AuditEvent) -> str:
    try:
        detail = json.loads(event.detail) if event.detail else {}
    except ValueError:
        detail = {"detail": event.detail}
    body = {"id": event.id, "at": event.at.isoformat(), "event": event.event}
    body |= {"username": event.username, "client": event.client, **detail}
    return json.dumps(body, default=str, sort_keys=True)


async def cmd_audit_tail(args: argparse.Namespace, settings: Settings) -> int:
    """The newest events as JSON lines, oldest first; `--follow` keeps printing new ones."""
    from sqlalchemy import select

    from .db.models import AuditEvent

    async def work(db: Database) -> int:
        async with db.session() as session:
            newest = await session.scalars(
                select(AuditEvent).order_by(AuditEvent.id.desc()).limit(args.lines)
            )
            events = list(reversed(newest.all()))
        for event in events:
            print(_audit_line(event), flush=True)
        last = events[-1].id if events else 0
        while args.follow:
            await asyncio.sleep(1.0)
            async with db.session() as session:
                fresh = (
                    await session.scalars(
                        select(AuditEvent).where(AuditEvent.id > last).order_by(AuditEvent.id)
                    )
                ).all()
            for event in fresh:
                print(_audit_line(event), flush=True)
                last = event.id
        return 0

    return await _with_db(settings, work)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="portal-asgi", description=__doc__)
    top.add_argument(
        "--settings", help="settings file (default: $PORTAL_SETTINGS or ./settings.toml)"
    )
    sub = top.add_subparsers(dest="command", required=True)

    check = sub.add_parser("check", help="validate settings.toml and print who may reach what")
    check.add_argument(
        "--online",
        action="store_true",
        help="also fetch the OIDC provider's discovery document and keys, and say what is wrong",
    )
    check.set_defaults(run=cmd_check)
    sub.add_parser("routes", help="list every path the portal serves").set_defaults(run=cmd_routes)

    users = sub.add_parser("users", help="manage local users").add_subparsers(
        dest="users", required=True
    )
    add = users.add_parser("add", help="add a user (password from stdin, or prompted)")
    add.add_argument("name")
    add.add_argument("--level", required=True)
    add.add_argument("--email")
    add.add_argument("--full-name")
    add.set_defaults(run=cmd_users_add)
    set_level = users.add_parser("set-level", help="change a user's level")
    set_level.add_argument("name")
    set_level.add_argument("level")
    set_level.set_defaults(run=cmd_users_set_level)
    disable = users.add_parser("disable", help="disable a user and end their sessions")
    disable.add_argument("name")
    disable.set_defaults(run=cmd_users_disable)
    enable = users.add_parser("enable", help="enable a disabled user")
    enable.add_argument("name")
    enable.set_defaults(run=cmd_users_enable)
    delete = users.add_parser(
        "delete", help="delete a user and revoke their sessions and tokens (asks first)"
    )
    delete.add_argument("name")
    delete.add_argument("--yes", action="store_true", help="do not ask (needed without a terminal)")
    delete.set_defaults(run=cmd_users_delete)
    users.add_parser("list", help="list users").set_defaults(run=cmd_users_list)
    passwd = users.add_parser(
        "passwd", help="set a local user's password (from stdin, or prompted)"
    )
    passwd.add_argument("name")
    passwd.add_argument(
        "--must-change",
        action="store_true",
        help="the user must change it at their next sign-in (a temporary password)",
    )
    passwd.set_defaults(run=cmd_users_passwd)
    sign_out = users.add_parser(
        "sign-out", help="sign a user out everywhere: revoke every session and API token"
    )
    sign_out.add_argument("name")
    sign_out.set_defaults(run=cmd_users_sign_out)

    sessions = sub.add_parser("sessions", help="browser sessions and API tokens").add_subparsers(
        dest="sessions", required=True
    )
    sessions_list = sessions.add_parser("list", help="a user's sessions and tokens in force")
    sessions_list.add_argument("name")
    sessions_list.set_defaults(run=cmd_sessions_list)
    sessions_revoke = sessions.add_parser(
        "revoke", help="revoke one session or token by id (or its first 8+ characters)"
    )
    sessions_revoke.add_argument("id")
    sessions_revoke.set_defaults(run=cmd_sessions_revoke)

    token = sub.add_parser("token", help="API tokens").add_subparsers(dest="token", required=True)
    mint = token.add_parser("mint", help="mint an API token (printed alone on the last line)")
    mint.add_argument("name")
    mint.add_argument("--ttl", default="30d")
    mint.add_argument("--label", default="")
    mint.set_defaults(run=cmd_token_mint)
    token_list = token.add_parser("list", help="API tokens in force: everyone's, or a user's")
    token_list.add_argument("name", nargs="?")
    token_list.set_defaults(run=cmd_token_list)
    revoke = token.add_parser(
        "revoke", help="revoke an API token: the token, its id, or the id's first 8+ characters"
    )
    revoke.add_argument("token", metavar="ID|TOKEN")
    revoke.set_defaults(run=cmd_token_revoke)

    db = sub.add_parser("db", help="database").add_subparsers(dest="db", required=True)
    db.add_parser("upgrade", help="create or upgrade the database tables").set_defaults(
        run=cmd_db_upgrade
    )
    bans = sub.add_parser("bans", help="login bans").add_subparsers(dest="bans", required=True)
    bans.add_parser("list", help="bans in force").set_defaults(run=cmd_bans_list)
    clear = bans.add_parser("clear", help="lift every ban, or those on one account or address")
    clear.add_argument("key", nargs="?", help="a username or a client address")
    clear.set_defaults(run=cmd_bans_clear)

    keys = sub.add_parser("keys", help="the portal's signing keys").add_subparsers(
        dest="keys", required=True
    )
    keys.add_parser("list", help="every key, its state and where it comes from").set_defaults(
        run=cmd_keys_list
    )
    rotate = keys.add_parser(
        "rotate", help="a new signing key; the old one verifies until its tokens expire"
    )
    rotate.add_argument(
        "--activate-in",
        default="5m",
        help="publish the new key this long before it signs (default 5m: longer than the "
        "JWKS may be cached; 0s signs at once)",
    )
    rotate.set_defaults(run=cmd_keys_rotate)

    audit_parser = sub.add_parser("audit", help="audit log")
    audit_log = audit_parser.add_subparsers(dest="audit", required=True)
    tail = audit_log.add_parser("tail", help="the newest audit events, as JSON lines")
    tail.add_argument("-n", "--lines", type=int, default=20)
    tail.add_argument("-f", "--follow", action="store_true", help="keep printing new events")
    tail.set_defaults(run=cmd_audit_tail)
    return top


async def _main(run: Command, args: argparse.Namespace, settings: Settings) -> int:
    return await run(args, settings)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = load_settings(args.settings)
        run: Command = args.run
        return asyncio.run(_main(run, args, settings))
    except PortalError as exc:
        print(f"portal-asgi: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
