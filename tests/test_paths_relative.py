"""Relative paths in settings.toml (`database_url` for SQLite, `key_file`, `app_dir`) name the same
files for the server and for every command, wherever they are started: they resolve against the
settings file's folder, never against the working directory."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2
import pytest

from portal_asgi.settings import load_settings

from .cli_runner import run_cli
from .processes import uvicorn_process
from .servers import ROOT, free_port


def test_relative_paths_resolve_against_the_settings_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = tmp_path / "conf"
    elsewhere = tmp_path / "elsewhere"
    conf.mkdir()
    elsewhere.mkdir()
    (conf / "settings.toml").write_text(
        "[portal]\n"
        'database_url = "sqlite+aiosqlite:///data/portal.db?timeout=5"\n'
        'key_file = "secrets/key.pem"\n'
        'app_dir = "../apps"\n'
    )
    monkeypatch.chdir(elsewhere)
    portal = load_settings("../conf/settings.toml", environ={}).portal
    folder = conf.resolve()
    assert portal.database_url == f"sqlite+aiosqlite:///{folder}/data/portal.db?timeout=5"
    assert portal.key_file == str(folder / "secrets" / "key.pem")
    assert portal.app_dir == str(tmp_path.resolve() / "apps")


def test_the_defaults_are_beside_the_settings_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "settings.toml").write_text("")
    monkeypatch.chdir("/")
    portal = load_settings(tmp_path / "settings.toml", environ={}).portal
    folder = tmp_path.resolve()
    assert portal.database_url == f"sqlite+aiosqlite:///{folder}/var/portal.db"
    assert portal.key_file == str(folder / "var" / "portal-signing-key.pem")
    assert portal.app_dir == str(folder)


@pytest.mark.parametrize(
    "url",
    [
        "sqlite+aiosqlite:////srv/portal/portal.db",
        "sqlite+aiosqlite:///:memory:",
        "sqlite://",
        "sqlite:///file:portal.db?mode=ro&uri=true",
        "mysql+asyncmy://portal:secret@db.example.org/var/portal",
    ],
)
def test_other_database_urls_are_kept_as_written(tmp_path: Path, url: str) -> None:
    (tmp_path / "settings.toml").write_text(f'[portal]\ndatabase_url = "{url}"\n')
    assert load_settings(tmp_path / "settings.toml", environ={}).portal.database_url == url


def _table_users(output: str) -> set[str]:
    return {line.split()[0] for line in output.splitlines()[1:] if line.strip()}


@contextmanager
def _uvicorn(settings: Path, cwd: Path, port: int) -> Iterator[str]:
    """`uvicorn portal_asgi:app` as an operator starts it: its own process, in `cwd`, the
    settings file named by PORTAL_SETTINGS. Yields its URL once /readyz answers 200."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PORTAL_")}
    env["PORTAL_SETTINGS"] = str(settings)
    log = cwd.parent / f"uvicorn-{port}.log"
    command = [sys.executable, "-m", "uvicorn", "portal_asgi:app", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--no-proxy-headers", "--log-level", "warning"]
    url = f"http://127.0.0.1:{port}"
    with uvicorn_process(command, ready=f"{url}/readyz", cwd=cwd, env=env, log=log):
        yield url


def test_commands_from_any_folder_and_the_server_share_one_database_and_key(
    tmp_path: Path,
) -> None:
    """Once the working directory decided where the database and the key were: `users list`
    from another folder showed an empty table (from a new, empty database made there), and a
    token minted there was signed with a key the server had never seen."""
    conf = tmp_path / "conf"
    conf.mkdir()
    port = free_port()
    settings = conf / "settings.toml"
    settings.write_text(
        "[portal]\n"
        f'base_url = "http://127.0.0.1:{port}"\n'
        'database_url = "sqlite+aiosqlite:///data/portal.db"\n'
        'key_file = "secrets/key.pem"\n'
        f'app_dir = "{os.path.relpath(ROOT, conf)}"\n'
        'feed_interval = "0.2s"\n\n'
        '[[mount]]\npath = "/ea"\napp = "products.test.app:app"\nlevel = "ea"\n'
    )
    folders = [tmp_path / name for name in ("upgrade", "add", "list", "mint", "server")]
    for folder in folders:
        folder.mkdir()
    upgrade, add, listing, mint, server = folders

    assert run_cli(settings, "db", "upgrade", cwd=upgrade).returncode == 0
    added = run_cli(
        settings, "users", "add", "alice", "--level", "ea", stdin="alice's password\n", cwd=add
    )
    assert added.returncode == 0, added.stderr
    # the settings file named relative to the working directory, as an operator types it
    listed = run_cli(Path("../conf/settings.toml"), "users", "list", cwd=listing)
    assert listed.returncode == 0, listed.stderr
    assert _table_users(listed.stdout) == {"alice"}
    minted = run_cli(settings, "token", "mint", "alice", "--ttl", "1h", cwd=mint)
    assert minted.returncode == 0, minted.stderr
    token = minted.stdout.strip().splitlines()[-1]

    with _uvicorn(settings, server, port) as url:
        answer = httpx2.get(
            f"{url}/ea/whoami",
            headers={"authorization": f"Bearer {token}", "accept": "application/json"},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["user"] == "alice"

    assert (conf / "data" / "portal.db").exists()
    assert (conf / "secrets" / "key.pem").exists()
    for folder in folders:  # nothing made where the commands ran
        assert list(folder.iterdir()) == [], folder
