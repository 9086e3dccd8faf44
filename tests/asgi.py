"""In-process ASGI for tests of one part of the request path: a portal started through its
lifespan on a settings file, and requests sent to it as ASGI messages (no server, no socket)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from portal_asgi import Portal, load_settings
from portal_asgi.runtime import Runtime
from portal_asgi.types import ASGIApp, Message, Scope

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


class Lifespan:
    """The lifespan protocol of `app`, driven by hand as a server drives it (call from a running
    event loop)."""

    def __init__(self, app: ASGIApp) -> None:
        self._in: asyncio.Queue[Message] = asyncio.Queue()
        self._out: asyncio.Queue[Message] = asyncio.Queue()

        async def run() -> None:
            await app({"type": "lifespan", "asgi": {"version": "3.0"}}, self._in.get, self._out.put)

        self._task = asyncio.create_task(run())

    async def startup(self) -> None:
        await self._in.put({"type": "lifespan.startup"})
        assert (await self._out.get())["type"] == "lifespan.startup.complete"

    def shut_down(self) -> None:
        """Send `lifespan.shutdown`; `ended()` waits for the answer."""
        self._in.put_nowait({"type": "lifespan.shutdown"})

    async def ended(self) -> Message:
        """The app's answer to the shutdown, once its lifespan returned."""
        answer = await self._out.get()
        await self._task
        return answer


@contextlib.asynccontextmanager
async def started(tmp: Path, **settings: Any) -> AsyncIterator[tuple[Portal, Runtime]]:
    file = tmp / "settings.toml"
    file.write_text(settings_text(tmp, **settings))
    portal = Portal(load_settings(file))
    lifespan = Lifespan(portal)
    await lifespan.startup()
    assert portal.runtime is not None
    try:
        yield portal, portal.runtime
    finally:
        lifespan.shut_down()
        await lifespan.ended()


def http_scope(
    method: str = "GET",
    path: str = "/",
    headers: Iterable[tuple[bytes, bytes]] = (),
    root_path: str = "",
    client: tuple[str, int] = ("127.0.0.1", 50000),
) -> Scope:
    """The scope a server hands an app for `method path` over HTTP/1.1, with `headers` only."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": root_path,
        "headers": list(headers),
        "client": client,
        "server": ("127.0.0.1", 8000),
    }


async def request(
    app: ASGIApp,
    path: str,
    *,
    method: str = "GET",
    headers: list[tuple[bytes, bytes]] | None = None,
    body: bytes = b"",
    client: tuple[str, int] = ("127.0.0.1", 50000),
    query: bytes = b"",
) -> Answer:
    scope = http_scope(
        method, path, [(b"host", b"127.0.0.1:8000"), *(headers or [])], client=client
    )
    scope["query_string"] = query
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
