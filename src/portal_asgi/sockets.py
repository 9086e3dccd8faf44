"""Open WebSockets under the same rules as requests.

An auth proxy checks a WebSocket once, at the upgrade. Here every authorised socket is held in a
per-worker `SocketRegistry` and judged again whenever the directory changes (logout, revoked
session or token, disabled user, level changes, mount level overrides: all arrive through the
change feed) and once a second for token expiry and idleness. A socket that no longer passes is
closed: the client gets a close frame with the code below, and the product's `receive()` returns
`websocket.disconnect` with the same code, as if the client had left.

| code | why |
| ---- | --- |
| 4401 | the session ended: logged out, session or token revoked, user removed, or the token that opened the socket expired |
| 4403 | the user may no longer reach the mount (or its rule's path): user disabled, level lowered, or the mount's level raised |
| 4408 | no message either way for `[websocket] idle_timeout` |
| 1009 | a message larger than `[websocket] max_message` |
| 1001 | the portal is shutting down |
| 1012 | a settings reload removed the product, or replaced its app (reload.py) |

A handshake beyond `[websocket] max_per_user` open sockets is refused with HTTP 429.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from . import access
from .answers import refuse
from .directory import Directory
from .levels import Levels
from .observe import refusing
from .settings import WebSocketSettings
from .types import ASGIApp, Message, Receive, Scope, Send
from .user import PortalUser

logger = logging.getLogger("portal_asgi.sockets")

SESSION_ENDED = 4401
FORBIDDEN = 4403
IDLE = 4408
TOO_BIG = 1009
GOING_AWAY = 1001
RELOADED = 1012  # "service restart": a reconnect meets the new configuration
REASONS = {
    SESSION_ENDED: "session ended",
    FORBIDDEN: "level no longer allows this product",
    IDLE: "idle timeout",
    TOO_BIG: "message too big",
    GOING_AWAY: "portal shutting down",
    RELOADED: "product unmounted or replaced by a settings reload",
}
# what a verdict of `access.py` closes an open socket with
_CLOSE_CODES = {access.ENDED: SESSION_ENDED, access.BARRED: FORBIDDEN}
CLOSE_TIMEOUT = 5.0  # a client that never answers our close frame does not hold its task forever


class SocketClosed(OSError):
    """Raised to a product that sends on a socket the portal closed. Starlette turns an OSError
    from `send` into `WebSocketDisconnect`, as it does when the client itself went away."""


def _disconnect(code: int) -> Message:
    return {"type": "websocket.disconnect", "code": code, "reason": REASONS.get(code, "")}


class LiveSocket:
    """One open socket: wraps the product's `receive` and `send` so the portal can end it."""

    def __init__(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        required: Callable[[], str],
        key: str,
        expires: float,
        max_message: int,
    ) -> None:
        self.user = scope.get("user")
        self.mount = str(scope.get("portal", {}).get("mount", scope.get("path", "")))
        self.required = required
        self.key = key
        self.expires = expires
        self.max_message = max_message
        self.last_active = time.monotonic()
        self.code: int | None = None  # set once the portal ended the socket
        self._receive = receive
        self._send = send
        self._state = "connecting"  # -> "open" | "response" | "closed"
        self._waiting: asyncio.Task[object] | None = None  # the task blocked in receive()
        self._interrupted = False
        self._closing: asyncio.Task[None] | None = None

    async def receive(self) -> Message:
        if self.code is not None:
            return _disconnect(self.code)
        # The fast path awaits the server's receive directly (no task per message); to end the
        # socket, `end()` cancels this one await and it turns into a disconnect.
        self._waiting = asyncio.current_task()
        try:
            message = await self._receive()
        except asyncio.CancelledError:
            if not self._interrupted or self._waiting is None:
                raise
            self._interrupted = False
            if self._waiting.uncancel() > 0:
                raise  # cancelled by someone else too (server shutdown): let it through
            return _disconnect(self.code or GOING_AWAY)
        finally:
            self._waiting = None
        if self.code is not None:
            return _disconnect(self.code)
        kind = message["type"]
        if kind == "websocket.receive":
            self.last_active = time.monotonic()
            if self._size(message) > self.max_message:
                self.end(TOO_BIG)
                return _disconnect(TOO_BIG)
        elif kind == "websocket.disconnect":
            self._state = "closed"
        return message

    def _size(self, message: Message) -> int:
        data = message.get("bytes")
        if data is not None:
            return len(data)
        text = message.get("text") or ""
        # a character is 1 to 4 bytes: encode only when the length alone cannot decide
        return len(text) if len(text) * 4 <= self.max_message else len(text.encode())

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if self.code is not None:
            if kind == "websocket.close":
                return  # the portal already closed it
            raise SocketClosed(f"the portal closed this socket ({self.code})")
        await self._send(message)
        if kind == "websocket.accept":
            self._state = "open"
        elif kind == "websocket.send":
            self.last_active = time.monotonic()
        elif kind == "websocket.http.response.start":
            self._state = "response"
        elif kind == "websocket.close":
            self._state = "closed"

    def end(self, code: int) -> None:
        """Close from the portal's side: the product's receive returns at once, the close frame
        goes out in a task of its own (this is called from synchronous listeners)."""
        if self.code is not None:
            return
        self.code = code
        if self._waiting is not None:
            # uvicorn's receive is a queue get or a frame read: both are safe to cancel
            self._interrupted = True
            self._waiting.cancel()
        self._closing = asyncio.create_task(self._close(code), name="portal-asgi socket close")

    async def _close(self, code: int) -> None:
        if self._state not in ("connecting", "open"):
            return  # the client left, or the product already answered or closed
        # Before accept a close refuses the handshake (servers answer 403); after it, a frame.
        message = {"type": "websocket.close", "code": code, "reason": REASONS.get(code, "")}
        self._state = "closed"
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self._send(message)
        except Exception as exc:  # best effort: the client may have gone in the meantime
            logger.debug("close %s on %s: %r", code, self.mount, exc)

    async def finished(self) -> None:
        """Wait for the close this socket started."""
        if self._closing is not None:
            await self._closing


class SocketRegistry:
    """This worker's open sockets (no module globals: one per Runtime)."""

    def __init__(
        self,
        settings: WebSocketSettings,
        *,
        levels: Levels,
        directory: Directory,
    ) -> None:
        self.settings = settings
        self.levels = levels
        self.directory = directory
        self.sockets: set[LiveSocket] = set()
        self.per_user: dict[str, int] = {}
        directory.on_change(self.recheck)

    def open(
        self, scope: Scope, receive: Receive, send: Send, required: Callable[[], str]
    ) -> LiveSocket | None:
        """Register a handshake (it counts towards the cap from now on), or None when the user
        is over `max_per_user`. Anonymous sockets (public mounts) have no user to count: behind
        a proxy they would all share one address, so the server's own limits apply to them."""
        user = scope.get("user")
        key = user.username if isinstance(user, PortalUser) else ""
        if key and self.per_user.get(key, 0) >= self.settings.max_per_user:
            return None
        socket = LiveSocket(
            scope,
            receive,
            send,
            required=required,
            key=key,
            # the `exp` of the token that opened it (Identity read it): `inf` for anonymous
            expires=user.expires if isinstance(user, PortalUser) else math.inf,
            max_message=self.settings.max_message,
        )
        self.sockets.add(socket)
        if key:
            self.per_user[key] = self.per_user.get(key, 0) + 1
        return socket

    async def release(self, socket: LiveSocket) -> None:
        self.sockets.discard(socket)
        left = self.per_user.get(socket.key, 1) - 1
        if left > 0:
            self.per_user[socket.key] = left
        elif socket.key:
            self.per_user.pop(socket.key, None)
        await socket.finished()

    def verdict(self, socket: LiveSocket, now: float) -> int | None:
        """The close code this socket has earned, or None while it may stay open: the same
        verdict a request gets at dispatch (`access.py`)."""
        user = socket.user if isinstance(socket.user, PortalUser) else None
        status = access.verdict(self.directory, self.levels, user, socket.required(), now)
        return _CLOSE_CODES.get(status)

    def recheck(self) -> None:
        """Judge every open socket again: a directory listener, and the sweep."""
        now = time.time()
        for socket in list(self.sockets):
            if socket.code is None and (code := self.verdict(socket, now)) is not None:
                self._end(socket, code)

    def sweep(self) -> None:
        self.recheck()  # catches token expiry
        idle_since = time.monotonic() - self.settings.idle_timeout
        for socket in list(self.sockets):
            if socket.code is None and socket.last_active < idle_since:
                self._end(socket, IDLE)

    def _end(self, socket: LiveSocket, code: int) -> None:
        user = socket.user
        who = user.username if isinstance(user, PortalUser) else "anonymous"
        logger.info("closing websocket of %s on %s: %d %s", who, socket.mount, code, REASONS[code])
        socket.end(code)

    async def _sweep_forever(self) -> None:
        period = min(1.0, self.settings.idle_timeout / 4)
        while True:
            await asyncio.sleep(period)
            self.sweep()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Sweep while the portal runs; at shutdown close what is still open with 1001."""
        sweeper = asyncio.create_task(self._sweep_forever(), name="portal-asgi socket sweep")
        try:
            yield
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            await self.close_all(GOING_AWAY)

    def end_mounts(self, paths: set[str]) -> None:
        """A reload unmounted or replaced the products at `paths`: close their sockets."""
        for socket in list(self.sockets):
            if socket.code is None and socket.mount in paths:
                self._end(socket, RELOADED)

    async def close_all(self, code: int) -> None:
        sockets = [socket for socket in self.sockets if socket.code is None]
        if sockets:
            logger.info("closing %d open websockets: %d %s", len(sockets), code, REASONS[code])
        for socket in sockets:
            socket.end(code)
        await asyncio.gather(*(socket.finished() for socket in sockets))


class SocketSession:
    """Pure ASGI, around a mounted product: every WebSocket the route's guard let through is held in
    the registry for as long as it is open. HTTP passes untouched."""

    def __init__(
        self, app: ASGIApp, *, registry: SocketRegistry, required: Callable[[], str]
    ) -> None:
        self.app = app
        self.registry = registry
        self.required = required

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        if scope["type"] != "websocket":  # the product's own coroutine, no frame of ours
            return self.app(scope, receive, send)
        return self._socket(scope, receive, send)

    async def _socket(self, scope: Scope, receive: Receive, send: Send) -> None:
        socket = self.registry.open(scope, receive, send, self.required)
        if socket is None:
            logger.warning("websocket refused on %s: too many open sockets", scope.get("path"))
            refusing("429")  # the portal's refusal, though on a product's route
            await refuse(scope, receive, send, 429)
            return
        try:
            await self.app(scope, socket.receive, socket.send)
        finally:
            await self.registry.release(socket)
