"""`/healthz` (liveness: 200 while the process serves) and `/readyz` (readiness: 200 only when the
database answers, its schema is the newest and the change feed is fresh, else 503 with reasons);
and a server started with `auto_migrate` off on an old schema, which serves and waits for
`portal-asgi db upgrade` instead of failing (and being restarted in a loop). The database-down
cases, with the database cut by a TCP proxy, are in test_database_down.py."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx2

from portal_asgi.db import migrate
from portal_asgi.db.engine import Database

from .cli_runner import run_cli
from .servers import RunningPortal, serve


def _ready(running: RunningPortal) -> bool:
    with running.client() as client:
        return client.get("/readyz").status_code == 200


def _readyz(running: RunningPortal) -> httpx2.Response:
    with running.client() as client:
        return client.get("/readyz")


def test_healthz_and_readyz_on_a_healthy_portal(fresh_portal: RunningPortal) -> None:
    with fresh_portal.client() as client:
        health = client.get("/healthz")
        assert health.status_code == 200
        assert health.json() == {"status": "ok", "database": "ok"}
        assert health.headers["cache-control"] == "no-store"
        fresh_portal.wait_until(lambda: _ready(fresh_portal))
        ready = client.get("/readyz")
        assert ready.json() == {"ready": True, "database": "ok", "feed": "ok", "reasons": []}
        assert client.head("/readyz").status_code == 200


def test_readyz_is_503_while_the_change_feed_is_stale(fresh_portal: RunningPortal) -> None:
    """A worker whose feed stopped polling serves from old data: not ready, though alive."""
    runtime = fresh_portal.portal.runtime
    assert runtime is not None
    fresh_portal.wait_until(lambda: _ready(fresh_portal))
    runtime.directory.stop()  # the feed task returns: no poll from now on
    fresh_portal.wait_until(lambda: _readyz(fresh_portal).status_code == 503, timeout=20)
    body = _readyz(fresh_portal).json()
    assert body["ready"] is False and body["feed"] == "stale" and body["database"] == "ok"
    assert [reason.split(":")[0] for reason in body["reasons"]] == ["change feed"]
    with fresh_portal.client() as client:
        assert client.get("/healthz").json() == {"status": "ok", "database": "ok"}


def _migrate_to(database_url: str, target: str) -> None:
    async def work() -> None:
        db = Database(database_url)
        try:
            await migrate.upgrade(db, target=target, progress=lambda line: None)
        finally:
            await db.close()

    asyncio.run(work())


def _revision(database_url: str) -> str | None:
    async def work() -> str | None:
        db = Database(database_url)
        try:
            return await migrate.revision(db)
        finally:
            await db.close()

    return asyncio.run(work())


def test_a_server_on_an_old_schema_waits_for_db_upgrade(database_url: str, tmp_path: Path) -> None:
    """auto_migrate off, the database at an older revision: the server starts, leaves the schema
    alone, answers 503 on sign-in and is not ready (saying why), and serves as soon as the
    operator has run `portal-asgi db upgrade`, without a restart."""
    _migrate_to(database_url, "0001")
    head = migrate.head()
    with serve(tmp_path, database_url=database_url, auto_migrate=False) as running:
        with running.client() as client:
            assert client.get("/healthz").json() == {"status": "ok", "database": "ok"}
            not_ready = client.get("/readyz")
            assert not_ready.status_code == 503
            (reason,) = not_ready.json()["reasons"]
            assert f"at revision 0001, this version of portal-asgi needs {head}" in reason
            assert "run `portal-asgi db upgrade`" in reason
            assert running.login(client, "admin", "whatever-password").status_code == 503
        assert _revision(database_url) == "0001"  # the server did not migrate

        upgraded = run_cli(running.settings_file, "db", "upgrade")
        assert upgraded.returncode == 0, upgraded.stderr
        running.wait_until(lambda: _ready(running), timeout=30)
        running.add_user("carol", "ea")
        running.wait_until(
            lambda: (
                running.portal.runtime is not None
                and running.portal.runtime.directory.user("carol") is not None
            )
        )
        with running.logged_in("carol") as carol:
            whoami = carol.get("/ea/whoami", headers={"accept": "application/json"})
            assert whoami.json()["user"] == "carol"
