"""Upstream mounts: a product served elsewhere (`upstream = "http://host:port[/prefix]"` instead of
`app`), behind the same login and levels as the products in the portal's process.

`UpstreamApp` is the mount's ASGI app. The route table, the guard and the open-socket registry
treat it as any product (the level is checked before it is called, its WebSockets are judged
again while they stay open); it relays what they let through:

    headers.py     what the upstream receives (identity, X-Forwarded-*) and what comes back
    assertions.py  X-Portal-Assertion, the portal-signed JWT about the caller
    http.py        HTTP through one pooled httpx2 client per mount, streaming both ways
    websocket.py   WebSockets through the `websockets` client, both ways, close codes and all
    failures.py    502 and 504, logged and counted

The mount's client (HTTP/1.1, kept-alive connections) is opened by the app's lifespan, which the
portal runs with every product's (products.py), and closed at shutdown.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx2

from ..answers import refuse
from ..levels import Levels
from ..metrics import Metrics
from ..settings import MountSettings
from ..tokens import TokenCodec
from ..types import Receive, Scope, Send
from .assertions import Assertions
from .failures import Failures
from .headers import Target, to_upstream
from .http import HTTPRelay
from .websocket import WebSocketRelay

__all__ = ["UpstreamApp", "UpstreamKit"]

# Idle connections are closed before uvicorn's own 5 s keep-alive would close them under us.
KEEPALIVE_EXPIRY = 4.0
MAX_IDLE_CONNECTIONS = 100


@dataclass(frozen=True, slots=True)
class UpstreamKit:
    """What every upstream mount takes from the portal: the signing keys (through the codec),
    the levels (for `scope`), the metrics, and the portal's title (for its error pages)."""

    codec: TokenCodec
    levels: Levels
    metrics: Metrics
    title: str


class UpstreamApp:
    def __init__(self, mount: MountSettings, kit: UpstreamKit) -> None:
        assert mount.upstream is not None
        self.mount = mount
        self.target = Target.parse(mount.upstream)
        failures = Failures(kit.metrics, mount=mount.path, upstream=mount.upstream, title=kit.title)
        self.assertions = Assertions(kit.codec, kit.levels, audience=mount.path)
        self.http = HTTPRelay(self.target, failures, rewrite=mount.rewrite)
        self.websocket = WebSocketRelay(self.target, failures, timeout=mount.timeout)
        self.title = kit.title
        self.client: httpx2.AsyncClient | None = None  # while the portal runs

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self.lifespan(receive, send)
            return
        websocket = kind == "websocket"
        assertion = self.assertions.header(scope.get("user"))
        headers = to_upstream(scope, self.target, assertion=assertion, websocket=websocket)
        if websocket:
            await self.websocket(scope, receive, send, headers)
        elif self.client is not None:
            await self.http(self.client, scope, receive, send, headers)
        else:  # only between a shutdown and the server's last requests
            await refuse(scope, receive, send, 503, title=self.title)

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.client = self.new_client()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.client is not None:
                    await self.client.aclose()
                    self.client = None
                await send({"type": "lifespan.shutdown.complete"})
                return

    def new_client(self) -> httpx2.AsyncClient:
        """The mount's pool: HTTP/1.1, connections kept alive, `timeout` for each step
        (connecting, each write, each read); nothing from the environment (no proxy)."""
        return httpx2.AsyncClient(
            timeout=httpx2.Timeout(self.mount.timeout),
            limits=httpx2.Limits(
                max_connections=None,
                max_keepalive_connections=MAX_IDLE_CONNECTIONS,
                keepalive_expiry=KEEPALIVE_EXPIRY,
            ),
            follow_redirects=False,
            trust_env=False,
        )
