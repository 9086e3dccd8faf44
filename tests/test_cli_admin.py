"""The command line's account commands (`users passwd`, `users sign-out`, `users delete`,
`sessions list`, `sessions revoke`, `token list`, `token revoke` by id), in process, on SQLite
and MariaDB: what they print, what they change in the database, and their errors on stderr."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from portal_asgi.db import accounts, store
from portal_asgi.db.engine import Database

from .cli_runner import mint_token, run_cli
from .servers import settings_text

T = TypeVar("T")


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Path:
    """A migrated database with `alice` (ea) and `root` (admin)."""
    file = tmp_path / "settings.toml"
    file.write_text(settings_text(tmp_path, database_url=database_url))
    assert run_cli(file, "db", "upgrade").returncode == 0
    for name, level in (("alice", "ea"), ("root", "admin")):
        done = run_cli(file, "users", "add", name, "--level", level, stdin=f"{name} password 1\n")
        assert done.returncode == 0, done.stderr
    return file


def on_db(database_url: str, work: Callable[[Database], Awaitable[T]]) -> T:
    async def run() -> T:
        db = Database(database_url)
        try:
            return await work(db)
        finally:
            await db.close()

    return asyncio.run(run())


def url_of(settings: Path) -> str:
    match = re.search(r'database_url = "([^"]+)"', settings.read_text())
    assert match
    return match.group(1)


def open_session(settings: Path, username: str) -> str:
    sid, _ = on_db(
        url_of(settings),
        lambda db: store.open_session(db, username, lifetime=3600, client="10.0.0.9"),
    )
    return sid


def in_force(settings: Path, username: str) -> list[str]:
    rows = on_db(url_of(settings), lambda db: accounts.sessions_of(db, username))
    return [row.id for row in rows]


def test_users_passwd_sets_the_password(settings: Path) -> None:
    done = run_cli(settings, "users", "passwd", "alice", stdin="a brand new password\n")
    assert done.returncode == 0, done.stderr
    assert "alice" in done.stdout
    url = url_of(settings)
    assert on_db(url, lambda db: store.check_password(db, "alice", "alice password 1")) is None
    user = on_db(url, lambda db: store.check_password(db, "alice", "a brand new password"))
    assert user is not None and not user.must_change_password
    forced = run_cli(
        settings, "users", "passwd", "alice", "--must-change", stdin="a temporary password\n"
    )
    assert forced.returncode == 0, forced.stderr
    user = on_db(url, lambda db: store.check_password(db, "alice", "a temporary password"))
    assert user is not None and user.must_change_password


@pytest.mark.parametrize(
    ("args", "stdin", "problem"),
    [
        (("users", "passwd", "alice"), "too short\n", "12 characters"),
        (("users", "passwd", "nobody"), "long enough password\n", "no user named 'nobody'"),
        (("users", "sign-out", "nobody"), "", "no user named 'nobody'"),
        (("sessions", "list", "nobody"), "", "no user named 'nobody'"),
        (("sessions", "revoke", "nonexistent-id"), "", "no such session"),
        (("sessions", "revoke", "short"), "", "no such session"),
        (("token", "list", "nobody"), "", "no user named 'nobody'"),
    ],
)
def test_errors_go_to_stderr(
    settings: Path, args: tuple[str, ...], stdin: str, problem: str
) -> None:
    done = run_cli(settings, *args, stdin=stdin)
    assert done.returncode != 0
    assert done.stderr.startswith("portal-asgi: error: ")
    assert problem in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
    assert on_db(url_of(settings), lambda db: store.check_password(db, "alice", "alice password 1"))


def test_sessions_list_and_revoke_by_id_and_prefix(settings: Path) -> None:
    first = open_session(settings, "alice")
    second = open_session(settings, "alice")
    token = mint_token(settings, "alice", "--label", "nightly job")
    listed = run_cli(settings, "sessions", "list", "alice")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[0].split()[:3] == ["id", "kind", "label"]
    assert first in listed.stdout and second in listed.stdout
    assert "nightly job" in listed.stdout and "10.0.0.9" in listed.stdout
    assert len(in_force(settings, "alice")) == 3

    done = run_cli(settings, "sessions", "revoke", first)
    assert done.returncode == 0, done.stderr
    assert f"revoked session {first} of alice" in done.stdout
    assert first not in in_force(settings, "alice")
    # the 8 characters the audit log shows are enough
    done = run_cli(settings, "sessions", "revoke", second[:8])
    assert done.returncode == 0, done.stderr
    assert in_force(settings, "alice") != [] and second not in in_force(settings, "alice")
    again = run_cli(settings, "sessions", "revoke", first)
    assert again.returncode != 0 and "no such session" in again.stderr
    assert token  # the token is untouched
    assert len(in_force(settings, "alice")) == 1


def test_token_list_and_revoke_by_id(settings: Path) -> None:
    mint_token(settings, "alice", "--label", "ci")
    mint_token(settings, "root", "--label", "backup", "--ttl", "2d")
    everyone = run_cli(settings, "token", "list")
    assert everyone.returncode == 0, everyone.stderr
    header, *rows = everyone.stdout.splitlines()
    assert header.split()[:4] == ["id", "user", "kind", "label"]
    assert "expires" in header and "last seen" in header
    assert [row.split()[1] for row in rows] == ["alice", "root"]
    only = run_cli(settings, "token", "list", "alice")
    assert "ci" in only.stdout and "backup" not in only.stdout
    token_id = only.stdout.splitlines()[1].split()[0]
    assert token_id in in_force(settings, "alice")

    done = run_cli(settings, "token", "revoke", token_id)
    assert done.returncode == 0, done.stderr
    assert in_force(settings, "alice") == []
    assert "ci" not in run_cli(settings, "token", "list").stdout


def test_token_revoke_by_token_string_still_works(settings: Path) -> None:
    token = mint_token(settings, "alice")
    assert len(in_force(settings, "alice")) == 1
    done = run_cli(settings, "token", "revoke", token)
    assert done.returncode == 0, done.stderr
    assert in_force(settings, "alice") == []


def test_users_sign_out_everywhere(settings: Path) -> None:
    open_session(settings, "alice")
    mint_token(settings, "alice")
    open_session(settings, "root")
    done = run_cli(settings, "users", "sign-out", "alice")
    assert done.returncode == 0, done.stderr
    assert "2 session(s) and token(s) revoked" in done.stdout
    assert in_force(settings, "alice") == []
    assert len(in_force(settings, "root")) == 1  # nobody else's


def test_users_delete_through_the_service(settings: Path) -> None:
    open_session(settings, "alice")
    done = run_cli(settings, "users", "delete", "alice", "--yes")
    assert done.returncode == 0, done.stderr
    assert on_db(url_of(settings), lambda db: store.get_user(db, "alice")) is None
    # the command line may remove the last admin: it is how an operator gets back in
    last = run_cli(settings, "users", "delete", "root", "--yes")
    assert last.returncode == 0, last.stderr
    assert on_db(url_of(settings), lambda db: store.get_user(db, "root")) is None
