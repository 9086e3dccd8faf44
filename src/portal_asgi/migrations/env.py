"""The Alembic environment of portal-asgi.

`portal_asgi.db.migrate` runs Alembic on a connection it already holds (and has locked), handed
over as `config.attributes["connection"]`: the async engine's connection, reached through
`AsyncConnection.run_sync`. Without one (Alembic driven by hand while writing a revision), it
opens an async engine on `sqlalchemy.url` itself.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from portal_asgi.db.migrate import TARGET_METADATA

config = context.config
target_metadata = TARGET_METADATA


def run_on(connection: Connection) -> None:
    # Batch mode: SQLite cannot ALTER most things, Alembic then copies the table instead.
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


async def run_on_url(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(run_on)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()
elif (given := config.attributes.get("connection")) is not None:
    run_on(given)
else:
    asyncio.run(run_on_url(config.get_main_option("sqlalchemy.url") or ""))
