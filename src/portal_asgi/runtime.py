"""Everything one running portal holds, built once from settings at startup and handed down."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy.exc import SQLAlchemyError

from . import logs, signing
from .cookies import SessionCookie
from .csrf import CSRF
from .db import migrate, store
from .db.engine import Database
from .directory import Directory
from .exceptions import DatabaseUnavailable, KeyUnusable, SchemaOutOfDate, UserError
from .keys import KeyRing, SigningKey
from .levels import Levels
from .lifespans import Lifespans
from .metrics import MULTIPROCESS_DIR, Metrics
from .oidc import OIDCProvider
from .policy import Policy
from .products import Product, load_products
from .settings import Settings
from .sockets import SocketRegistry
from .tokens import TokenCodec
from .upstream import UpstreamKit

if TYPE_CHECKING:
    from .reload import Reloader

logger = logging.getLogger("portal_asgi")


@dataclass(frozen=True, slots=True)
class Runtime:
    settings: Settings
    levels: Levels
    db: Database
    keys: KeyRing  # the signing key and every key whose tokens may still be valid
    codec: TokenCodec
    directory: Directory
    policy: Policy
    cookie: SessionCookie
    csrf: CSRF
    products: tuple[Product, ...]
    sockets: SocketRegistry
    metrics: Metrics
    oidc: OIDCProvider | None = None  # when [auth] provider = "oidc"
    # the products' lifespans that run now: a settings reload starts and stops some
    lifespans: Lifespans = field(default_factory=Lifespans)
    # settings reload (reload.py): set by the Portal once it serves; None in a bare Runtime
    reloader: Reloader | None = None
    # what upstream mounts take from the portal (load_product builds them with it)
    upstreams: UpstreamKit | None = None

    @property
    def key(self) -> SigningKey:
        """The key new tokens are signed with now (it changes when keys rotate)."""
        return self.keys.current


def build_runtime(settings: Settings) -> Runtime:
    """Wire the parts together; opens nothing yet (see `running`)."""
    levels = Levels(settings.portal.levels)
    db = Database(settings.portal.database_url)
    # the keys settings name; with key_rotation = "database", the directory's first load
    # replaces them with the database's (signing.py)
    keys, keeper = signing.startup(settings.portal, db)
    directory = Directory(db, interval=settings.portal.feed_interval, keys=keeper)
    csrf = CSRF(keys.current.secret, secure=settings.https)
    keys.track(csrf.serializer)
    codec = TokenCodec(keys, issuer=settings.portal.base_url)
    metrics = Metrics(settings.metrics, multiprocess_dir=MULTIPROCESS_DIR)
    upstreams = UpstreamKit(codec, levels, metrics, settings.portal.title)
    return Runtime(
        settings=settings,
        levels=levels,
        db=db,
        keys=keys,
        codec=codec,
        directory=directory,
        policy=Policy(settings.mounts, levels, directory),
        cookie=SessionCookie(secure=settings.https),
        csrf=csrf,
        products=tuple(load_products(settings, upstreams)),
        sockets=SocketRegistry(settings.websocket, levels=levels, directory=directory),
        metrics=metrics,
        upstreams=upstreams,
        oidc=(
            OIDCProvider(settings.auth.oidc, base_url=settings.portal.base_url)
            if settings.auth.provider == "oidc" and settings.auth.oidc is not None
            else None
        ),
    )


async def ensure_admin(runtime: Runtime) -> str | None:
    """On a fresh database, create `admin` at the highest level; the one-time password is
    `PORTAL_ADMIN_PASSWORD` or a random one, printed once. Returns the password it set.

    Not with `[auth] provider = "oidc"`: nobody could sign in with a password there, so such an
    account would only be a name waiting to be misused. The first admin is whom `[auth.oidc]
    admins` names, or whom the provider's claims make admin (oidc/resolve.py)."""
    oidc = runtime.settings.auth.oidc
    if runtime.settings.auth.provider == "oidc":
        if oidc is not None and not oidc.admins and await store.count_users(runtime.db) == 0:
            how = (
                f"run `portal-asgi users set-level NAME {runtime.levels.highest}` after their "
                "first sign-in"
                if oidc.level_source == "database"
                else f"whoever the provider's {oidc.level_claim} claim gives that level"
            )
            logger.warning(
                "no users yet and no [auth.oidc] admins to make %s: %s",
                runtime.levels.highest,
                how,
            )
        return None
    if await store.count_users(runtime.db):
        return None
    password = os.environ.get("PORTAL_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
    try:
        # a one-time password: the first sign-in leads to /account to choose one's own
        await store.add_user(
            runtime.db,
            "admin",
            level=runtime.levels.highest,
            password=password,
            must_change_password=True,
        )
    except UserError:
        return None  # another worker won the race
    if "PORTAL_ADMIN_PASSWORD" not in os.environ:
        print(
            f"\n  portal-asgi: created user 'admin' with one-time password: {password}\n",
            file=sys.stderr,
            flush=True,
        )
    logger.warning("created the first user, 'admin' (level %s)", runtime.levels.highest)
    return password


async def prepare_database(runtime: Runtime) -> None:
    """Upgrade the schema when `auto_migrate` is on (safe when several workers start at once),
    else insist that it is the newest (SchemaOutOfDate); create the first user; load the
    directory."""
    if runtime.settings.portal.auto_migrate:
        await migrate.upgrade(runtime.db)
    else:
        await migrate.check(runtime.db)
    await ensure_admin(runtime)
    await runtime.directory.load()
    runtime.directory.last_poll = time.monotonic()


async def _keep_fresh(runtime: Runtime) -> None:
    """Until the database has answered once (and holds the newest schema), retry the startup
    steps; then poll the feed."""
    while not runtime.directory.loaded:
        if await runtime.directory.pause():
            return
        try:
            await prepare_database(runtime)
        except (DatabaseUnavailable, SchemaOutOfDate) as exc:
            if isinstance(exc, DatabaseUnavailable):
                runtime.directory.failures += 1  # a database error, for the metrics
            continue  # said once at startup; /readyz tells the reason meanwhile
        except SQLAlchemyError as exc:  # e.g. a migration the database refused: keep trying
            logger.error("database startup failed: %s", str(exc).splitlines()[0])
            continue
        except KeyUnusable as exc:  # e.g. a key_passphrase that does not open the keys
            logger.error("signing keys unusable: %s", exc)
            continue
        logger.warning("database ready again: directory loaded")
    await runtime.directory.run()


@contextlib.asynccontextmanager
async def running(runtime: Runtime) -> AsyncIterator[Runtime]:
    """Set up logging; open the database, load the directory, poll the change feed, run product
    lifespans, hand metrics over."""
    logs.configure(runtime.settings.logging)
    try:
        await prepare_database(runtime)
    except DatabaseUnavailable as exc:
        # Start anyway: the login page answers 503 until the database is back, and the feed
        # task finishes these steps as soon as it can.
        logger.error("database unavailable at startup: %s", exc)
    except SchemaOutOfDate as exc:
        # Start anyway too, rather than fail and be restarted in a loop: `db upgrade` run by the
        # operator is picked up by the feed task, without a restart.
        logger.error(
            "%s (or set [portal] auto_migrate = true); until then sign-in answers 503 and "
            "/readyz is not ready",
            exc,
        )
    feed = asyncio.create_task(_keep_fresh(runtime), name="portal-asgi change feed")
    try:
        lifespan_apps = [app for product in runtime.products for app in product.lifespan_apps]
        # sockets close (1001) before the products' own shutdown runs
        metrics = runtime.metrics.running(runtime.db, runtime.directory, runtime.sockets)
        async with runtime.lifespans.running(lifespan_apps), runtime.sockets.running(), metrics:
            yield runtime
    finally:
        runtime.directory.stop()
        try:  # let a poll in flight finish; a database that hangs is not waited for long
            await asyncio.wait_for(feed, timeout=15)
        except (TimeoutError, asyncio.CancelledError):
            pass
        await runtime.db.close()
