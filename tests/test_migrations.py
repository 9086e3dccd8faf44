"""Alembic migrations (`portal-asgi db upgrade`, and the portal's startup), on SQLite and MariaDB."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from portal_asgi.db import migrate, store
from portal_asgi.db.engine import Database
from portal_asgi.db.models import Base

from .cli_runner import run_cli
from .servers import settings_text

pytestmark = pytest.mark.anyio

HEAD = ScriptDirectory.from_config(migrate.alembic_config()).get_current_head()
TABLES = set(migrate.TARGET_METADATA.tables)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "compare_server_default": True}
    )
    return list(compare_metadata(context, Base.metadata))


async def _schema(db: Database) -> tuple[set[str], list[Any]]:
    async with db.engine.connect() as conn:
        tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
        return tables, await conn.run_sync(_differences)


async def test_upgrade_builds_exactly_the_models_schema(database_url: str) -> None:
    db = Database(database_url)
    try:
        assert HEAD is not None
        assert await migrate.upgrade(db) == HEAD
        tables, differences = await _schema(db)
        assert {"users", "sessions", "changes", "mount_levels", "audit_events"} <= TABLES
        assert tables == TABLES | {"alembic_version"}
        assert differences == []
    finally:
        await db.close()


async def test_upgrade_twice_changes_nothing(database_url: str) -> None:
    db = Database(database_url)
    try:
        await migrate.upgrade(db)
        await store.add_user(db, "alice", level="ea", password="alice-password")
        assert await migrate.upgrade(db) == HEAD
        assert await store.check_password(db, "alice", "alice-password") is not None
    finally:
        await db.close()


async def test_database_made_by_create_all_is_stamped_not_recreated(database_url: str) -> None:
    """A database from before migrations existed: its tables are those of the first revision."""
    db = Database(database_url)
    try:
        await db.create_all()
        await store.add_user(db, "alice", level="ea", password="alice-password")
        assert await migrate.upgrade(db) == HEAD
        assert await store.check_password(db, "alice", "alice-password") is not None
        assert (await _schema(db))[1] == []
    finally:
        await db.close()


async def test_workers_starting_together_migrate_once(database_url: str) -> None:
    """Several workers upgrade the same empty database at once: one migrates, the others wait
    for it and find the schema at head; nobody fails on "table already exists"."""
    workers = [Database(database_url) for _ in range(4)]
    try:
        revisions = await asyncio.gather(*(migrate.upgrade(db) for db in workers))
        assert revisions == [HEAD] * 4
        assert (await _schema(workers[0]))[1] == []
    finally:
        for db in workers:
            await db.close()


async def test_downgrade_to_base_and_back(database_url: str) -> None:
    db = Database(database_url)

    def downgrade(connection: Connection) -> None:
        config = migrate.alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, "base")

    try:
        await migrate.upgrade(db)
        async with db.engine.begin() as conn:
            await conn.run_sync(downgrade)
        tables, _ = await _schema(db)
        assert tables & TABLES == set()
        assert await migrate.upgrade(db) == HEAD
        assert (await _schema(db))[1] == []
    finally:
        await db.close()


def test_cli_db_upgrade(database_url: str, tmp_path: Path) -> None:
    """`portal-asgi db upgrade` creates the tables; no alembic.ini needed."""
    settings = tmp_path / "settings.toml"
    settings.write_text(settings_text(tmp_path, database_url=database_url))

    first = run_cli(settings, "db", "upgrade", env={"PORTAL_ADMIN_PASSWORD": "unused-here"})
    assert first.returncode == 0, first.stderr
    assert f"revision {HEAD}" in first.stdout
    again = run_cli(settings, "db", "upgrade")
    assert again.returncode == 0, again.stderr
    assert f"revision {HEAD}" in again.stdout

    async def check() -> tuple[set[str], list[Any]]:
        db = Database(database_url)
        try:
            return await _schema(db)
        finally:
            await db.close()

    tables, differences = asyncio.run(check())
    assert TABLES <= tables and differences == []


def test_cli_db_upgrade_reports_an_unreachable_database(tmp_path: Path) -> None:
    settings = tmp_path / "settings.toml"
    settings.write_text(
        settings_text(tmp_path, database_url="mysql+asyncmy://root@127.0.0.1:1/nothing")
    )
    result = run_cli(settings, "db", "upgrade")
    assert result.returncode != 0
    assert "portal-asgi: error:" in result.stderr
    assert "Traceback" not in result.stderr
