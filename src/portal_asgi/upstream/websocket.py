"""The WebSocket side of an upstream mount: the client's socket relayed to one the portal opens
to the upstream with the `websockets` client, message for message, both ways.

The handshake goes to the upstream first (with the client's subprotocols, and the identity
headers); the client's is accepted only once the upstream accepted, with the subprotocol the
upstream chose, and refused with the upstream's own status when the upstream refused it. Then:

- a message either way is sent on as it is (text or binary); each side waits while the other
  is slow to take messages, so nothing piles up in the portal;
- the client closing (or leaving) closes the upstream socket with the same code; the upstream
  closing closes the client's with its code (1014, "bad gateway", when it vanished without one);
- when the portal ends the socket (sockets.py: a session ended, a level lowered, idle, the portal
  shutting down) the client gets the portal's close code and the upstream socket is closed with
  the same code at the same moment.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.frames import EXTERNAL_CLOSE_CODES
from websockets.typing import Subprotocol

from ..types import Message, Receive, Scope, Send
from .failures import BROKEN, REFUSED, TIMEOUT, Failures, relay_refusal
from .headers import Headers, Target
from .interrupt import Interrupt

logger = logging.getLogger("portal_asgi.upstream")

CLOSE_TIMEOUT = 5.0  # a side that does not answer a close frame is not waited for longer
BAD_GATEWAY = 1014  # RFC 6455 registry: the upstream vanished without a close frame


def _sendable(code: int | None, *, default: int) -> int:
    """A close code that may go on the wire (1005, 1006 and 1015 only describe a close)."""
    if code is not None and (code in EXTERNAL_CLOSE_CODES or 3000 <= code < 5000):
        return code
    return 1000 if code == 1005 else default


class WebSocketRelay:
    def __init__(self, target: Target, failures: Failures, *, timeout: float) -> None:
        self.target = target
        self.failures = failures
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send, headers: Headers) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        upstream = await self._open(scope, send, headers)
        if upstream is None:
            return
        try:
            await send({"type": "websocket.accept", "subprotocol": upstream.subprotocol})
        except OSError:  # the client left (or the portal ended the socket) meanwhile
            await upstream.close(1001)
            return
        await _Relay(upstream, receive, send, self.failures, scope).run()

    async def _open(self, scope: Scope, send: Send, headers: Headers) -> ClientConnection | None:
        subprotocols = [Subprotocol(name) for name in scope.get("subprotocols") or ()]
        try:
            return await connect(
                self.target.websocket_url(scope),
                additional_headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers],
                subprotocols=subprotocols or None,
                compression=None,  # no work spent compressing twice; the client may still ask
                user_agent_header=None,  # the client's own goes along with its headers
                proxy=None,  # never a proxy from the environment
                open_timeout=self.timeout,
                close_timeout=CLOSE_TIMEOUT,
                max_size=None,  # the product's messages, as a product in the portal sends them
            )
        except InvalidStatus as exc:  # the upstream refused the handshake: its answer goes on
            response = exc.response
            logger.info(
                "upstream refused websocket %s: %d", scope.get("path"), response.status_code
            )
            content_type = response.headers.get("Content-Type", "text/plain")
            body = bytes(response.body or b"")
            await relay_refusal(scope, send, response.status_code, body, content_type)
        except TimeoutError as exc:
            await self.failures.answer(scope, send, TIMEOUT, exc)
        except OSError as exc:
            await self.failures.answer(scope, send, REFUSED, exc)
        except (InvalidHandshake, ValueError) as exc:
            await self.failures.answer(scope, send, BROKEN, exc)
        return None


class _Relay:
    """One open socket pair: client to upstream in the handshake's task, upstream to client in
    a task of its own."""

    def __init__(
        self,
        upstream: ClientConnection,
        receive: Receive,
        send: Send,
        failures: Failures,
        scope: Scope,
    ) -> None:
        self.upstream = upstream
        self.receive = receive
        self.send = send
        self.failures = failures
        self.scope = scope
        self.client_closed = False  # the client's side ended: nothing more goes to it
        self.interrupt = Interrupt()
        self.deadline: asyncio.TimerHandle | None = None  # for the client's answer to a close

    async def run(self) -> None:
        down = asyncio.create_task(self._to_client(), name="portal-asgi upstream websocket")
        try:
            await self._to_upstream()
        except asyncio.CancelledError:
            if not self.interrupt.absorbed():
                raise
            logger.info("client did not answer the close of %s", self.scope.get("path"))
        finally:
            if self.deadline is not None:
                self.deadline.cancel()
            self.client_closed = True
            await self.upstream.close()  # at once, if the client's disconnect has not done it
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(down), CLOSE_TIMEOUT)
            down.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await down

    async def _to_upstream(self) -> None:
        while True:
            message = await self.receive()
            kind = message["type"]
            if kind == "websocket.receive":
                text = message.get("text")
                data = text if text is not None else (message.get("bytes") or b"")
                with contextlib.suppress(ConnectionClosed):  # its close reaches the client
                    await self.upstream.send(data)
            elif kind == "websocket.disconnect":
                self.client_closed = True
                code = _sendable(message.get("code"), default=1001)
                await self.upstream.close(code, str(message.get("reason") or ""))
                return

    async def _to_client(self) -> None:
        try:
            while True:
                data = await self.upstream.recv()
                reply: Message = {"type": "websocket.send"}
                reply["text" if isinstance(data, str) else "bytes"] = data
                await self.send(reply)
        except ConnectionClosed as exc:
            closed = exc.rcvd
        except OSError:  # the client is gone: the other side sees its disconnect
            return
        if self.client_closed:
            return
        if closed is None:
            self.failures.note(self.scope, BROKEN, "websocket closed without a close frame")
            code, reason = BAD_GATEWAY, "upstream closed"
        else:
            code, reason = _sendable(closed.code, default=1011), closed.reason
        with contextlib.suppress(OSError):
            await self.send({"type": "websocket.close", "code": code, "reason": reason})
        # the client's answer ends the other side; a client that never answers does not
        # hold the relay open
        loop = asyncio.get_running_loop()
        self.deadline = loop.call_later(CLOSE_TIMEOUT, self.interrupt.fire)
