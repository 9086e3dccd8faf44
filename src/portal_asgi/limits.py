"""Request limits: too many headers, or headers too large all together, answer 431 everywhere
(uvicorn's httptools parser takes headers of hundreds of kilobytes, h11 stops at 16 KiB); on the
portal's own paths a body larger than `[security] max_body_size` answers 413 before any page reads
it. Products keep their own body limits (they may take uploads)."""

from __future__ import annotations

from .answers import header, refuse
from .settings import RESERVED_PATHS
from .types import ASGIApp, Message, Receive, Scope, Send


def is_portal_path(path: str) -> bool:
    """The portal's own pages: `/` and the reserved prefixes no mount may use (settings.py)."""
    return path == "/" or any(path == p or path.startswith(p + "/") for p in RESERVED_PATHS)


class RequestLimits:
    def __init__(
        self, app: ASGIApp, *, max_body_size: int, max_headers: int, max_header_size: int
    ) -> None:
        self.app = app
        self.max_body_size = max_body_size
        self.max_headers = max_headers
        self.max_header_size = max_header_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = scope.get("headers", ())
        size = sum(len(name) + len(value) for name, value in headers)
        if len(headers) > self.max_headers or size > self.max_header_size:
            await refuse(scope, receive, send, 431)
            return
        if scope["type"] == "http" and is_portal_path(str(scope.get("path", ""))):
            length = header(scope, b"content-length").strip()
            if length and (not length.isdigit() or int(length) > self.max_body_size):
                await refuse(scope, receive, send, 413)
                return
            if not length and scope.get("method") not in ("GET", "HEAD"):
                body = await self._read_capped(receive)
                if body is None:
                    await refuse(scope, receive, send, 413)
                    return
                receive = _replay(body, receive)
        await self.app(scope, receive, send)

    async def _read_capped(self, receive: Receive) -> list[Message] | None:
        """A body without Content-Length (chunked), read up to the cap; None past it."""
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                return messages
            size += len(message.get("body", b""))
            if size > self.max_body_size:
                return None
            if not message.get("more_body", False):
                return messages


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replaying() -> Message:
        return pending.pop(0) if pending else await receive()

    return replaying
