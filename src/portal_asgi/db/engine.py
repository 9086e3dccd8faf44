"""One async engine per process, opened by the portal's lifespan or a CLI command."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    IntegrityError,
    ProgrammingError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from ..exceptions import DatabaseUnavailable
from .models import Base


class Database:
    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        parsed = make_url(url)
        self.url = url
        self.dialect = parsed.get_backend_name()
        # A server that stops answering without closing the connection (a network partition)
        # would hang a request for minutes: past `timeout`, it is unavailable. Not for SQLite,
        # whose waits are its own busy_timeout on a local file.
        self.timeout: float | None = None if self.dialect == "sqlite" else timeout
        if self.dialect == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            self.engine: AsyncEngine = create_async_engine(url, connect_args={"timeout": 15})
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        else:
            # utf8mb4 whatever the server's default (names with emoji); a short connect timeout
            # so that a database that went away answers "unavailable" quickly instead of hanging.
            self.engine = create_async_engine(
                url,
                pool_pre_ping=True,
                pool_recycle=1800,
                pool_timeout=5,
                connect_args={"charset": "utf8mb4", "connect_timeout": 5},
            )
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A transaction: committed on success, rolled back on error; driver errors become
        DatabaseUnavailable (IntegrityError and friends pass through)."""
        with outages():
            async with asyncio.timeout(self.timeout), self.sessions() as session, session.begin():
                yield session

    async def create_all(self) -> None:
        """The tables straight from the models, without migrations: what databases made before
        migrations existed look like (the portal itself uses `migrate.upgrade`)."""
        try:
            async with self.engine.begin() as conn:
                await conn.run_sync(Base.metadata.create_all)
        except (SQLAlchemyError, OSError) as exc:
            raise DatabaseUnavailable(str(exc).splitlines()[0]) from exc

    async def ping(self) -> bool:
        try:
            async with asyncio.timeout(self.timeout), self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except (SQLAlchemyError, OSError):
            return False
        return True

    async def close(self) -> None:
        await self.engine.dispose()


@contextmanager
def outages() -> Iterator[None]:
    """Errors meaning the database did not answer become `DatabaseUnavailable`; those meaning it
    answered "no" (a duplicate key, a bad value: the caller's business) pass as they are."""
    try:
        yield
    except (DBAPIError, PoolTimeout, OSError) as exc:
        if (
            isinstance(exc, IntegrityError | DataError | ProgrammingError)
            and not exc.connection_invalidated
        ):
            raise
        if isinstance(exc, TimeoutError):
            raise DatabaseUnavailable("the database did not answer in time") from exc
        problem = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DatabaseUnavailable(problem) from exc


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA busy_timeout=15000")
    _wal(cursor)
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _wal(cursor: Any) -> None:
    """WAL mode, once per file (it persists). Switching needs the file to itself and SQLite
    answers "database is locked" at once, without its busy wait, when several processes open a
    new file together: so wait here, up to the busy timeout, in the driver's own thread."""
    deadline = time.monotonic() + 15.0
    while True:
        try:
            cursor.execute("PRAGMA journal_mode")
            if cursor.fetchone()[0] == "wal":
                return
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
