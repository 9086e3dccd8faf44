from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from portal_asgi.db import migrate
from portal_asgi.db.engine import Database

from .cli_runner import mint_token
from .helpers import SESSION_COOKIE, Credentials, bearer, cookie_header
from .oidc.harness import Provider, start_provider
from .servers import LEVELS, MariaDB, RunningPortal, serve

if TYPE_CHECKING:
    from selenium import webdriver

MARIADB_URL = os.environ.get("PORTAL_TEST_MARIADB", "mysql+asyncmy://root@127.0.0.1:3306/test")


@pytest.fixture(scope="session")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPortal]:
    """One portal for the read-only tests, with a user at every level."""
    with serve(tmp_path_factory.mktemp("portal")) as running:
        running.add_level_users()
        yield running


@pytest.fixture(scope="module")
def level_cookies(portal: RunningPortal) -> dict[str, str]:
    """A session cookie of `portal`'s user at each level (sessions nobody logs out)."""
    found = {}
    for level in LEVELS:
        with portal.logged_in(f"user-{level}") as client:
            found[level] = str(client.cookies[SESSION_COOKIE])
    return found


@pytest.fixture(scope="module")
def level_tokens(portal: RunningPortal) -> dict[str, str]:
    """An API token of `portal`'s user at each level, minted by the command line."""
    return {level: mint_token(portal.settings_file, f"user-{level}") for level in LEVELS}


@pytest.fixture(scope="module")
def level_credentials(level_cookies: dict[str, str], level_tokens: dict[str, str]) -> Credentials:
    """The headers of `portal`'s user at a level (None: anonymous), by cookie or Bearer token."""

    def headers(level: str | None, via: str) -> dict[str, str]:
        if level is None:
            return {}
        return (
            cookie_header(level_cookies[level]) if via == "cookie" else bearer(level_tokens[level])
        )

    return headers


@pytest.fixture(scope="session")
def oidc_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provider]:
    """panva's oidc-provider on loopback, for the OIDC tests (tests/oidc/provider.mjs)."""
    with start_provider(tmp_path_factory.mktemp("oidc")) as provider:
        yield provider


@pytest.fixture
def fresh_portal(tmp_path: Path) -> Iterator[RunningPortal]:
    """A portal of its own, for tests that change users, sessions or levels."""
    with serve(tmp_path) as running:
        yield running


@pytest.fixture(scope="session")
def mariadb() -> Iterator[MariaDB]:
    """The MariaDB server. Outside CI an unreachable server skips the test with the reason; with
    CI=true the MariaDB tests must run, so an unreachable server is an error."""
    server = MariaDB(MARIADB_URL)
    problem = server.unreachable()
    if problem is not None:
        message = f"MariaDB unreachable at {server.address} ({problem})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; CI=true requires the MariaDB tests to run", pytrace=False)
        pytest.skip(message)
    try:
        yield server
    finally:
        server.drop_all()


@pytest.fixture(
    params=["sqlite", pytest.param("mariadb", marks=pytest.mark.mariadb)],
)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of its own, once on SQLite and once on MariaDB."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'portal.db'}"
        return
    server: MariaDB = request.getfixturevalue("mariadb")
    url = server.database()
    try:
        yield url
    finally:
        server.drop(url)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    """The portal's schema on an empty database (see `database_url`)."""
    database = Database(database_url)
    await migrate.upgrade(database)
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
async def other_worker(database_url: str, db: Database) -> AsyncIterator[Database]:
    """A second engine on the same database: what another worker (or the CLI) holds."""
    database = Database(database_url)
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    """A real headless Chromium of its own (tests/browser.py); skipped without one, failed under
    CI=true. Selenium is imported only by the tests that use it."""
    from .browser import chromium

    with chromium(tmp_path) as driver:
        yield driver
