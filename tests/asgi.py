"""In-process ASGI for tests of one part of the request path: a portal started through its
lifespan on a settings file, and requests sent to it as ASGI messages (no server, no socket)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from portal_asgi import Portal, load_settings
from portal_asgi.runtime import Runtime
from portal_asgi.types import ASGIApp, Message

from .servers import settings_text


@dataclass
class Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    messages: list[Message] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.decode().lower() == name.lower():
                return value.decode("latin-1")
        return None


@contextlib.asynccontextmanager
async def started(tmp: Path, **settings: Any) -> AsyncIterator[tuple[Portal, Runtime]]:
    file = tmp / "settings.toml"
    file.write_text(settings_text(tmp, **settings))
    portal = Portal(load_settings(file))
    life_in: asyncio.Queue[Message] = asyncio.Queue()
    life_out: asyncio.Queue[Message] = asyncio.Queue()
    lifespan = asyncio.create_task(
        portal({"type": "lifespan", "asgi": {"version": "3.0"}}, life_in.get, life_out.put)
    )
    await life_in.put({"type": "lifespan.startup"})
    assert (await life_out.get())["type"] == "lifespan.startup.complete"
    assert portal.runtime is not None
    try:
        yield portal, portal.runtime
    finally:
        await life_in.put({"type": "lifespan.shutdown"})
        await life_out.get()
        await lifespan


async def request(
    app: ASGIApp,
    path: str,
    *,
    method: str = "GET",
    headers: list[tuple[bytes, bytes]] | None = None,
    body: bytes = b"",
    client: tuple[str, int] = ("127.0.0.1", 50000),
) -> Answer:
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8000"), *(headers or [])],
        "client": client,
        "server": ("127.0.0.1", 8000),
    }
    sent: list[Message] = []
    given = False

    async def receive() -> Message:
        nonlocal given
        if given:
            await asyncio.Event().wait()  # the client stays: no disconnect
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    content = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return Answer(int(start["status"]), list(start.get("headers", [])), content, sent)
