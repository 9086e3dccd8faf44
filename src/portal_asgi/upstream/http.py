"""The HTTP side of an upstream mount: one request, relayed through the mount's pooled httpx2
client, streaming both ways.

The request body is handed to httpx2 as a stream that reads the client's next piece only when
the upstream took the previous one, and the answer's body goes to the client a piece at a time as
it arrives (the server's `send` waits while the client is slow to read): neither is ever whole in
memory, whatever its size. When the client leaves, the relay stops and the upstream connection
is closed. A request without a body whose connection the upstream closed under it (a kept-alive
connection it had just dropped) is sent once more on a new one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

import httpx2

from ..types import Receive, Scope, Send
from .failures import BROKEN, REFUSED, TIMEOUT, Failures
from .headers import Headers, Rewrite, Target, from_upstream
from .interrupt import Interrupt

logger = logging.getLogger("portal_asgi.upstream")

# sent again on a fresh connection when a kept-alive one turned out to be closed (RFC 9110
# section 9.2.2); only without a body, which could not be read twice
_RETRIED = frozenset(("GET", "HEAD", "OPTIONS", "DELETE", "PUT", "TRACE"))
_STALE = (httpx2.RemoteProtocolError, httpx2.ReadError, httpx2.WriteError)


class ClientGone(Exception):
    """The client left while its body was being relayed."""


class Upload(httpx2.AsyncByteStream):
    """The client's request body, a piece at a time, as httpx2 asks for it."""

    def __init__(self, receive: Receive, done: Callable[[], None]) -> None:
        self.receive = receive
        self.done = done

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            message = await self.receive()
            if message["type"] != "http.request":
                raise ClientGone
            body = message.get("body", b"")
            if body:
                yield body
            if not message.get("more_body", False):
                break
        self.done()


class _Empty(httpx2.AsyncByteStream):
    async def __aiter__(self) -> AsyncIterator[bytes]:
        return
        yield b""  # an async generator that yields nothing


EMPTY = _Empty()


def _framing(scope: Scope) -> str | None:
    """How the client's body is framed (`length` or `chunked`), or None when it has none: a
    request with neither header has no body (RFC 9112 section 6.3)."""
    framing = None
    for name, value in scope.get("headers", ()):
        if name == b"transfer-encoding":
            return "chunked"
        if name == b"content-length" and value.strip() not in (b"0", b""):
            framing = "length"
    return framing


class HTTPRelay:
    def __init__(self, target: Target, failures: Failures, *, rewrite: bool) -> None:
        self.target = target
        self.failures = failures
        self.rewrite = rewrite

    async def __call__(
        self,
        client: httpx2.AsyncClient,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: Headers,
    ) -> None:
        exchange = _Exchange(self, scope, receive, send)
        try:
            await exchange.run(client, headers)
        except asyncio.CancelledError:
            if not exchange.interrupt.absorbed():
                raise
            logger.debug("client left %s %s", scope.get("method"), scope.get("path"))
        except ClientGone:
            logger.debug("client left during the body of %s", scope.get("path"))
        finally:
            exchange.stop_watching()


class _Exchange:
    """One request and its answer."""

    def __init__(self, relay: HTTPRelay, scope: Scope, receive: Receive, send: Send) -> None:
        self.relay = relay
        self.scope = scope
        self.receive = receive
        self.send = send
        self.interrupt = Interrupt()
        self.watcher: asyncio.Task[None] | None = None
        self.finished = False  # the answer is complete: a disconnect now is the normal end

    async def run(self, client: httpx2.AsyncClient, headers: Headers) -> None:
        scope, failures = self.scope, self.relay.failures
        framing = _framing(scope)
        if framing == "chunked":  # never with a Content-Length beside it (request smuggling)
            headers[:] = [(k, v) for k, v in headers if k != b"content-length"]
            headers.append((b"transfer-encoding", b"chunked"))
        if framing is None:
            stream: httpx2.AsyncByteStream = EMPTY
            self.watch()
        else:
            stream = Upload(self.receive, self.watch)
        try:
            url = self.relay.target.url(scope)
            request = httpx2.Request(scope["method"], url, headers=headers, stream=stream)
        except httpx2.InvalidURL as exc:  # not a path the upstream could be asked for
            await failures.answer(scope, self.send, BROKEN, exc)
            return
        answer = await _send(client, request, retry=framing is None)
        if not isinstance(answer, httpx2.Response):
            await failures.answer(scope, self.send, *answer)
            return
        try:
            await self.relay_answer(answer)
        finally:
            await answer.aclose()

    async def relay_answer(self, response: httpx2.Response) -> None:
        scope, send = self.scope, self.send
        mount = str(scope["portal"]["mount"])
        rewrite = Rewrite(self.relay.target, str(scope.get("root_path", "")))
        headers = from_upstream(
            response.headers.raw, mount=mount, rewrite=rewrite if self.relay.rewrite else None
        )
        await send(
            {"type": "http.response.start", "status": response.status_code, "headers": headers}
        )
        try:
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except httpx2.TimeoutException as exc:
            self.relay.failures.note(scope, TIMEOUT, exc)
            return  # unfinished: the server closes the connection (see failures.py)
        except httpx2.TransportError as exc:
            self.relay.failures.note(scope, BROKEN, exc)
            return
        self.finished = True
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    def watch(self) -> None:
        """Once the body is read only a disconnect can come: wait for it, and stop the relay
        when it comes before the answer's end."""
        self.watcher = asyncio.create_task(self._watch(), name="portal-asgi upstream watch")

    async def _watch(self) -> None:
        while (await self.receive())["type"] != "http.disconnect":
            pass
        if not self.finished:
            self.interrupt.fire()

    def stop_watching(self) -> None:
        if self.watcher is not None:
            self.watcher.cancel()


async def _send(
    client: httpx2.AsyncClient, request: httpx2.Request, *, retry: bool
) -> httpx2.Response | tuple[str, Exception]:
    """The upstream's answer (its body still to come), or why there is none."""
    for attempt in (1, 2):
        try:
            return await client.send(request, stream=True)
        except httpx2.TimeoutException as exc:
            return TIMEOUT, exc
        except httpx2.ConnectError as exc:
            return REFUSED, exc
        except _STALE as exc:
            if not (retry and attempt == 1 and request.method in _RETRIED):
                return BROKEN, exc
        except httpx2.TransportError as exc:
            return BROKEN, exc
    raise AssertionError("unreachable")
