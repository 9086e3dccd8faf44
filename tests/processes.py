"""A real portal in processes of its own: `uvicorn portal_asgi:app` as an operator starts it
(`--workers N`, `--no-proxy-headers`), on a settings file written for the test, with users made
beforehand. For tests whose point is several workers, or a worker's event loop left alone by the
test process."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx2
from sqlalchemy import select

from portal_asgi.db import migrate, store
from portal_asgi.db.engine import Database
from portal_asgi.db.models import AuditEvent

from .helpers import csrf_token
from .servers import ROOT, default_mounts, free_port, password_for, settings_text


@dataclass(frozen=True)
class PortalProcess:
    url: str
    database_url: str
    log: Path
    pid: int = 0  # uvicorn's own process: its children are the workers

    def form(self) -> tuple[str, str]:
        """A CSRF cookie and the form token that goes with it (reusable for many posts)."""
        with httpx2.Client(base_url=self.url, timeout=30) as client:
            token = csrf_token(client.get("/auth/login").text)
            cookie = "; ".join(f"{name}={value}" for name, value in client.cookies.items())
            return cookie, token

    def audit_counts(self, *events: str) -> Counter[str]:
        async def work() -> Counter[str]:
            db = Database(self.database_url)
            try:
                async with db.session() as session:
                    found = await session.scalars(
                        select(AuditEvent.event).where(AuditEvent.event.in_(events))
                    )
                    return Counter(found)
            finally:
                await db.close()

        return asyncio.run(work())


def prepare(database_url: str, users: Sequence[str]) -> None:
    """The schema and `users` (password `password_for(name)`), before any worker starts."""

    async def work() -> None:
        db = Database(database_url)
        try:
            await migrate.upgrade(db)
            for name in users:
                await store.add_user(db, name, level="ea", password=password_for(name))
        finally:
            await db.close()

    asyncio.run(work())


@contextmanager
def portal_process(
    tmp: Path,
    *,
    database_url: str | None = None,
    security: str = "",
    workers: int = 1,
    users: Sequence[str] = (),
    mounts: str = "",
    extra_portal: str = "",
    env: Mapping[str, str] | None = None,
    log_level: str = "warning",
    options: Sequence[str] = (),
) -> Iterator[PortalProcess]:
    """`mounts`: more [[mount]] tables (or other tables), after the default ones; `extra_portal`:
    more `[portal]` keys; `env`: more environment variables; `options`: more uvicorn options."""
    port = free_port()
    database_url = database_url or f"sqlite+aiosqlite:///{tmp / 'portal.db'}"
    prepare(database_url, users)
    settings = tmp / "settings.toml"
    mounts = default_mounts() + mounts + (f"\n[security]\n{security}\n" if security else "")
    settings.write_text(
        settings_text(
            tmp, database_url=database_url, mounts=mounts, port=port, extra_portal=extra_portal
        )
    )
    env = {
        **os.environ,
        **(env or {}),
        "PORTAL_SETTINGS": str(settings),
        "PORTAL_ADMIN_PASSWORD": "unused-here",
    }
    command = [
        str(Path(sys.executable).parent / "uvicorn"),
        "portal_asgi:app",
        "--host=127.0.0.1",
        f"--port={port}",
        f"--workers={workers}",
        "--no-proxy-headers",
        f"--log-level={log_level}",
        *options,
    ]
    log = tmp / "uvicorn.log"
    url = f"http://127.0.0.1:{port}"
    with uvicorn_process(command, ready=url + "/readyz", cwd=ROOT, env=env, log=log) as server:
        yield PortalProcess(url, database_url, log, server.pid)


@contextmanager
def uvicorn_process(
    command: Sequence[str], *, ready: str, cwd: Path, env: Mapping[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """`command` (a uvicorn) in a process of its own, its output in `log`; yielded once `ready`
    (a URL of it) answers 200, and terminated (killed if it lingers) on exit."""
    with log.open("wb") as output:
        server = subprocess.Popen(command, cwd=cwd, env=env, stdout=output, stderr=output)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, log.read_text()
            try:
                if httpx2.get(ready, timeout=2).status_code == 200:
                    break
            except httpx2.TransportError:
                pass
            assert time.monotonic() < deadline, "the portal did not start:\n" + log.read_text()
            time.sleep(0.1)
        yield server
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=20)
