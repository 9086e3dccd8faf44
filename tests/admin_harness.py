"""An in-process portal for the admin tests: started through its lifespan (tests/asgi.py) on a
settings file of the test's own, with an admin `root` (the first start's `admin` is there too,
waiting for its password change), and requests sent through the whole request path as ASGI
messages, carrying real session cookies, CSRF tokens and API tokens."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from portal_asgi import claims
from portal_asgi.admin import service
from portal_asgi.db import store
from portal_asgi.db.models import utcnow
from portal_asgi.runtime import Runtime
from portal_asgi.types import ASGIApp

from . import asgi
from .helpers import SESSION_COOKIE
from .servers import password_for

ROOT = "root"


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode()


@dataclass
class AdminHarness:
    app: ASGIApp
    runtime: Runtime

    @property
    def ctx(self) -> service.Context:
        return service.Context(
            self.runtime.db,
            self.runtime.levels,
            codec=self.runtime.codec,
            runtime=self.runtime,
            directory=self.runtime.directory,
        )

    async def add_user(self, username: str, level: str, email: str = "") -> store.UserRecord:
        user = await store.add_user(
            self.runtime.db, username, level=level, password=password_for(username), email=email
        )
        await self.runtime.directory.refresh()
        return user

    async def session(self, username: str, *, signed_in_ago: float = 0) -> dict[str, str]:
        """Headers with a fresh session cookie of `username` (signed in `signed_in_ago` seconds
        ago) and a CSRF cookie, plus the matching `X-CSRF-Token`."""
        runtime = self.runtime
        opened_at = utcnow() - dt.timedelta(seconds=signed_in_ago)
        sid, user = await store.open_session(runtime.db, username, lifetime=3600, now=opened_at)
        await runtime.directory.refresh()
        token = runtime.codec.sign(
            claims.session(
                runtime.levels,
                username,
                user,
                sid=sid,
                now=int(time.time()),
                idle_timeout=1800,
                lifetime=3600,
            )
        )
        csrf = runtime.csrf.new_value()
        return {
            "cookie": f"{SESSION_COOKIE}={token}; {runtime.csrf.cookie_name}={csrf}",
            "x-csrf-token": runtime.csrf.token_for(csrf),
            "x-sid": sid,  # for the test; the portal ignores it
        }

    async def token(self, username: str, *, ttl: str = "1h") -> dict[str, str]:
        minted = await service.mint_token(
            self.ctx, service.Actor.cli(), username, label="test", ttl=ttl
        )
        await self.runtime.directory.refresh()
        return {"authorization": f"Bearer {minted.token}", "x-sid": minted.id}

    async def call(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        *,
        body: Any = None,
        raw: bytes | None = None,
    ) -> Response:
        """`method path` through the whole request path; `body` sent as JSON."""
        sent = {"accept": "application/json", **(headers or {})}
        data = raw if raw is not None else b"" if body is None else json.dumps(body).encode()
        if data:
            sent.setdefault("content-type", "application/json")
            sent["content-length"] = str(len(data))
        target, _, query = path.partition("?")
        answer = await asgi.request(
            self.app,
            target,
            method=method,
            headers=[(k.encode(), v.encode()) for k, v in sent.items() if k != "x-sid"],
            body=data,
            query=query.encode(),
        )
        headers_out = {k.decode().lower(): v.decode("latin-1") for k, v in answer.headers}
        return Response(answer.status, headers_out, answer.body)


@contextlib.asynccontextmanager
async def admin_portal(tmp: Path, database_url: str) -> AsyncIterator[AdminHarness]:
    async with asgi.started(tmp, database_url=database_url) as (portal, runtime):
        harness = AdminHarness(portal, runtime)
        await harness.add_user(ROOT, runtime.levels.highest, email="root@example.org")
        yield harness
