"""The `portal-asgi` command line against a settings file written for the test: output on stdout,
errors on stderr with a non-zero exit; only `db upgrade` changes the schema. Commands run in
process (tests/cli_runner.py); `test_help` runs the installed console script as a subprocess, and
the import checks a fresh interpreter."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from portal_asgi.db import migrate
from portal_asgi.db.engine import Database

from .cli_runner import PORTAL_ASGI, mint_token, run_cli
from .helpers import csrf_token
from .servers import RunningPortal, settings_text


def write_settings(tmp: Path, *, upgrade: bool = False) -> Path:
    file = tmp / "settings.toml"
    file.write_text(settings_text(tmp))
    if upgrade:
        done = run_cli(file, "db", "upgrade")
        assert done.returncode == 0, done.stderr
    return file


@pytest.fixture
def settings_file(tmp_path: Path) -> Path:
    """A settings file of the test's own, whose database does not exist yet."""
    return write_settings(tmp_path)


@pytest.fixture
def migrated_settings(tmp_path: Path) -> Path:
    """A settings file of the test's own, whose database `db upgrade` made (empty)."""
    return write_settings(tmp_path, upgrade=True)


@pytest.fixture(scope="module")
def shared_settings(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A settings file for commands that change nothing, with an `admin` user in its database."""
    file = write_settings(tmp_path_factory.mktemp("cli"), upgrade=True)
    done = run_cli(file, "users", "add", "admin", "--level", "admin", stdin="admin password\n")
    assert done.returncode == 0, done.stderr
    return file


def table_rows(output: str) -> dict[str, list[str]]:
    """The rows of a printed table, by their first column."""
    rows = {}
    for line in output.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if cells and cells[0]:
            rows[cells[0]] = cells[1:]
    return rows


def test_the_console_script_exists() -> None:
    assert PORTAL_ASGI.exists(), PORTAL_ASGI


def test_help() -> None:
    """The one run of the real `portal-asgi` entry point: the console script, in a process."""
    done = run_cli(None, "--help", process=True)
    assert done.returncode == 0
    for command in ("check", "routes", "users", "token"):
        assert command in done.stdout


def test_check_prints_the_access_table(shared_settings: Path) -> None:
    done = run_cli(shared_settings, "check")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].startswith(f"{shared_settings}: OK, 8 mounts")
    assert "public < stable < ea < devel < admin" in done.stdout
    rows = table_rows(done.stdout)
    assert rows["path"] == ["level", "who may reach it"]
    assert rows["/public"] == ["public", "everyone"]
    assert rows["/stable"] == ["stable", "stable, ea, devel, admin"]
    assert rows["/ea"] == ["ea", "ea, devel, admin"]
    assert rows["/devel"] == ["devel", "devel, admin"]
    assert rows["/top"] == ["admin", "admin"]
    assert rows["/disagg/v1"] == ["stable", "stable, ea, devel, admin"]
    assert rows["/disagg/v2"] == ["ea", "ea, devel, admin"]
    assert rows["/dashboard"] == ["ea", "ea, devel, admin"]
    assert done.stderr == ""


def test_check_reads_portal_settings_variable(shared_settings: Path) -> None:
    done = run_cli(None, "check", env={"PORTAL_SETTINGS": str(shared_settings)})
    assert done.returncode == 0, done.stderr
    assert str(shared_settings) in done.stdout


def test_check_touches_no_database(settings_file: Path, tmp_path: Path) -> None:
    assert run_cli(settings_file, "check").returncode == 0
    assert not (tmp_path / "portal.db").exists()


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (("[auth]", "[auth]\nsession_lifetim = '1h'"), "auth.session_lifetim"),
        (('level = "ea"', 'level = "beta"'), "mount[3].level"),
        (('level = "ea"', ""), "mount[3].level"),
        (('path = "/ea"', 'path = "/auth"'), "mount[3].path"),
        (('path = "/ea"', 'path = "/stable"'), "mount[3].path"),
        (('app = "products.disagg.app:v2"', 'app = "products.disagg.app:v3"'), "mount[8].app"),
        (('title = "Test Portal"', 'title = "env:PORTAL_TEST_NO_SUCH_VAR"'), "portal.title"),
        (('feed_interval = "0.2s"', 'feed_interval = "soon"'), "portal.feed_interval"),
        (("[portal]", "[portal\n"), "(syntax)"),
    ],
)
def test_check_a_broken_file(settings_file: Path, change: tuple[str, str], key: str) -> None:
    text = settings_file.read_text()
    assert change[0] in text
    settings_file.write_text(text.replace(change[0], change[1], 1))
    done = run_cli(settings_file, "check")
    assert done.returncode != 0
    assert done.stdout == ""
    assert f"{settings_file}: {key}: " in done.stderr
    assert "Traceback" not in done.stderr


def test_check_a_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    done = run_cli(missing, "check")
    assert done.returncode != 0
    assert str(missing) in done.stderr
    assert "not found" in done.stderr


def test_routes(shared_settings: Path) -> None:
    done = run_cli(shared_settings, "routes")
    assert done.returncode == 0, done.stderr
    rows = table_rows(done.stdout)
    assert rows["/auth/login"][0] == "public"
    assert rows["/.well-known/jwks.json"][0] == "public"
    assert rows["/"][0] == "stable"
    assert rows["/devel/"] == ["devel", "products.test.app:app"]
    assert rows["/disagg/v2/"] == ["ea", "products.disagg.app:v2"]
    assert rows["/dashboard/"] == ["ea", "products.dashboard.app:app"]
    # products in the order the router tries them: the longest path first
    paths = [line.split()[0] for line in done.stdout.splitlines() if line.startswith("/")]
    products = paths[paths.index("/") + 1 :]
    assert products == sorted(products, key=len, reverse=True)


def test_users_add_list_set_level_disable(migrated_settings: Path) -> None:
    added = run_cli(
        migrated_settings,
        "users",
        "add",
        "alice",
        "--level",
        "ea",
        "--email",
        "alice@example.org",
        stdin="correct horse battery\n",
    )
    assert added.returncode == 0, added.stderr
    assert "alice" in added.stdout and "ea" in added.stdout

    listed = run_cli(migrated_settings, "users", "list")
    assert listed.returncode == 0, listed.stderr
    rows = table_rows(listed.stdout)
    assert rows["username"][:3] == ["level", "state", "provider"]
    assert rows["alice"][:4] == ["ea", "active", "local", "alice@example.org"]
    assert rows["alice"][-1] == "never"  # last login

    moved = run_cli(migrated_settings, "users", "set-level", "alice", "devel")
    assert moved.returncode == 0, moved.stderr
    assert table_rows(run_cli(migrated_settings, "users", "list").stdout)["alice"][0] == "devel"

    disabled = run_cli(migrated_settings, "users", "disable", "alice")
    assert disabled.returncode == 0, disabled.stderr
    assert table_rows(run_cli(migrated_settings, "users", "list").stdout)["alice"][1] == "disabled"

    enabled = run_cli(migrated_settings, "users", "enable", "alice")
    assert enabled.returncode == 0, enabled.stderr
    assert table_rows(run_cli(migrated_settings, "users", "list").stdout)["alice"][1] == "active"


@pytest.mark.parametrize(
    ("args", "stdin", "problem"),
    [
        (("users", "add", "bob", "--level", "root"), "long enough pw\n", "unknown level"),
        (("users", "add", "bob", "--level", "public"), "long enough pw\n", "unknown level"),
        (("users", "add", "bob", "--level", "ea"), "eleven char\n", "12 characters"),
        (("users", "add", "bob", "--level", "ea"), "", "12 characters"),
        (("users", "add", "b o b", "--level", "ea"), "long enough pw\n", "username"),
        (("users", "set-level", "nobody", "ea"), "", "nobody"),
        (("users", "set-level", "admin", "root"), "", "unknown level"),
        (("users", "disable", "nobody"), "", "nobody"),
        (("users", "enable", "nobody"), "", "nobody"),
        (("token", "mint", "nobody"), "", "nobody"),
        (("token", "mint", "admin", "--ttl", "forever"), "", "duration"),
        (("token", "mint", "admin", "--ttl", "0s"), "", "longer than zero"),
        (("token", "revoke", "not-a-token"), "", "no such active token"),
    ],
)
def test_errors_go_to_stderr(
    shared_settings: Path, args: tuple[str, ...], stdin: str, problem: str
) -> None:
    done = run_cli(shared_settings, *args, stdin=stdin)
    assert done.returncode != 0
    assert problem in done.stderr
    assert done.stderr.startswith("portal-asgi: error: ")
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


def test_duplicate_user(migrated_settings: Path) -> None:
    first = run_cli(
        migrated_settings, "users", "add", "carol", "--level", "stable", stdin="password one\n"
    )
    assert first.returncode == 0, first.stderr
    again = run_cli(
        migrated_settings, "users", "add", "carol", "--level", "ea", stdin="password two\n"
    )
    assert again.returncode != 0
    assert "already exists" in again.stderr
    assert "Traceback" not in again.stderr
    assert table_rows(run_cli(migrated_settings, "users", "list").stdout)["carol"][0] == "stable"


def test_usage_errors_exit_non_zero(shared_settings: Path) -> None:
    for args in (("users", "add", "dave"), ("frobnicate",)):
        done = run_cli(shared_settings, *args)
        assert done.returncode != 0, args
        assert done.stderr, args


def test_disabled_user_cannot_mint(migrated_settings: Path) -> None:
    run_cli(migrated_settings, "users", "add", "erin", "--level", "ea", stdin="erin's password\n")
    assert run_cli(migrated_settings, "users", "disable", "erin").returncode == 0
    done = run_cli(migrated_settings, "token", "mint", "erin")
    assert done.returncode != 0
    assert "disabled" in done.stderr


def test_token_mint_prints_the_token_alone_on_its_last_line(migrated_settings: Path) -> None:
    run_cli(migrated_settings, "users", "add", "frank", "--level", "ea", stdin="frank's password\n")
    done = run_cli(migrated_settings, "token", "mint", "frank", "--ttl", "1h", "--label", "ci")
    assert done.returncode == 0, done.stderr
    last = done.stdout.rstrip("\n").splitlines()[-1]
    assert re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", last), last
    assert done.stdout == last + "\n"  # the explanation goes to stderr, the token alone to stdout


def test_minted_token_works_as_bearer_on_a_running_portal(fresh_portal: RunningPortal) -> None:
    settings = fresh_portal.settings_file
    added = run_cli(settings, "users", "add", "alice", "--level", "ea", stdin="alice's password\n")
    assert added.returncode == 0, added.stderr
    token = mint_token(settings, "alice")
    headers = {"authorization": f"Bearer {token}"}
    with fresh_portal.client() as client:
        fresh_portal.wait_until(
            lambda: client.get("/ea/whoami", headers=headers).status_code == 200
        )
        assert client.get("/ea/whoami", headers=headers).json()["user"] == "alice"
        assert client.get("/stable/whoami", headers=headers).status_code == 200
        assert client.get("/dashboard/me", headers=headers).json()["identity"] == "alice"
        assert client.get("/devel/whoami", headers=headers).status_code == 403

        # the password given on stdin is the one that signs in
        page = client.get("/auth/login")
        response = client.post(
            "/auth/login",
            data={
                "username": "alice",
                "password": "alice's password",
                "csrf_token": csrf_token(page.text),
                "next": "/ea/",
            },
        )
        assert response.status_code == 303
        assert response.headers["location"] == "/ea/"

        # and `users disable` ends the token too
        assert run_cli(settings, "users", "disable", "alice").returncode == 0
        fresh_portal.wait_until(
            lambda: client.get("/ea/whoami", headers=headers).status_code == 401, timeout=3.0
        )


def test_db_upgrade(settings_file: Path, tmp_path: Path) -> None:
    done = run_cli(settings_file, "db", "upgrade")
    assert done.returncode == 0, done.stderr
    assert "database ready" in done.stdout
    assert (tmp_path / "portal.db").exists()


def _revision(database_url: str, target: str | None = None) -> str | None:
    """The database's revision; first brought to `target` (an older revision) when given."""

    async def work() -> str | None:
        db = Database(database_url)
        try:
            if target is not None:
                await migrate.upgrade(db, target=target, progress=lambda line: None)
            return await migrate.revision(db)
        finally:
            await db.close()

    return asyncio.run(work())


COMMANDS_ON_THE_DATABASE = [
    ("users", "list"),
    ("users", "add", "zoe", "--level", "ea"),
    ("users", "set-level", "zoe", "devel"),
    ("users", "disable", "zoe"),
    ("token", "mint", "zoe"),
    ("token", "revoke", "not-a-token"),
    ("bans", "list"),
    ("audit", "tail"),
]


def test_commands_refuse_a_database_without_tables(database_url: str, tmp_path: Path) -> None:
    """Only `db upgrade` creates the schema: other commands say so, and create nothing (no empty
    SQLite file either)."""
    settings = tmp_path / "settings.toml"
    settings.write_text(settings_text(tmp_path, database_url=database_url))
    for args in COMMANDS_ON_THE_DATABASE:
        done = run_cli(settings, *args, stdin="a long enough password\n")
        assert done.returncode != 0, args
        assert done.stderr.startswith("portal-asgi: error: "), (args, done.stderr)
        assert "run `portal-asgi db upgrade`" in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr
        assert done.stdout == "", args
    assert not (tmp_path / "portal.db").exists()
    if not database_url.startswith("sqlite"):
        assert _revision(database_url) is None  # still no tables


def test_commands_refuse_an_out_of_date_schema(database_url: str, tmp_path: Path) -> None:
    """A database an older version left at revision 0001: refused, left as it is, until
    `db upgrade`, which says each step it takes."""
    settings = tmp_path / "settings.toml"
    settings.write_text(settings_text(tmp_path, database_url=database_url))
    assert _revision(database_url, target="0001") == "0001"
    head = migrate.head()
    assert head != "0001"
    for args in COMMANDS_ON_THE_DATABASE:
        done = run_cli(settings, *args, stdin="a long enough password\n")
        assert done.returncode != 0, args
        assert f"at revision 0001, this version of portal-asgi needs {head}" in done.stderr
        assert "run `portal-asgi db upgrade`" in done.stderr
        assert done.stdout == "", args
    assert _revision(database_url) == "0001"

    upgraded = run_cli(settings, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    lines = upgraded.stdout.splitlines()
    assert lines[0].startswith("upgrading the database at ")
    assert "migrating 0001 -> 0002: Login throttling" in upgraded.stdout
    assert f"-> {head}: " in upgraded.stdout
    assert "empty -> 0001" not in upgraded.stdout
    assert lines[-1].startswith(f"database ready at revision {head}: ")
    assert _revision(database_url) == head

    again = run_cli(settings, "db", "upgrade")
    assert again.returncode == 0, again.stderr
    assert "nothing to migrate" in again.stdout and "migrating" not in again.stdout
    listed = run_cli(settings, "users", "list")
    assert listed.returncode == 0, listed.stderr


HEAVY = ("starlette", "sqlalchemy", "alembic", "authlib", "a2wsgi", "jose", "jinja2", "products")


def _imported_after(statement: str) -> list[str]:
    """Which heavy top-level packages a fresh interpreter holds after `statement`."""
    probe = (
        f"import json, sys\n{statement}\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    found: list[str] = json.loads(done.stdout)
    return found


def test_the_command_line_starts_without_the_web_stack_or_the_database() -> None:
    """`portal-asgi --help`, `check`... start in a fraction of a second: importing the package
    and the command line imports no web framework, database layer or product."""
    assert _imported_after("import portal_asgi") == []
    assert _imported_after("import portal_asgi.cli") == []


def test_the_package_still_exports_the_app_for_uvicorn() -> None:
    """`uvicorn portal_asgi:app` and `from portal_asgi import Portal` work as before."""
    statement = (
        "import portal_asgi\n"
        "from portal_asgi import Portal, Settings, build_app, load_settings\n"
        "assert isinstance(portal_asgi.app, Portal) and portal_asgi.app is portal_asgi.app\n"
        "assert callable(build_app) and callable(load_settings) and Settings.__name__\n"
        "import uvicorn.importer\n"
        "assert uvicorn.importer.import_from_string('portal_asgi:app') is portal_asgi.app"
    )
    assert "starlette" in _imported_after(statement)
