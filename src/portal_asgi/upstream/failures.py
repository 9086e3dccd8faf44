"""When an upstream does not answer: logged, counted (`portal_upstream_errors_total`, by mount
and reason) and answered, never a 500 and never a wait without end.

| reason | when | HTTP | WebSocket handshake |
| --- | --- | --- | --- |
| `refused` | no connection: refused, unreachable, no such host | 502 | 502 |
| `timeout` | connecting, writing or reading took longer than the mount's `timeout` | 504 | 504 |
| `broken` | an answer that is not HTTP (or not a WebSocket handshake), or cut short | 502 | 502 |

A failure after the answer started (the upstream stopped in the middle of a body) cannot change
the status any more: the connection to the client is closed before the body's end, so that the
client sees a broken answer rather than a short one.
"""

from __future__ import annotations

import logging

from ..answers import refuse, send_response
from ..metrics import Metrics
from ..types import Message, Scope, Send

logger = logging.getLogger("portal_asgi.upstream")

REFUSED = "refused"
TIMEOUT = "timeout"
BROKEN = "broken"
STATUS = {REFUSED: 502, TIMEOUT: 504, BROKEN: 502}


async def _connect() -> Message:
    """What the relay already received of a WebSocket (refuse() reads it first)."""
    return {"type": "websocket.connect"}


async def _nothing() -> Message:
    return {"type": "http.disconnect"}


class Failures:
    def __init__(self, metrics: Metrics, *, mount: str, upstream: str, title: str) -> None:
        self.metrics = metrics
        self.mount = mount
        self.upstream = upstream
        self.title = title

    def note(self, scope: Scope, reason: str, problem: object) -> None:
        """Log and count; for failures that can no longer be answered."""
        what = f"{scope.get('method', 'WEBSOCKET')} {scope.get('path', '')}"
        if isinstance(problem, BaseException):
            problem = f"{type(problem).__name__}: {problem}".rstrip(": ")
        logger.warning(
            "upstream %s of %s: %s on %s: %s", self.upstream, self.mount, reason, what, problem
        )
        self.metrics.upstream_error(self.mount, reason)

    async def answer(self, scope: Scope, send: Send, reason: str, problem: object) -> None:
        """Log, count, and answer 502 or 504 (a WebSocket handshake: refused with it)."""
        self.note(scope, reason, problem)
        receive = _nothing if scope["type"] == "http" else _connect
        await refuse(scope, receive, send, STATUS[reason], title=self.title)


async def relay_refusal(
    scope: Scope, send: Send, status: int, body: bytes, content_type: str
) -> None:
    """The upstream's own refusal of a WebSocket handshake, passed on where the server offers
    `websocket.http.response`, else a close before accept (which servers answer 403)."""
    if "websocket.http.response" in scope.get("extensions", {}):
        await send_response(send, status, body, content_type, websocket=True)
    else:
        await send({"type": "websocket.close", "code": 1008})
