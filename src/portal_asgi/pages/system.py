"""`/healthz`, `/readyz` and `/.well-known/jwks.json`: public, small, for machines."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..runtime import Runtime


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
        ok = await self.runtime.db.ping()
        body = {"status": "ok" if ok else "degraded", "database": "ok" if ok else "unavailable"}
        return JSONResponse(
            body, status_code=200 if ok else 503, headers={"cache-control": "no-store"}
        )

    async def readyz(self, request: Request) -> Response:
        ready = self.runtime.directory.loaded
        return JSONResponse(
            {"ready": ready},
            status_code=200 if ready else 503,
            headers={"cache-control": "no-store"},
        )

    async def jwks(self, request: Request) -> Response:
        return JSONResponse(self.runtime.key.jwks, headers={"cache-control": "public, max-age=300"})
