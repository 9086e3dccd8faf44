"""A deliberately lax product for the tests of rules inside a mount (test_rules.py and
tests/security/test_attacks_rules.py): it reads its path the loosest way any server might
(decoding up to three times, folding case and look-alikes, dropping `;parameters`, trailing dots
and spaces, merging slashes, resolving dot segments), from `path` and from `raw_path` alike, and
serves a secret for each rule path whenever any of those readings lands inside it. A portal that
lets a path trick through to it therefore shows the secret; one that refuses shows nothing of it.

Every other path answers 200 JSON with `MARKER`, the path it was given and `scope["portal"]`.
A WebSocket is accepted, greeted with the same JSON (secret included when its path is a rule
path), then echoed."""

from __future__ import annotations

import json
import posixpath
import unicodedata
from typing import Any
from urllib.parse import unquote

from portal_asgi.types import Receive, Scope, Send

MARKER = "lax-product-7d1e"
SECRETS = {"/admin": "ADMIN-SECRET-5b0c", "/debug": "DEBUG-SECRET-e93a"}


def lax_read(path: str) -> str:
    """`path` the loosest way: the union of what lax servers do to a path."""
    for _ in range(3):
        path = unquote(path, errors="replace")
    path = unicodedata.normalize("NFKC", path).casefold().replace("\\", "/")
    segments = [_lax_segment(s) for s in path.split("/")]
    return posixpath.normpath("/" + "/".join(s for s in segments if s))


def _lax_segment(segment: str) -> str:
    kept = segment.partition(";")[0].strip(" ")
    if kept and not kept.strip("."):  # "..", "..;", "...": a step up, to some servers
        return ".." if len(kept) > 1 else "."
    return kept.rstrip(". ")


def secrets_for(scope: Scope) -> list[str]:
    """The secrets of the rule paths any lax reading of this request lands in."""
    mount = lax_read(str(scope.get("root_path", "")))
    raw = bytes(scope.get("raw_path") or b"").decode("latin-1")
    readings = {lax_read(str(scope.get("path", ""))), lax_read(raw)}
    found = []
    for rule, secret in SECRETS.items():
        inside = mount + rule
        if any(r == inside or r.startswith(inside + "/") for r in readings):
            found.append(secret)
    return found


def seen(scope: Scope) -> dict[str, Any]:
    root = str(scope.get("root_path", ""))
    path = str(scope.get("path", ""))
    return {
        "product": MARKER,
        "path": path[len(root) :] if path.startswith(root) else path,
        "portal": dict(scope.get("portal") or {}),
        "secrets": secrets_for(scope),
    }


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        return
    body = json.dumps(seen(scope)).encode()
    if scope["type"] == "websocket":
        await websocket(receive, send, body)
        return
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def websocket(receive: Receive, send: Send, greeting: bytes) -> None:
    if (await receive())["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": greeting.decode()})
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return
        await send({"type": "websocket.send", "text": message.get("text") or ""})
