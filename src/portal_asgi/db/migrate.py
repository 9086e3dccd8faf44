"""Bring the schema to the newest Alembic revision: `portal-asgi db upgrade` calls `upgrade()`, and
so does the portal's startup when `[portal] auto_migrate` is on. Every other command, and a startup
with it off, calls `check()`: a schema that is missing or behind is refused with SchemaOutOfDate,
which names `portal-asgi db upgrade`, instead of being changed behind the operator's back.

Several workers may start at once: each holds a lock for the whole upgrade (MariaDB `GET_LOCK`,
SQLite `BEGIN IMMEDIATE`), so one migrates and the others then find the schema at head. A
database made by `create_all` before migrations existed has the first revision's tables but no
`alembic_version`: it is stamped at that revision, then upgraded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection

from ..exceptions import DatabaseUnavailable, SchemaOutOfDate
from . import throttle
from .engine import Database, outages
from .models import Base

# Every table the migrations manage: models.py's, and those of modules that keep their own
# tables on the same Base (throttle.py).
TARGET_METADATA = Base.metadata
assert throttle.LoginBan.metadata is TARGET_METADATA

logger = logging.getLogger("portal_asgi.db")

SCRIPT_LOCATION = "portal_asgi:migrations"
INITIAL_REVISION = "0001"
LOCK_NAME = "portal_asgi.schema"
LOCK_WAIT = 120  # seconds a worker waits for another one's migration
UPGRADE = "run `portal-asgi db upgrade`"

Progress = Callable[[str], None]


def alembic_config(url: str | None = None) -> Config:
    """Alembic's configuration, built in code: no alembic.ini at run time. `url` is only needed
    to run Alembic's own commands by hand (e.g. `command.revision(..., autogenerate=True)`)."""
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    if url:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head() -> str:
    """The newest revision this version of portal-asgi knows."""
    revision = _scripts().get_current_head()
    assert revision is not None, "no migrations found"
    return revision


def missing_file(url: str) -> str | None:
    """The path of a SQLite database file that does not exist yet (connecting would create it
    empty), else None."""
    parsed = make_url(url)
    path = parsed.database
    if parsed.get_backend_name() != "sqlite" or not path or path.startswith((":memory:", "file:")):
        return None
    return None if Path(path).exists() else path


async def revision(db: Database) -> str | None:
    """The revision the database is at; None when it has no migrated tables."""
    with outages():
        async with db.engine.connect() as conn:
            return await conn.run_sync(_current)


async def check(db: Database) -> str:
    """The database's revision when it is the newest; else SchemaOutOfDate, naming the command
    that fixes it. Changes nothing."""
    current = await revision(db)
    newest = head()
    if current == newest:
        return current
    if current is None:
        raise SchemaOutOfDate(f"the database has no portal-asgi tables yet: {UPGRADE}")
    known = {script.revision for script in _scripts().walk_revisions()}
    if current not in known:
        raise SchemaOutOfDate(
            f"the database is at revision {current}, which this version of portal-asgi does not "
            f"know (newest: {newest}): a newer version migrated it"
        )
    raise SchemaOutOfDate(
        f"the database is at revision {current}, this version of portal-asgi needs {newest}: "
        f"{UPGRADE}"
    )


def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def upgrade(
    db: Database, *, progress: Progress | None = None, target: str = "head"
) -> str | None:
    """Upgrade to `target` (an older revision: what an older portal-asgi left) and return the
    revision the database is now at. `progress` is told each step before it runs, one line
    each; nothing when there is nothing to do."""
    with outages():
        async with db.engine.connect() as conn:
            await _lock(conn)
            try:
                revision = await conn.run_sync(_upgrade, progress or _log, target)
                await conn.commit()
            finally:
                await _unlock(conn)
    return revision


def _log(line: str) -> None:
    logger.warning("%s", line)


def _upgrade(connection: Connection, progress: Progress, target: str) -> str | None:
    config = alembic_config()
    config.attributes["connection"] = connection
    tables = set(inspect(connection).get_table_names())
    if "alembic_version" not in tables and "users" in tables:
        progress(f"database tables predate migrations: stamping revision {INITIAL_REVISION}")
        command.stamp(config, INITIAL_REVISION)
    current = _current(connection)
    # Oldest first; the other workers, waiting on the lock, find nothing left to do.
    steps = list(reversed(list(_scripts().iterate_revisions(target, current or "base"))))
    for step in steps:
        summary = " ".join((step.doc or "").split())
        progress(f"migrating {step.down_revision or 'empty'} -> {step.revision}: {summary}")
    if steps:
        command.upgrade(config, target)
    return _current(connection)


async def _lock(conn: AsyncConnection) -> None:
    dialect = conn.dialect.name
    if dialect == "sqlite":
        # Take the write lock now, not at the first write: a second worker waits here instead
        # of failing on "table already exists". One wait is the engine's busy_timeout; a
        # migration on a loaded machine may hold the lock longer, so wait up to LOCK_WAIT.
        deadline = time.monotonic() + LOCK_WAIT
        while True:
            try:
                await conn.exec_driver_sql("BEGIN IMMEDIATE")
                return
            except OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                await conn.rollback()
                await asyncio.sleep(0.1)
    elif dialect in ("mysql", "mariadb"):
        # DDL commits on its own in MariaDB, so a transaction cannot serialise migrations; a
        # named lock, held by this connection until released, can.
        got = await conn.scalar(
            text("SELECT GET_LOCK(:name, :wait)"), {"name": LOCK_NAME, "wait": LOCK_WAIT}
        )
        if got != 1:
            raise DatabaseUnavailable(f"another worker held the schema lock for {LOCK_WAIT}s")


async def _unlock(conn: AsyncConnection) -> None:
    if conn.dialect.name not in ("mysql", "mariadb"):
        return
    try:
        await conn.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": LOCK_NAME})
        await conn.commit()
    except (DBAPIError, OSError):
        # The connection is broken; dropping it (instead of pooling it) frees the lock too.
        await conn.invalidate()
