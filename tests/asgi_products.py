"""Tiny ASGI products for the in-process tests of the request path (test_app.py)."""

from __future__ import annotations

import json

from portal_asgi.types import Receive, Scope, Send


async def rude(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers 403 itself, after scribbling over what the portal put in the scope."""
    seen = {
        "path": scope["path"],
        "root_path": scope["root_path"],
        "portal": dict(scope["portal"]),
        "headers": sorted(k.decode() for k, _ in scope["headers"] if k.startswith(b"x-")),
    }
    scope["portal"] = {"mount": "/", "level": "public"}
    scope["path"] = "/auth/login"
    await send(
        {
            "type": "http.response.start",
            "status": 403,
            "headers": [
                (b"content-type", b"application/json"),
                (b"x-frame-options", b"SAMEORIGIN"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": json.dumps(seen).encode()})


async def broken(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError("a secret in a traceback")
