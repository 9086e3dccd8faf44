"""Request limits: too many headers, or headers too large all together, answer 431 everywhere
(uvicorn's httptools parser takes headers of hundreds of kilobytes, h11 stops at 16 KiB). A body
larger than `[security] max_body_size` answers 413 on the portal's own pages before any page
reads it; Flask products have their mount's own `max_body_size` (`bridge.py`), Starlette
products their own limits."""

from __future__ import annotations

from dataclasses import dataclass

from ..answers import header
from ..types import Message, Receive, Scope
from .inbound import Inbound


@dataclass(frozen=True, slots=True)
class Limits:
    max_body_size: int
    max_headers: int
    max_header_size: int

    def headers_refused(self, inbound: Inbound) -> bool:
        return inbound.count > self.max_headers or inbound.size > self.max_header_size

    async def capped_body(self, scope: Scope, receive: Receive) -> Receive | None:
        """`receive` for a portal page, or None when its body is over the cap (413): by
        Content-Length at once, or a chunked body read up to the cap."""
        if scope["type"] != "http":
            return receive
        length = header(scope, b"content-length").strip()
        if length:
            return receive if length.isdigit() and int(length) <= self.max_body_size else None
        if scope.get("method") in ("GET", "HEAD"):
            return receive
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_body_size:
                return None
            if not message.get("more_body", False):
                break
        return _replay(messages, receive)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replaying() -> Message:
        return pending.pop(0) if pending else await receive()

    return replaying
