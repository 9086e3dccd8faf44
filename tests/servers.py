"""A real portal: uvicorn on a free loopback port, in a thread of the test process, serving a
settings file written for the test. Tests talk to it over real HTTP and WebSocket."""

from __future__ import annotations

import asyncio
import secrets
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import uvicorn

from portal_asgi import Portal
from portal_asgi.db import store
from portal_asgi.db.engine import Database

from .helpers import csrf_token

ROOT = Path(__file__).resolve().parent.parent
LEVELS = ("stable", "ea", "devel", "admin")


def mount_path(level: str) -> str:
    """Where the test portal mounts the test product at `level` (`/admin` is the portal's own)."""
    return "/top" if level == "admin" else f"/{level}"


def may_open(held: str | None, required: str) -> bool:
    """Whether a user at level `held` (None: anonymous) may open a mount at `required`."""
    if required == "public":
        return True
    ranks = {name: rank for rank, name in enumerate(LEVELS)}
    return held is not None and ranks[held] >= ranks[required]


def password_for(username: str) -> str:
    return f"pw-{username}-secret"


def default_mounts() -> str:
    """The test product at every level, and the demo products, as [[mount]] tables."""
    return "".join(
        f'[[mount]]\npath = "{mount_path(level)}"\napp = "products.test.app:app"\n'
        f'level = "{level}"\n\n'
        for level in ("public", *LEVELS)
    ) + (
        '[[mount]]\npath = "/dashboard"\napp = "products.dashboard.app:app"\nlevel = "ea"\n\n'
        '[[mount]]\npath = "/disagg/v1"\napp = "products.disagg.app:v1"\nlevel = "stable"\n\n'
        '[[mount]]\npath = "/disagg/v2"\napp = "products.disagg.app:v2"\nlevel = "ea"\n\n'
    )


def settings_text(
    tmp: Path,
    *,
    database_url: str | None = None,
    mounts: str | None = None,
    extra_portal: str = "",
    auth: str = "",
    port: int = 8000,
    auto_migrate: bool = True,
    base_url: str | None = None,
) -> str:
    """A settings file for a test portal. `auto_migrate` is on for every database (the default
    is on for SQLite only), so that a test portal on MariaDB creates its own tables. `base_url`
    (default: the portal's own address) is the token issuer: several portals that must accept
    each other's tokens, as hosts behind one load balancer, share one."""
    database_url = database_url or f"sqlite+aiosqlite:///{tmp / 'portal.db'}"
    if mounts is None:
        mounts = default_mounts()
    return f"""
[portal]
title = "Test Portal"
base_url = "{base_url or f"http://127.0.0.1:{port}"}"
database_url = "{database_url}"
key_file = "{tmp / "key.pem"}"
feed_interval = "0.2s"
app_dir = "{ROOT}"
auto_migrate = {str(auto_migrate).lower()}
{extra_portal}

[auth]
session_lifetime = "1h"
idle_timeout = "30m"
{auth}

{mounts}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningPortal:
    url: str
    settings_file: Path
    database_url: str
    portal: Portal
    server: uvicorn.Server
    thread: threading.Thread
    tokens: dict[str, str] = field(default_factory=dict)

    def client(self, **kwargs: Any) -> httpx2.Client:
        return httpx2.Client(base_url=self.url, follow_redirects=False, timeout=10, **kwargs)

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://")

    def run_db(self, coro_factory: Any) -> Any:
        """Run `coro_factory(db)` against the portal's database from the test thread (as the CLI or
        another worker would), with its own engine."""

        async def work() -> Any:
            db = Database(self.database_url)
            try:
                return await coro_factory(db)
            finally:
                await db.close()

        return asyncio.run(work())

    def add_user(self, username: str, level: str, email: str = "", *, wait: bool = False) -> None:
        """`username` (password `password_for(name)`) in the portal's database; with `wait`, once
        the portal's directory knows them (the change reaches it through the change feed)."""
        self.run_db(
            lambda db: store.add_user(
                db, username, level=level, password=password_for(username), email=email
            )
        )
        if wait:
            self.wait_until(lambda: self.knows(username))

    def knows(self, *usernames: str) -> bool:
        """Whether the portal's directory holds every one of `usernames`."""
        runtime = self.portal.runtime
        return runtime is not None and all(runtime.directory.user(u) is not None for u in usernames)

    def login(
        self, client: httpx2.Client, username: str, password: str | None = None
    ) -> httpx2.Response:
        page = client.get("/auth/login")
        return client.post(
            "/auth/login",
            data={
                "username": username,
                "password": password if password is not None else password_for(username),
                "csrf_token": csrf_token(page.text),
                "next": "/",
            },
        )

    def add_level_users(self) -> None:
        """`user-<level>` at every level (password `password_for(name)`), known to the portal."""
        for level in LEVELS:
            self.add_user(f"user-{level}", level, email=f"{level}@example.org")
        self.wait_until(lambda: self.knows(*(f"user-{level}" for level in LEVELS)))

    @contextmanager
    def logged_in(self, username: str) -> Iterator[httpx2.Client]:
        """A client holding `username`'s session cookie, closed on exit."""
        with self.client() as client:
            response = self.login(client, username)
            assert response.status_code == 303, response.text
            yield client

    def csrf_token(self, client: httpx2.Client) -> str:
        page = client.get("/auth/login")
        if page.status_code == 303:  # already signed in: the catalogue carries the logout form
            page = client.get("/", headers={"accept": "text/html"})
        return csrf_token(page.text)

    def wait_until(self, condition: Any, timeout: float = 5.0) -> None:
        """Poll `condition()` until it holds: for changes that travel through the change feed."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met within {timeout:.1f}s")
            time.sleep(0.05)


@contextmanager
def serve(
    tmp: Path,
    *,
    env: Mapping[str, str] | None = None,
    ws: str = "auto",
    http: str = "auto",
    proxy_headers: bool = False,
    **settings: Any,
) -> Iterator[RunningPortal]:
    port = free_port()
    file = tmp / "settings.toml"
    file.write_text(settings_text(tmp, port=port, **settings))
    from portal_asgi.settings import load_settings

    loaded = load_settings(file, environ=env)
    portal = Portal(loaded)
    config = uvicorn.Config(
        portal,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        ws=ws,
        http=http,
        lifespan="on",
        # False, as `make run` and docs/security.md require: the portal alone reads forwarding
        # headers ([security] trusted_proxies); uvicorn's default would believe 127.0.0.1
        proxy_headers=proxy_headers,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("portal did not start")
        time.sleep(0.02)
    running = RunningPortal(
        f"http://127.0.0.1:{port}", file, loaded.portal.database_url, portal, server, thread
    )
    try:
        yield running
    finally:
        server.should_exit = True
        thread.join(timeout=15)


class MariaDB:
    """The MariaDB server the tests share with other test runs: every database made here is named
    `portal_test_<random>_<n>`, so parallel runs never collide, and dropped by `drop_all()`."""

    def __init__(self, url: str) -> None:
        from sqlalchemy.engine import make_url

        self.server_url = make_url(url).set(database="")
        self.prefix = f"portal_test_{secrets.token_hex(4)}"
        self.made: list[str] = []

    @property
    def address(self) -> str:
        return f"{self.server_url.host}:{self.server_url.port or 3306}"

    def _run(self, *statements: str) -> None:
        from sqlalchemy.ext.asyncio import create_async_engine

        async def work() -> None:
            engine = create_async_engine(self.server_url, connect_args={"connect_timeout": 5})
            try:
                async with engine.connect() as conn:
                    for statement in statements:
                        await conn.exec_driver_sql(statement)
            finally:
                await engine.dispose()

        asyncio.run(work())

    def unreachable(self) -> str | None:
        """Why the server cannot be used, or None when it can."""
        try:
            self._run("SELECT 1")
        except Exception as exc:  # any failure to connect means "skip, or fail in CI"
            return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        return None

    def database(self) -> str:
        """A new, empty database; its `mysql+asyncmy://` URL. Made latin1 on purpose, as older
        servers do by default: the portal's tables must choose utf8mb4 themselves."""
        name = f"{self.prefix}_{len(self.made)}"
        self._run(f"CREATE DATABASE `{name}` CHARACTER SET latin1")
        self.made.append(name)
        return self.server_url.set(database=name).render_as_string(hide_password=False)

    def drop(self, url: str) -> None:
        from sqlalchemy.engine import make_url

        name = make_url(url).database
        if name in self.made:
            self._run(f"DROP DATABASE IF EXISTS `{name}`")
            self.made.remove(name)

    def drop_all(self) -> None:
        for name in list(self.made):
            self._run(f"DROP DATABASE IF EXISTS `{name}`")
        self.made.clear()
