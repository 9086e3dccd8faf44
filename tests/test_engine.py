"""The engine's SQLite connection set-up under contention."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text

from portal_asgi.db.engine import Database

pytestmark = pytest.mark.anyio


async def test_a_connection_opened_while_another_process_writes_waits_for_wal(
    tmp_path: Path,
) -> None:
    """Switching a new file to WAL needs it to itself. While another connection holds the write
    lock (a worker migrating), SQLite answers "database is locked" at once, without its busy wait:
    a worker starting beside it must wait for the lock instead of failing."""
    path = tmp_path / "portal.db"
    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    writer.execute("CREATE TABLE t (x INTEGER)")
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO t VALUES (1)")
    db = Database(f"sqlite+aiosqlite:///{path}")
    loop = asyncio.get_running_loop()
    loop.call_later(0.5, writer.execute, "COMMIT")
    try:
        async with db.engine.connect() as conn:
            assert await conn.scalar(text("PRAGMA journal_mode")) == "wal"
            assert await conn.scalar(text("SELECT count(*) FROM t")) == 1
    finally:
        await db.close()
        writer.close()
