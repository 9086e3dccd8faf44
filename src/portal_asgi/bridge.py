"""The WSGI bridge: Flask and other WSGI products as ASGI apps, built on a2wsgi.

a2wsgi builds the environ (`a2wsgi.wsgi.build_environ`, so `SCRIPT_NAME`, `PATH_INFO`, headers
and `environ["asgi.scope"]` are exactly a2wsgi's); what differs is how a request crosses between
the event loop and the WSGI thread:

- The request body is read on the event loop before a thread is taken: in memory up to 1 MiB,
  then into a temporary file, at most `max_body_size` bytes (413, by Content-Length before
  anything is read, or as soon as a chunked body passes it), waiting at most `body_timeout` for
  each piece (408). A client that sends its body slowly holds a coroutine, never a thread.
- The app runs in a pool of `threads` threads. A small complete answer (Content-Length or a list
  body, at most 1 MiB) is collected in the thread, the iterable closed, and handed to the loop in
  one step: one wake-up of the loop per request, where a2wsgi needs one per message.
- Anything else streams: each message crosses on its own, at most `WINDOW` ahead of what the
  loop has sent (back-pressure), and a client that disconnects stops the iteration.

docs/performance.md has the measurements; docs/security.md the attack this stops.
"""

from __future__ import annotations

import asyncio
import contextvars
import io
import logging
import queue
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import IO, Any, cast

from a2wsgi.wsgi import build_environ

from .answers import send_response, wants_html
from .pages.templates import render_error
from .types import Message, Receive, Scope, Send

logger = logging.getLogger("portal_asgi.bridge")

MEMORY_BODY = 1024 * 1024  # request bodies past this wait in a temporary file, not in memory
COMPLETE_ANSWER = 1024 * 1024  # answers up to this size cross to the loop in one step
WINDOW = 10  # streamed messages the thread may be ahead of the loop (a2wsgi's send queue)
FILE_BLOCK = 64 * 1024  # smallest block wsgi.file_wrapper reads: fewer, larger hand-offs

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
StartResponse = Callable[..., Callable[[bytes], None]]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

_REFUSALS = {
    408: ("request_timeout", "Request timeout", "The request body did not arrive in time."),
    413: ("body_too_large", "Request too large", "The request body is larger than allowed here."),
    500: ("server_error", "Server error", "The product failed to answer this request."),
}


class ClientGone(ConnectionError):
    """Raised in the WSGI thread when the client went away during a streamed answer."""


class FileWrapper:
    """`wsgi.file_wrapper` (PEP 3333): a file read block by block as the answer streams."""

    def __init__(self, filelike: IO[bytes], blksize: int = 8192) -> None:
        self.filelike = filelike
        self.blksize = max(blksize, FILE_BLOCK)

    def __iter__(self) -> Iterator[bytes]:
        while block := self.filelike.read(self.blksize):
            yield block

    def close(self) -> None:
        close = getattr(self.filelike, "close", None)
        if close is not None:
            close()


@dataclass(frozen=True, slots=True)
class _Complete:
    """A whole answer, collected in the thread."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


class WSGIBridge:
    """A WSGI app as an ASGI app. One bridge per mount; its pool stops at lifespan shutdown."""

    def __init__(
        self, app: WSGIApp, *, threads: int, max_body_size: int, body_timeout: float
    ) -> None:
        self.app = app
        self.threads = threads
        self.max_body_size = max_body_size
        self.body_timeout = body_timeout
        self.pool = _Pool(threads)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "websocket":  # as a2wsgi: WSGI has no WebSockets
            await send({"type": "websocket.close", "code": 1000})
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
            message = await receive()
        if message["type"] == "lifespan.shutdown":
            self.pool.shutdown()
            await send({"type": "lifespan.shutdown.complete"})

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await self._read_body(scope, receive, send)
        if body is None:
            return
        loop = asyncio.get_running_loop()
        call = _Call(loop)
        try:
            environ = cast(dict[str, Any], build_environ(cast(Any, scope), cast(Any, body)))
            environ["wsgi.input_terminated"] = True  # the whole body is there, chunked or not
            environ["wsgi.file_wrapper"] = FileWrapper
            if "CONTENT_LENGTH" not in environ and (size := body.seek(0, io.SEEK_END)):
                environ["CONTENT_LENGTH"] = str(size)  # a chunked body, now of known length
            body.seek(0)
            self.pool.submit(contextvars.copy_context(), call.run, self.app, environ)
            await self._respond(scope, receive, send, call)
        finally:
            body.close()

    async def _read_body(self, scope: Scope, receive: Receive, send: Send) -> IO[bytes] | None:
        """The whole request body, read here on the loop; None when it was refused or the
        client left (nobody to answer)."""
        declared, chunked = _announced_body(scope)
        if declared is not None and declared > self.max_body_size:
            await _refuse(scope, send, 413)
            return None
        first: Message | None = None
        if not declared and not chunked:
            # No body announced: an HTTP/1.1 server already holds the whole request, so this
            # returns at once, without the timer's cost (about 10 µs a request).
            first = await receive()
            if first["type"] == "http.request" and not first.get("more_body", False):
                return io.BytesIO(first.get("body", b""))
        body = _Body(self.max_body_size)
        try:
            async with asyncio.timeout(self.body_timeout) as deadline:
                message = first if first is not None else await receive()
                while body.add(message):
                    deadline.reschedule(asyncio.get_running_loop().time() + self.body_timeout)
                    message = await receive()
        except TimeoutError:
            body.refusal = 408
        if body.refusal:
            body.discard()
            if body.refusal > 0:
                await _refuse(scope, send, body.refusal)
            return None
        return body.stream()

    async def _respond(self, scope: Scope, receive: Receive, send: Send, call: _Call) -> None:
        item = await call.mailbox.get()
        if isinstance(item, _Complete):
            await send(
                {"type": "http.response.start", "status": item.status, "headers": item.headers}
            )
            await send({"type": "http.response.body", "body": item.body})
            return
        if isinstance(item, BaseException):
            _log_failure(scope, item)
            await _refuse(scope, send, 500)
            return
        watcher = asyncio.ensure_future(_watch_disconnect(receive, call))
        try:
            while True:
                if isinstance(item, dict):
                    if not call.gone:
                        await send(item)
                    call.sent_one()
                elif isinstance(item, ClientGone):
                    return
                elif isinstance(item, BaseException):
                    raise item  # headers are out: the server aborts the connection
                else:
                    return
                item = await call.mailbox.get()
        finally:
            watcher.cancel()
            call.stop()  # unblocks the thread if we leave before the end


async def _watch_disconnect(receive: Receive, call: _Call) -> None:
    message = await receive()
    if message["type"] == "http.disconnect":
        call.stop()


class _Body:
    """A request body as it arrives: in memory up to `MEMORY_BODY`, then in a temporary file."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.chunks: list[bytes] = []
        self.spool: IO[bytes] | None = None
        self.size = 0
        self.refusal = 0  # 413 or 408 to answer; -1: the client left, nobody to answer

    def add(self, message: Message) -> bool:
        """Take one message; whether more are to come."""
        if message["type"] != "http.request":  # http.disconnect
            self.refusal = -1
            return False
        chunk = message.get("body", b"")
        if chunk:
            self.size += len(chunk)
            if self.size > self.limit:
                self.refusal = 413
                return False
            if self.spool is None and self.size > MEMORY_BODY:
                self.spool = tempfile.TemporaryFile()  # closed by the bridge after the answer
                self.spool.writelines(self.chunks)
                self.chunks.clear()
            if self.spool is not None:
                self.spool.write(chunk)  # into the page cache: microseconds, fine on the loop
            else:
                self.chunks.append(chunk)
        return bool(message.get("more_body", False))

    def stream(self) -> IO[bytes]:
        if self.spool is not None:
            return self.spool
        chunks = self.chunks
        return io.BytesIO(chunks[0] if len(chunks) == 1 else b"".join(chunks))

    def discard(self) -> None:
        if self.spool is not None:
            self.spool.close()


class _Pool:
    """A fixed number of threads taking jobs from one queue. concurrent.futures costs more per
    job (a Future, two locks, a semaphore) and the bridge needs none of it: the answer comes
    back through the call's mailbox."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.jobs: queue.SimpleQueue[
            tuple[contextvars.Context, Callable[..., None], tuple[Any, ...]] | None
        ] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.threads: list[threading.Thread] = []
        self.started = False
        self.closed = False

    def submit(self, context: contextvars.Context, job: Callable[..., None], *args: Any) -> None:
        if not self.started:
            self._start()
        if self.closed:
            raise RuntimeError("the WSGI thread pool is shut down")
        self.jobs.put((context, job, args))

    def _start(self) -> None:
        with self.lock:
            if self.started or self.closed:
                return
            for number in range(self.size):
                # daemon: a server that exits without a lifespan shutdown is not held up
                thread = threading.Thread(target=self._work, name=f"WSGI_{number}", daemon=True)
                thread.start()
                self.threads.append(thread)
            self.started = True

    def _work(self) -> None:
        while (item := self.jobs.get()) is not None:
            context, job, args = item
            try:
                context.run(job, *args)
            except BaseException:  # a job reports its own failures; the thread must live on
                logger.exception("WSGI job failed")

    def shutdown(self) -> None:
        """Let every thread finish its job and end."""
        with self.lock:
            self.closed = True
            if self.started:
                for _ in range(self.size):
                    self.jobs.put(None)


class _Mailbox:
    """Items from the WSGI thread to the loop; each post is one loop wake-up."""

    __slots__ = ("items", "loop", "waiter")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.items: list[object] = []
        self.waiter: asyncio.Future[None] | None = None

    def post(self, item: object) -> None:  # from the thread
        self.loop.call_soon_threadsafe(self._arrive, item)

    def _arrive(self, item: object) -> None:
        self.items.append(item)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> object:
        while not self.items:
            self.waiter = self.loop.create_future()
            await self.waiter
        self.waiter = None
        return self.items.pop(0)


class _Call:
    """One request on the WSGI side, run in a pool thread: `start_response`, `write`, and the
    iteration that either collects a complete answer or streams it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.mailbox = _Mailbox(loop)
        self.status: str | None = None
        self.headers: list[tuple[str, str]] = []
        self.streaming = False  # the start message went to the loop: headers are out
        self.gone = False  # the client left, or the loop stopped waiting
        self.slots: threading.Semaphore | None = None

    # --- loop side

    def sent_one(self) -> None:
        if self.slots is not None:
            self.slots.release()

    def stop(self) -> None:
        if not self.gone:
            self.gone = True
            if self.slots is not None:
                self.slots.release(WINDOW + 1)

    # --- thread side

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None
    ) -> Callable[[bytes], None]:
        if exc_info is not None:
            try:
                if self.streaming:  # PEP 3333: too late to change them; abort the app
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # no reference cycle through the traceback
        elif self.status is not None:
            raise RuntimeError("start_response called a second time without exc_info")
        self.status, self.headers = status, headers
        return self.write

    def write(self, data: bytes) -> None:
        """PEP 3333's `write`: an imperative app streams."""
        self._start_streaming()
        if data:
            self._deliver({"type": "http.response.body", "body": data, "more_body": True})

    def run(self, app: WSGIApp, environ: dict[str, Any]) -> None:
        try:
            iterable = app(environ, self.start_response)
        except BaseException as exc:
            self._finish(exc)
            return
        outcome: object
        try:
            outcome = self._drain(iterable)
        except BaseException as exc:
            outcome = exc
        finally:
            close = getattr(iterable, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    logger.exception("the WSGI iterable's close() raised")
        self._finish(outcome)

    def _drain(self, iterable: Iterable[bytes]) -> _Complete | None:
        chunks: list[bytes] = []
        size = 0
        if isinstance(iterable, list | tuple) and not self.streaming and self.status is not None:
            size = sum(len(chunk) for chunk in iterable)
            if size <= COMPLETE_ANSWER:
                return self._complete(b"".join(iterable))
        complete_size = -1  # what this answer may be collected up to; -1 until headers known
        for chunk in iterable:
            if self.streaming:
                if chunk:
                    self._deliver({"type": "http.response.body", "body": chunk, "more_body": True})
                continue
            if not chunk:
                continue
            if complete_size < 0:
                complete_size = self._complete_size(iterable)
            chunks.append(chunk)
            size += len(chunk)
            if size > complete_size:
                self._start_streaming()
                for held in chunks:
                    self._deliver({"type": "http.response.body", "body": held, "more_body": True})
                chunks.clear()
        if self.streaming:
            self._deliver({"type": "http.response.body", "body": b"", "more_body": False})
            return None
        return self._complete(b"".join(chunks))

    def _complete_size(self, iterable: Iterable[bytes]) -> int:
        """How much of this answer may be held to send it in one step: all of it when its
        Content-Length says it is small, nothing for a stream of unknown length."""
        if self.status is None:
            raise RuntimeError("the WSGI app yielded a body before calling start_response")
        if isinstance(iterable, list | tuple):
            return COMPLETE_ANSWER
        for name, value in self.headers:
            if name.lower() == "content-length" and value.strip().isdigit():
                return COMPLETE_ANSWER if int(value) <= COMPLETE_ANSWER else 0
        return 0

    def _complete(self, body: bytes) -> _Complete:
        if self.status is None:
            raise RuntimeError("the WSGI app returned without calling start_response")
        status, headers = _encode(self.status, self.headers)
        return _Complete(status, headers, body)

    def _start_streaming(self) -> None:
        if self.streaming:
            return
        if self.status is None:
            raise RuntimeError("write() called before start_response")
        status, headers = _encode(self.status, self.headers)
        self.slots = threading.Semaphore(WINDOW)
        self.streaming = True
        self._deliver({"type": "http.response.start", "status": status, "headers": headers})

    def _deliver(self, message: Message) -> None:
        """Hand a streamed message to the loop, waiting while `WINDOW` are not yet sent."""
        assert self.slots is not None
        if not self.gone:
            self.slots.acquire()
        if self.gone:
            raise ClientGone("the client went away")
        self.mailbox.post(message)

    def _finish(self, outcome: object) -> None:
        try:
            self.mailbox.post(outcome)
        except RuntimeError:  # the loop is closed: the server is gone, nobody waits
            pass


def _encode(status: str, headers: list[tuple[str, str]]) -> tuple[int, list[tuple[bytes, bytes]]]:
    """As a2wsgi: the status code, and header names lowercased, both stripped, as latin-1."""
    return int(status.split(" ", 1)[0]), [
        (name.strip().encode("latin1").lower(), value.strip().encode("latin1"))
        for name, value in headers
    ]


def _announced_body(scope: Scope) -> tuple[int | None, bool]:
    """The request's Content-Length, and whether it has a Transfer-Encoding (chunked)."""
    length: int | None = None
    chunked = False
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            text = value.strip()
            length = int(text) if text.isdigit() else None
        elif name == b"transfer-encoding":
            chunked = True
    return length, chunked


def _log_failure(scope: Scope, exc: BaseException) -> None:
    logger.error(
        "WSGI product failed on %s %s", scope.get("method"), scope.get("path"), exc_info=exc
    )


async def _refuse(scope: Scope, send: Send, status: int) -> None:
    """The portal's own refusal page or JSON; the connection closes after it, since the rest
    of a refused body may still be on its way."""
    code, heading, text = _REFUSALS[status]
    close = [(b"connection", b"close")]
    if wants_html(scope):
        page = render_error(status=status, heading=heading, text=text)
        await send_response(send, status, page.encode(), "text/html; charset=utf-8", close)
    else:
        body = f'{{"error": "{code}"}}'.encode()
        await send_response(send, status, body, "application/json", close)
