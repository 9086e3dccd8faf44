"""One async engine per process, opened by the portal's lifespan or a CLI command."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from ..exceptions import DatabaseUnavailable
from .models import Base


class Database:
    def __init__(self, url: str) -> None:
        parsed = make_url(url)
        self.url = url
        self.dialect = parsed.get_backend_name()
        if self.dialect == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            self.engine: AsyncEngine = create_async_engine(url, connect_args={"timeout": 15})
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        else:
            self.engine = create_async_engine(
                url, pool_pre_ping=True, pool_recycle=1800, pool_timeout=5
            )
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A transaction: committed on success, rolled back on error; driver errors become
        DatabaseUnavailable (IntegrityError and friends pass through)."""
        try:
            async with self.sessions() as session, session.begin():
                yield session
        except (DBAPIError, OSError, ConnectionError) as exc:
            if (
                isinstance(exc, DBAPIError)
                and not exc.connection_invalidated
                and _is_data_error(exc)
            ):
                raise
            raise DatabaseUnavailable(str(exc).splitlines()[0]) from exc

    async def create_all(self) -> None:
        try:
            async with self.engine.begin() as conn:
                await conn.run_sync(Base.metadata.create_all)
        except (SQLAlchemyError, OSError) as exc:
            raise DatabaseUnavailable(str(exc).splitlines()[0]) from exc

    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except (SQLAlchemyError, OSError, ConnectionError):
            return False
        return True

    async def close(self) -> None:
        await self.engine.dispose()


def _is_data_error(exc: DBAPIError) -> bool:
    from sqlalchemy.exc import DataError, IntegrityError, ProgrammingError

    return isinstance(exc, IntegrityError | DataError | ProgrammingError)


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=15000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
