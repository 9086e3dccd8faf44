"""Refuse request paths that could mean two things (docs/architecture.md): dot segments, encoded
slashes or backslashes, NUL and other control characters answer 400 before any routing."""

from __future__ import annotations

import re

from .answers import refuse
from .types import ASGIApp, Receive, Scope, Send

_ENCODED = re.compile(rb"%(2f|5c|00)", re.IGNORECASE)
_MAX_PATH = 4096


def is_ambiguous(scope: Scope) -> bool:
    path: str = scope.get("path", "")
    raw: bytes = scope.get("raw_path") or path.encode("utf-8", "surrogateescape")
    if len(raw) > _MAX_PATH or _ENCODED.search(raw):
        return True
    if "\\" in path or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in path):
        return True
    return any(segment in (".", "..") for segment in path.split("/"))


class PathCheck:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and is_ambiguous(scope):
            await refuse(scope, receive, send, 400)
            return
        await self.app(scope, receive, send)
