"""Bring the schema to the newest Alembic revision: `portal-asgi db upgrade`, the CLI's other
commands and the portal's startup all call `upgrade()`.

Several workers may start at once: each holds a lock for the whole upgrade (MariaDB `GET_LOCK`,
SQLite `BEGIN IMMEDIATE`), so one migrates and the others then find the schema at head. A
database made by `create_all` before migrations existed has the first revision's tables but no
`alembic_version`: it is stamped at that revision, then upgraded.
"""

from __future__ import annotations

import logging

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from ..exceptions import DatabaseUnavailable
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


def alembic_config(url: str | None = None) -> Config:
    """Alembic's configuration, built in code: no alembic.ini at run time. `url` is only needed
    to run Alembic's own commands by hand (e.g. `command.revision(..., autogenerate=True)`)."""
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    if url:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


async def upgrade(db: Database) -> str | None:
    """Upgrade to head and return the revision the database is now at."""
    with outages():
        async with db.engine.connect() as conn:
            await _lock(conn)
            try:
                revision = await conn.run_sync(_upgrade)
                await conn.commit()
            finally:
                await _unlock(conn)
    return revision


def _upgrade(connection: Connection) -> str | None:
    config = alembic_config()
    config.attributes["connection"] = connection
    tables = set(inspect(connection).get_table_names())
    if "alembic_version" not in tables and "users" in tables:
        logger.warning("database tables predate migrations: stamping revision %s", INITIAL_REVISION)
        command.stamp(config, INITIAL_REVISION)
    command.upgrade(config, "head")
    return MigrationContext.configure(connection).get_current_revision()


async def _lock(conn: AsyncConnection) -> None:
    dialect = conn.dialect.name
    if dialect == "sqlite":
        # Take the write lock now, not at the first write: a second worker waits here (the
        # engine's busy_timeout) instead of failing on "table already exists".
        await conn.exec_driver_sql("BEGIN IMMEDIATE")
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
