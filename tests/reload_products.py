"""Tiny ASGI products for the settings reload tests (test_reload.py, test_reload_workers.py).

- `where`: says which worker answered and what the portal told it (mount, level).
- `slow` and `gate`: `GET /<slow mount>/<name>` sends its headers and a first line at once, then
  waits until `GET /<gate mount>/<name>` opens the gate (same worker), then ends: a request that
  stays in flight for as long as a test needs.
- `lasting`, and `slow` too: products with a lifespan, whose startup and shutdown are recorded
  (in `EVENTS`, and in the file `$RELOAD_EVENTS` names, for products in other processes);
  `lasting` fails its startup while `$RELOAD_FAIL_STARTUP` is set.
"""

from __future__ import annotations

import asyncio
import json
import os

from portal_asgi.types import Receive, Scope, Send

EVENTS: list[str] = []
_GATES: dict[str, asyncio.Event] = {}


def _gate(name: str) -> asyncio.Event:
    return _GATES.setdefault(name, asyncio.Event())


def _record(event: str) -> None:
    EVENTS.append(event)
    file = os.environ.get("RELOAD_EVENTS")
    if file:
        with open(file, "a") as stream:
            stream.write(f"{event} {os.getpid()}\n")


async def _json(send: Send, body: object, status: int = 200) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})


async def where(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "http":
        await _json(send, {"pid": os.getpid(), **scope["portal"]})


async def _lifespan(name: str, receive: Receive, send: Send) -> None:
    await receive()
    if name == "lasting" and os.environ.get("RELOAD_FAIL_STARTUP"):
        await send({"type": "lifespan.startup.failed", "message": "no model to load"})
        return
    _record(f"{name} startup")
    await send({"type": "lifespan.startup.complete"})
    message = await receive()
    assert message["type"] == "lifespan.shutdown"
    _record(f"{name} shutdown")
    await send({"type": "lifespan.shutdown.complete"})


async def slow(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan("slow", receive, send)
    if scope["type"] != "http":
        return
    name = scope["path"].rsplit("/", 1)[-1]
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    await send({"type": "http.response.body", "body": b"started\n", "more_body": True})
    await _gate(name).wait()
    await send({"type": "http.response.body", "body": b"finished\n"})


async def gate(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "http":
        _gate(scope["path"].rsplit("/", 1)[-1]).set()
        await _json(send, {"opened": True})


async def lasting(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan("lasting", receive, send)
    elif scope["type"] == "http":
        await _json(send, {"events": EVENTS})
