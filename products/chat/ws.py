"""The chat's WebSocket side: a Starlette app that relays each message to everyone in the room,
signed with the sender's name from `websocket.user` (set by the portal, never by the client).

The room lives in this worker's memory: with several workers, each has its own room. A real
product would relay through a shared bus; the point here is the mixed mount, not the relay."""

from __future__ import annotations

import datetime as dt
import json

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

MAX_TEXT = 2000


class Room:
    def __init__(self) -> None:
        self.members: set[WebSocket] = set()

    async def broadcast(self, message: dict[str, str]) -> None:
        text = json.dumps(message)
        for member in list(self.members):
            try:
                await member.send_text(text)
            except (WebSocketDisconnect, RuntimeError):
                self.members.discard(member)  # gone, or closed by the portal


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%H:%M")


async def chat(websocket: WebSocket) -> None:
    room: Room = websocket.app.state.room
    name = websocket.user.display_name
    await websocket.accept()
    room.members.add(websocket)
    await room.broadcast({"kind": "joined", "from": name, "text": "", "at": _now()})
    try:
        while True:
            text = (await websocket.receive_text()).strip()[:MAX_TEXT]
            if text:
                await room.broadcast({"kind": "said", "from": name, "text": text, "at": _now()})
    except WebSocketDisconnect:
        pass
    finally:
        room.members.discard(websocket)
        await room.broadcast({"kind": "left", "from": name, "text": "", "at": _now()})


app = Starlette(routes=[WebSocketRoute("/ws", chat)])
app.state.room = Room()
