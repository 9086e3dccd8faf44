"""`/healthz`, `/readyz` and `/.well-known/jwks.json`: public, small, for machines.

`/healthz` is liveness: 200 whenever the process serves, the database's state in the body (a
database outage is not a reason to restart the portal, which keeps serving signed-in users from
memory). `/readyz` is readiness: 503, with the reasons, while this worker cannot judge requests
with current data.
"""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..db import migrate
from ..exceptions import DatabaseUnavailable, SchemaOutOfDate
from ..runtime import Runtime

NO_STORE = {"cache-control": "no-store"}
# The feed is stale when its last good poll is older than this many intervals (and this many
# seconds, so that a short interval on a busy machine does not make readiness flap).
STALE_INTERVALS = 3
STALE_SECONDS = 2.0


class SystemPages:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def routes(self) -> list[Route]:
        return [
            Route("/healthz", self.healthz, methods=["GET", "HEAD"]),
            Route("/readyz", self.readyz, methods=["GET", "HEAD"]),
            Route("/.well-known/jwks.json", self.jwks, methods=["GET", "HEAD"]),
        ]

    async def healthz(self, request: Request) -> Response:
        database = "ok" if await self.runtime.db.ping() else "down"
        return JSONResponse({"status": "ok", "database": database}, headers=NO_STORE)

    async def readyz(self, request: Request) -> Response:
        runtime = self.runtime
        reasons: list[str] = []
        database = await runtime.db.ping()
        if not database:
            reasons.append("database: not answering")
        directory = runtime.directory
        if not directory.loaded:
            reasons.append(await self._not_loaded(database))
        feed = "ok"
        stale_after = max(STALE_INTERVALS * directory.interval, STALE_SECONDS)
        if directory.last_poll is None:
            feed = "not started"
        elif (age := time.monotonic() - directory.last_poll) > stale_after:
            feed = "stale"
            reasons.append(f"change feed: no successful poll for {age:.0f} s")
        body = {
            "ready": not reasons,
            "database": "ok" if database else "down",
            "feed": feed,
            "reasons": reasons,
        }
        return JSONResponse(body, status_code=503 if reasons else 200, headers=NO_STORE)

    async def _not_loaded(self, database: bool) -> str:
        """Why the startup steps have not finished: the schema, most likely, when the database
        answers (auto_migrate off, or a migration it refused)."""
        if database:
            try:
                await migrate.check(self.runtime.db)
            except SchemaOutOfDate as exc:
                return f"database schema: {exc}"
            except DatabaseUnavailable:
                pass
        return "directory: not loaded yet (the startup steps wait for the database)"

    async def jwks(self, request: Request) -> Response:
        # Every key whose tokens may still be valid, the next one included (published before it
        # signs: `keys rotate` waits longer than this max-age); see docs/keys.md.
        return JSONResponse(
            self.runtime.keys.jwks, headers={"cache-control": "public, max-age=300"}
        )
