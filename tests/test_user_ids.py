"""A deleted user's sessions and tokens stay dead when the name is reused: tokens name the user by
a never-reused id (`uid` claim, users.uid), and the directory refuses a token whose id is not
that of the current holder of the name. On SQLite and MariaDB."""

from __future__ import annotations

import asyncio
import os
import pty
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import select, text
from sqlalchemy.engine import Connection

from portal_asgi.db import migrate, store
from portal_asgi.db.engine import Database
from portal_asgi.db.models import AuditEvent, Session
from portal_asgi.directory import Directory
from portal_asgi.exceptions import UserError

from .cli_runner import PORTAL_ASGI, mint_token, run_cli
from .servers import RunningPortal, serve, settings_text

HOUR = 3600.0
JSON = {"accept": "application/json"}
HTML = {"accept": "text/html"}


# --- end to end: the frank scenario on a real portal ------------------------------------------


@pytest.fixture
def reused_portal(database_url: str, tmp_path: Path) -> Iterator[RunningPortal]:
    """A portal of its own on SQLite and on MariaDB (`/top` is its admin-level mount)."""
    with serve(tmp_path, database_url=database_url) as running:
        yield running


def _holder_uid(portal: RunningPortal, username: str) -> str | None:
    runtime = portal.portal.runtime
    assert runtime is not None
    state = runtime.directory.user(username)
    return state.uid if state is not None else None


def _assert_nothing_opens(portal: RunningPortal, cookie: str, token: str) -> None:
    runtime = portal.portal.runtime
    assert runtime is not None
    for path in ("/top/whoami", "/top/", "/stable/whoami"):
        with portal.client() as client:
            client.cookies.set(runtime.cookie.name, cookie)
            as_json = client.get(path, headers=JSON)
            as_page = client.get(path, headers=HTML)
        with portal.client() as client:
            as_bearer = client.get(path, headers=JSON | {"authorization": f"Bearer {token}"})
        for response in (as_json, as_bearer):
            assert response.status_code == 401, (path, response.text)
            assert response.json() == {"error": "authentication_required"}
        assert as_page.status_code == 303, (path, as_page.text)
        assert as_page.headers["location"] == f"/auth/login?next={path}"
        for response in (as_json, as_page, as_bearer):
            # nothing of the product: not its page, not who it thinks is calling
            assert "frank" not in response.text
            assert "Test product" not in response.text and "mount_level" not in response.text
            assert runtime.cookie.name not in response.headers.get("set-cookie", "")


def test_a_deleted_users_cookie_and_token_do_not_open_the_new_holders_mounts(
    reused_portal: RunningPortal,
) -> None:
    """add frank (stable), sign in, mint a token; delete him; add a new frank at admin: the old
    cookie and token open nothing, the admin-level mount above all, while the new frank's do."""
    portal = reused_portal
    portal.add_user("frank", "stable")
    portal.wait_until(lambda: _holder_uid(portal, "frank") is not None)
    old_uid = _holder_uid(portal, "frank")
    runtime = portal.portal.runtime
    assert runtime is not None
    with portal.logged_in("frank") as browser:
        cookie = browser.cookies.get(runtime.cookie.name)
        assert browser.get("/stable/whoami", headers=JSON).json()["user"] == "frank"
    assert cookie
    token = mint_token(portal.settings_file, "frank")
    with portal.client() as client:
        works = client.get("/stable/whoami", headers=JSON | {"authorization": f"Bearer {token}"})
        assert works.status_code == 200 and works.json()["user"] == "frank"

    deleted = run_cli(portal.settings_file, "users", "delete", "frank", "--yes")
    assert deleted.returncode == 0, deleted.stderr
    portal.add_user("frank", "admin")
    portal.wait_until(
        lambda: (
            _holder_uid(portal, "frank") not in (None, old_uid)
            and getattr(runtime.directory.user("frank"), "level", "") == "admin"
        )
    )

    _assert_nothing_opens(portal, cookie, token)
    # the control: the new frank, signed in himself, does reach the admin-level mount
    with portal.logged_in("frank") as browser:
        mine = browser.get("/top/whoami", headers=JSON)
        assert mine.status_code == 200
        assert (mine.json()["user"], mine.json()["level"]) == ("frank", "admin")
    # and an old cookie stays refused after the new frank has signed in too
    _assert_nothing_opens(portal, cookie, token)


# --- store and directory ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_uids_are_never_reused_even_when_the_row_id_is(db: Database) -> None:
    """SQLite hands the highest row id out again once that row is deleted; the uid is random."""
    seen: set[str] = set()
    for _ in range(3):
        user = await store.add_user(db, "frank", level="stable", password=None)
        assert user.uid and user.uid not in seen
        seen.add(user.uid)
        await store.delete_user(db, "frank")
    directory = Directory(db, interval=60)
    await directory.load()
    assert directory.user("frank") is None
    again = await store.add_user(db, "frank", level="admin", password=None)
    await directory.refresh()
    assert directory.holder("frank", again.uid) is not None
    for old in seen:
        assert directory.holder("frank", old) is None
    assert directory.holder("frank", "") is None
    assert directory.holder("frank", None) is None


@pytest.mark.anyio
async def test_an_oidc_user_arriving_with_a_deleted_users_name_gets_none_of_their_sessions(
    db: Database, other_worker: Database
) -> None:
    local = await store.add_user(db, "frank", level="admin", password=None)
    sid, opened = await store.open_session(db, "frank", lifetime=HOUR)
    assert opened.uid == local.uid
    worker = Directory(other_worker, interval=60)
    await worker.load()
    assert worker.holder("frank", local.uid) is not None

    await store.delete_user(db, "frank")
    arrived = await store.upsert_oidc_user(
        db,
        subject="idp|frank",
        username="frank",
        email="frank@example.org",
        name="Frank",
        level="stable",
        default_level="stable",
        fallback_username="frank_idp",
    )
    await worker.refresh()
    assert arrived.username == "frank" and arrived.uid != local.uid
    assert worker.holder("frank", arrived.uid) is not None
    assert worker.holder("frank", local.uid) is None  # the old session's token names this id
    found = await store.user_for_subject(db, "idp|frank")
    assert found is not None and found.uid == arrived.uid
    async with db.session() as session:
        assert await session.get(Session, sid) is None


@pytest.mark.anyio
async def test_delete_unknown_user(db: Database) -> None:
    with pytest.raises(UserError, match="no user"):
        await store.delete_user(db, "nobody")


@pytest.mark.anyio
async def test_the_migration_gives_existing_users_distinct_ids_and_keeps_their_sessions(
    database_url: str,
) -> None:
    """r0003 adds users.uid in place: on SQLite, copying `users` instead would delete every
    session row through ON DELETE CASCADE, revoked ones included."""
    db = Database(database_url)

    def upgrade_to(revision: str) -> Callable[[Connection], None]:
        def run(connection: Connection) -> None:
            config = migrate.alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, revision)

        return run

    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(upgrade_to("0002"))
        async with db.engine.begin() as conn:
            for n, name in enumerate(("alice", "bob")):
                await conn.execute(
                    text(
                        "INSERT INTO users (id, username, email, name, level, active, provider,"
                        " created_at) VALUES (:id, :name, '', '', 'ea', 1, 'local', :now)"
                    ),
                    {"id": n + 1, "name": name, "now": "2026-01-01 00:00:00"},
                )
            await conn.execute(
                text(
                    "INSERT INTO sessions (sid, user_id, kind, label, created_at, last_seen_at,"
                    " expires_at, revoked_at) VALUES ('old-sid', 1, 'api', '', :now, :now,"
                    " '2099-01-01 00:00:00', :now)"
                ),
                {"now": "2026-01-01 00:00:00"},
            )
        await migrate.upgrade(db)
        users = await store.list_users(db)
        uids = {user.uid for user in users}
        assert len(uids) == 2 and "" not in uids
        assert "old-sid" in (await store.snapshot(db)).revoked  # still revoked, not deleted
        fresh = await store.add_user(db, "carol", level="ea", password=None)
        assert fresh.uid not in uids
    finally:
        await db.close()


# --- the command line -------------------------------------------------------------------------


def _settings(tmp: Path, database_url: str) -> Path:
    file = tmp / "settings.toml"
    file.write_text(settings_text(tmp, database_url=database_url))
    done = run_cli(file, "db", "upgrade")
    assert done.returncode == 0, done.stderr
    added = run_cli(file, "users", "add", "frank", "--level", "ea", stdin="frank's password\n")
    assert added.returncode == 0, added.stderr
    return file


def _users(file: Path) -> str:
    listed = run_cli(file, "users", "list")
    assert listed.returncode == 0, listed.stderr
    return listed.stdout


def _audit(database_url: str, event: str) -> list[AuditEvent]:
    async def read() -> list[AuditEvent]:
        db = Database(database_url)
        try:
            async with db.session() as session:
                return list(
                    await session.scalars(select(AuditEvent).where(AuditEvent.event == event))
                )
        finally:
            await db.close()

    return asyncio.run(read())


def test_users_delete_needs_yes_without_a_terminal(database_url: str, tmp_path: Path) -> None:
    file = _settings(tmp_path, database_url)
    refused = run_cli(file, "users", "delete", "frank", stdin="y\n")
    assert refused.returncode != 0
    assert refused.stderr.startswith("portal-asgi: error: ") and "--yes" in refused.stderr
    assert refused.stdout == ""
    assert "frank" in _users(file)

    done = run_cli(file, "users", "delete", "frank", "--yes")
    assert done.returncode == 0, done.stderr
    assert "frank" in done.stdout
    assert "frank" not in _users(file)
    (entry,) = _audit(database_url, "user.delete")
    assert entry.username == "frank" and '"by": "cli"' in entry.detail

    again = run_cli(file, "users", "delete", "frank", "--yes")
    assert again.returncode != 0 and "no user named 'frank'" in again.stderr
    assert "Traceback" not in again.stderr


def _on_a_terminal(file: Path, answer: bytes) -> subprocess.CompletedProcess[str]:
    """`users delete frank` with a pseudo-terminal as stdin, answering `answer`."""
    main, secondary = pty.openpty()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    try:
        process = subprocess.Popen(
            [str(PORTAL_ASGI), "--settings", str(file), "users", "delete", "frank"],
            stdin=secondary,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment,
        )
        os.write(main, answer)
        out, err = process.communicate(timeout=60)
    finally:
        os.close(secondary)
        os.close(main)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def test_users_delete_asks_on_a_terminal(database_url: str, tmp_path: Path) -> None:
    file = _settings(tmp_path, database_url)
    kept = _on_a_terminal(file, b"n\n")
    assert kept.returncode != 0
    assert "Delete user 'frank'" in kept.stderr and "nothing deleted" in kept.stderr
    assert "frank" in _users(file)
    assert _audit(database_url, "user.delete") == []

    gone = _on_a_terminal(file, b"yes\n")
    assert gone.returncode == 0, gone.stderr
    assert "frank" not in _users(file)
    assert len(_audit(database_url, "user.delete")) == 1
