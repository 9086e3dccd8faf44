"""A Starlette product with a WebSocket: greets with who the portal says you are, then echoes.

It reads `scope.get("user")` rather than `websocket.user` so that the same app also runs bare,
outside the portal, for the benchmark's side-by-side figures."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.authentication import BaseUser
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect


def who(websocket: WebSocket) -> dict[str, str]:
    user = websocket.scope.get("user")
    if not isinstance(user, BaseUser) or not user.is_authenticated:
        return {"user": "", "name": "", "level": ""}
    return {"user": user.identity, "name": user.display_name, "level": getattr(user, "level", "")}


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    auth = websocket.scope.get("auth")
    await websocket.send_json(
        who(websocket)
        | {
            "scopes": list(auth.scopes) if auth is not None else [],
            "portal": websocket.scope.get("portal", {}),
        }
    )
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                await websocket.send_text(message["text"])
            elif message.get("bytes") is not None:
                await websocket.send_bytes(message["bytes"])
    except WebSocketDisconnect:
        return


async def home(request: object) -> Response:
    return PlainTextResponse("echo: open a WebSocket at ./ws\n")


app = Starlette(routes=[Route("/", home), WebSocketRoute("/ws", echo)])
