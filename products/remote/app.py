"""A product deployed on its own: a Starlette app on its own uvicorn (`make run` starts it on
127.0.0.1:8001), mounted in the portal with `upstream = "http://127.0.0.1:8001"`.

It trusts no header by itself: `AssertionMiddleware` checks the portal's `X-Portal-Assertion`
against the portal's published keys and sets `request.user`, exactly as the portal does for a
product in its own process. Called directly, bypassing the portal, it answers 401.

    PORTAL_URL     where the portal's keys are fetched, and the issuer expected (default
                   http://127.0.0.1:8000, the demo's base_url)
    REMOTE_MOUNT   the mount's path, the assertions' audience (default /remote)
"""

from __future__ import annotations

import html
import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from portal_asgi.assertion import AssertionMiddleware, Verifier

PORTAL_URL = os.environ.get("PORTAL_URL", "http://127.0.0.1:8000").rstrip("/")
MOUNT = os.environ.get("REMOTE_MOUNT", "/remote")

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Remote product</title>
<link rel="stylesheet" href="/static/portal.css"></head><body><main class="narrow">
<section class="card"><h1>Remote product</h1>
<p>This page comes from a process of its own, on {host}, through the portal.</p>
<p>Signed in as <strong>{name}</strong>, level <strong>{level}</strong>.</p>
<p class="muted">The portal's signed assertion said so; called directly, this product refuses.</p>
<p><button id="ping" class="button">Ping over a WebSocket</button> <span id="pong"></span></p>
<p><a href="/">Back to the portal</a></p></section></main>
<script src="ping.js"></script></body></html>"""

SCRIPT = """document.getElementById("ping").addEventListener("click", () => {
  const url = new URL("ws", location.href);
  url.protocol = url.protocol.replace("http", "ws");
  const socket = new WebSocket(url);
  socket.onopen = () => socket.send("ping " + new Date().toLocaleTimeString());
  socket.onmessage = (event) => {
    document.getElementById("pong").textContent = "echoed: " + event.data;
    socket.close();
  };
});
"""


async def home(request: Request) -> Response:
    user = request.user
    return HTMLResponse(
        PAGE.format(
            host=html.escape(request.url.netloc),
            name=html.escape(user.display_name),
            level=html.escape(getattr(user, "level", "")),
        )
    )


async def script(request: Request) -> Response:
    return Response(SCRIPT, media_type="text/javascript")


async def me(request: Request) -> Response:
    user = request.user
    return JSONResponse(
        {
            "username": user.identity,
            "name": user.display_name,
            "email": getattr(user, "email", ""),
            "level": getattr(user, "level", ""),
            "scopes": list(request.auth.scopes),
            "portal": request.scope.get("portal", {}),
            "prefix": request.headers.get("x-forwarded-prefix", ""),
        }
    )


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await websocket.send_text(message["text"])
        else:
            await websocket.send_bytes(message.get("bytes") or b"")


verifier = Verifier(f"{PORTAL_URL}/.well-known/jwks.json", audience=MOUNT, issuer=PORTAL_URL)
app = AssertionMiddleware(
    Starlette(
        routes=[
            Route("/", home),
            Route("/ping.js", script),
            Route("/me", me),
            WebSocketRoute("/ws", echo),
        ]
    ),
    verifier,
)
