"""`/metrics` on the public listener: Prometheus text, for `[metrics] allow` addresses only (the
client as `[security] trusted_proxies` resolved it). To anyone else, and to everyone when
`[metrics] port` gives the metrics a listener of their own, it answers 404 as if absent."""

from __future__ import annotations

import asyncio
import ipaddress

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..runtime import Runtime


class MetricsPage:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        settings = runtime.settings.metrics
        self.networks = [ipaddress.ip_network(n, strict=False) for n in settings.allow]
        self.here = settings.port is None

    def routes(self) -> list[Route]:
        return [Route("/metrics", self.metrics, methods=["GET", "HEAD"])]

    def allowed(self, request: Request) -> bool:
        if not self.here or request.client is None:
            return False
        try:
            address = ipaddress.ip_address(request.client.host)
        except ValueError:
            return False
        return any(address in network for network in self.networks)

    async def metrics(self, request: Request) -> Response:
        if not self.allowed(request):
            raise HTTPException(404)  # the portal's own 404 page, as for any absent path
        runtime = self.runtime
        metrics = runtime.metrics
        # this worker's numbers up to now (the others hand theirs over once a second)
        metrics.flush()
        metrics.update(runtime.directory, runtime.sockets)
        if metrics.sessions_due(runtime.directory):
            await metrics.count_sessions(runtime.db, runtime.directory)
        # reading every worker's files is not the event loop's work
        accept = request.headers.get("accept", "")
        body, content_type = await asyncio.to_thread(metrics.scrape, accept)
        headers = {"content-type": content_type, "cache-control": "no-store"}
        return Response(body, headers=headers)
