"""The WSGI bridge (bridge.py): PEP 3333 as a2wsgi serves it, with the body read on the loop, a
complete answer handed over in one step and streams kept streaming. Most tests call the bridge
in-process as an ASGI server would; the last ones go through a real portal on uvicorn."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, Response, request, send_file, stream_with_context
from starlette.applications import Starlette
from starlette.routing import Mount

from portal_asgi.bridge import WSGIBridge
from portal_asgi.types import ASGIApp, Message, Scope

from .asgi import http_scope
from .servers import RunningPortal, serve

MiB = 1024 * 1024
Environ = dict[str, Any]
StartResponse = Callable[..., Callable[[bytes], None]]


# --- in-process ASGI calls


@dataclass
class Answer:
    messages: list[Message] = field(default_factory=list)

    @property
    def status(self) -> int:
        return int(self.messages[0]["status"])

    @property
    def headers(self) -> dict[str, str]:
        return {k.decode(): v.decode() for k, v in self.messages[0]["headers"]}

    @property
    def bodies(self) -> list[bytes]:
        return [m.get("body", b"") for m in self.messages[1:]]

    @property
    def body(self) -> bytes:
        return b"".join(self.bodies)

    @property
    def complete(self) -> bool:
        last = self.messages[-1]
        return last["type"] == "http.response.body" and not last.get("more_body", False)


async def call(
    app: ASGIApp,
    scope: Scope | None = None,
    *,
    body: Iterable[bytes] = (b"",),
    body_ends: bool = True,
    on_send: Callable[[Message, asyncio.Event], None] | None = None,
) -> Answer:
    """One request: `body` arrives in those pieces (the last with more_body unless `body_ends`
    is false: the client then stalls); after it, receive() waits until `gone` is set (by
    `on_send`, which sees every message the app sends) and answers http.disconnect."""
    pieces = list(body)
    gone = asyncio.Event()
    answer = Answer()

    async def receive() -> Message:
        if pieces:
            piece = pieces.pop(0)
            return {
                "type": "http.request",
                "body": piece,
                "more_body": bool(pieces) or not body_ends,
            }
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        answer.messages.append(message)
        if on_send is not None:
            on_send(message, gone)

    await app(scope or http_scope(), receive, send)
    return answer


@pytest.fixture
def bridge() -> Iterator[Callable[..., WSGIBridge]]:
    """Bridges with small test limits; their threads stop after the test."""
    made: list[WSGIBridge] = []

    def make(app: Any, **options: Any) -> WSGIBridge:
        limits: dict[str, Any] = {"threads": 4, "max_body_size": 10 * MiB, "body_timeout": 5.0}
        made.append(WSGIBridge(app, **(limits | options)))
        return made[-1]

    yield make
    for each in made:
        each.pool.shutdown()


class Closing:
    """A WSGI iterable that records its close()."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self.chunks = iter(chunks)
        self.closed = threading.Event()

    def __iter__(self) -> Iterator[bytes]:
        return self.chunks

    def close(self) -> None:
        self.closed.set()


def text_app(body: bytes, *, length: bool = True) -> Any:
    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        headers = [("Content-Type", "text/plain")]
        start_response("200 OK", headers + ([("Content-Length", str(len(body)))] if length else []))
        return [body]

    return app


pytestmark = pytest.mark.anyio


# --- one step for a complete answer


async def test_small_answer_crosses_to_the_loop_in_one_step(bridge: Any) -> None:
    """The point of the bridge: one wake-up of the event loop per small answer (a2wsgi: one per
    message, and a round trip for each)."""
    flask = Flask(__name__)
    flask.get("/hello")(lambda: {"hello": "world"})
    app = bridge(flask)
    loop = asyncio.get_running_loop()
    original = loop.call_soon_threadsafe
    crossings: list[object] = []

    def counting(callback: Any, *args: Any, **kwargs: Any) -> Any:
        crossings.append(callback)
        return original(callback, *args, **kwargs)

    loop.call_soon_threadsafe = counting  # type: ignore[method-assign,assignment]
    try:
        answer = await call(app, http_scope(path="/hello"))
    finally:
        loop.call_soon_threadsafe = original  # type: ignore[method-assign]
    assert answer.status == 200
    assert answer.body == b'{"hello":"world"}\n'
    assert [m["type"] for m in answer.messages] == ["http.response.start", "http.response.body"]
    assert answer.complete
    assert len(crossings) == 1


# --- PEP 3333: start_response, exc_info, write, close


async def test_exc_info_before_headers_are_sent_replaces_them(bridge: Any) -> None:
    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [("X-First", "yes")])
        try:
            raise ValueError("the page broke")
        except ValueError:
            start_response("503 Service Unavailable", [("X-Second", "yes")], sys.exc_info())
        return [b"try later"]

    answer = await call(bridge(app))
    assert answer.status == 503
    assert "x-second" in answer.headers and "x-first" not in answer.headers
    assert answer.body == b"try later"


async def test_exc_info_after_headers_are_sent_aborts_the_answer(bridge: Any) -> None:
    """PEP 3333: once headers are out, start_response(exc_info) re-raises; the server must then
    drop the connection, so the client sees a cut answer, never a complete one."""
    iterable: Closing | None = None

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        nonlocal iterable

        def chunks() -> Iterator[bytes]:
            yield b"first part"
            try:
                raise KeyError("late failure")
            except KeyError:
                start_response("500 Internal Server Error", [], sys.exc_info())
            yield b"never sent"

        start_response("200 OK", [("Content-Type", "text/plain")])
        iterable = Closing(chunks())
        return iterable

    answer = Answer()
    with pytest.raises(KeyError, match="late failure"):
        answer = await call(bridge(app), on_send=lambda m, gone: answer.messages.append(m))
    assert answer.status == 200
    assert answer.body == b"first part"
    assert not answer.complete
    assert iterable is not None and iterable.closed.is_set()


async def test_start_response_twice_without_exc_info_is_an_error(bridge: Any) -> None:
    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [])
        start_response("201 Created", [])
        return [b"no"]

    answer = await call(bridge(app))
    assert answer.status == 500


async def test_write_callable_streams_before_the_iterable(bridge: Any) -> None:
    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"one ")
        write(b"two ")
        return [b"three"]

    answer = await call(bridge(app))
    assert answer.status == 200
    assert answer.body == b"one two three"
    assert answer.bodies[:3] == [b"one ", b"two ", b"three"]
    assert answer.complete


@pytest.mark.parametrize("size", [10, 3 * MiB], ids=["complete", "streamed"])
async def test_iterable_close_is_called(bridge: Any, size: int) -> None:
    iterable = Closing([b"x" * size])

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Length", str(size))])
        return iterable

    answer = await call(bridge(app))
    assert len(answer.body) == size
    assert iterable.closed.is_set()


async def test_iterable_close_is_called_when_iteration_raises(bridge: Any) -> None:
    def failing() -> Iterator[bytes]:
        raise RuntimeError("broken generator")
        yield b""  # pragma: no cover - makes this a generator

    iterable = Closing(failing())

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [])
        return iterable

    answer = await call(bridge(app))
    assert answer.status == 500
    assert iterable.closed.is_set()


@pytest.mark.parametrize(
    ("app", "status"),
    [
        pytest.param(text_app(b""), 200, id="list-with-length"),
        pytest.param(text_app(b"", length=False), 200, id="list-without-length"),
        pytest.param(
            lambda environ, start_response: (start_response("204 No Content", []), iter(()))[1],
            204,
            id="empty-generator",
        ),
    ],
)
async def test_empty_bodies(bridge: Any, app: Any, status: int) -> None:
    answer = await call(bridge(app))
    assert answer.status == status
    assert answer.body == b""
    assert answer.complete


async def test_head_answers_headers_only(bridge: Any) -> None:
    flask = Flask(__name__)
    flask.get("/page")(lambda: "x" * 500)
    app = bridge(flask)
    answer = await call(app, http_scope("HEAD", "/page"))
    assert answer.status == 200
    assert answer.headers["content-length"] == "500"
    assert answer.body == b""


async def test_app_that_raises_answers_500_without_traceback_and_logs(
    bridge: Any, caplog: pytest.LogCaptureFixture
) -> None:
    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        raise ZeroDivisionError("secret detail of the product")

    with caplog.at_level(logging.ERROR, logger="portal_asgi.bridge"):
        answer = await call(bridge(app), http_scope(path="/boom"))
    assert answer.status == 500
    assert b"secret detail" not in answer.body and b"Traceback" not in answer.body
    assert b"ZeroDivisionError" not in answer.body
    failures = [r for r in caplog.records if r.name == "portal_asgi.bridge"]
    assert failures and failures[0].exc_info is not None
    assert "/boom" in failures[0].getMessage()


# --- streams stay streams


async def test_generator_answer_streams_each_chunk(bridge: Any) -> None:
    """The second chunk is only produced once the first reached the client: a bridge that
    collected the whole answer first would make the generator wait in vain."""
    first_out = threading.Event()

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])

        def chunks() -> Iterator[bytes]:
            yield b"one,"
            yield b"two" if first_out.wait(10) else b"held back"

        return chunks()

    def on_send(message: Message, gone: asyncio.Event) -> None:
        if message.get("body") == b"one,":
            first_out.set()

    answer = await call(bridge(app), on_send=on_send)
    assert answer.body == b"one,two"
    assert answer.complete


async def test_flask_stream_with_context(bridge: Any) -> None:
    first_out = threading.Event()
    flask = Flask(__name__)

    @flask.get("/count")
    def count() -> Response:
        def numbers() -> Iterator[str]:
            yield f"{request.path}:"  # the request context lives on while the stream runs
            for number in range(3):
                first_out.wait(10)
                yield str(number)

        return Response(stream_with_context(numbers()), mimetype="text/plain")

    def on_send(message: Message, gone: asyncio.Event) -> None:
        if message.get("body") == b"/count:":
            first_out.set()

    answer = await call(bridge(flask), http_scope(path="/count"), on_send=on_send)
    assert answer.body == b"/count:012"
    assert answer.bodies[0] == b"/count:"
    assert first_out.is_set()


async def test_file_wrapper_streams_a_large_file_and_closes_it(bridge: Any, tmp_path: Path) -> None:
    data = bytes(range(256)) * (12 * 1024)  # 3 MiB
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    opened: list[Any] = []

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Length", str(len(data)))])
        handle = path.open("rb")
        opened.append(handle)
        wrapped: Iterable[bytes] = environ["wsgi.file_wrapper"](handle, 8192)
        return wrapped

    answer = await call(bridge(app))
    assert answer.body == data
    assert len(answer.bodies) > 3  # streamed in blocks, not collected
    assert opened[0].closed


async def test_flask_send_file_through_the_file_wrapper(bridge: Any, tmp_path: Path) -> None:
    path = tmp_path / "small.txt"
    path.write_bytes(b"hello file")
    flask = Flask(__name__)
    flask.get("/file")(lambda: send_file(path))
    answer = await call(bridge(flask), http_scope(path="/file"))
    assert answer.status == 200
    assert answer.body == b"hello file"


async def test_large_answer_streams_in_pieces(bridge: Any) -> None:
    app = bridge(text_app(b"y" * (5 * MiB)))
    answer = await call(app)
    assert len(answer.body) == 5 * MiB
    assert answer.complete


async def test_client_disconnect_stops_a_streaming_answer(bridge: Any) -> None:
    produced = 0
    iterable: Closing | None = None

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        nonlocal iterable

        def endless() -> Iterator[bytes]:
            nonlocal produced
            while True:
                produced += 1
                yield b"tick\n"

        start_response("200 OK", [("Content-Type", "text/plain")])
        iterable = Closing(endless())
        return iterable

    def on_send(message: Message, gone: asyncio.Event) -> None:
        if message.get("body") == b"tick\n":
            gone.set()  # the client hangs up after its first line

    answer = await asyncio.wait_for(call(bridge(app), on_send=on_send), timeout=20)
    assert answer.status == 200
    assert not answer.complete
    assert iterable is not None and iterable.closed.is_set()
    assert produced < 100  # back-pressure: the thread never ran far ahead


# --- the request body


def reading_app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """wsgi.input by read(n), readline() and iteration; reports what each gave."""
    stream = environ["wsgi.input"]
    head = stream.read(3)
    line = stream.readline()
    rest = list(stream)
    end = stream.read()
    report = repr((head, line, rest, end, environ.get("CONTENT_LENGTH"))).encode()
    start_response("200 OK", [("Content-Length", str(len(report)))])
    return [report]


async def test_wsgi_input_read_readline_and_iteration(bridge: Any) -> None:
    body = b"abcdef\nline two\nline three"
    scope = http_scope("POST", headers=[(b"content-length", str(len(body)).encode())])
    answer = await call(bridge(reading_app), scope, body=[body[:5], body[5:12], body[12:]])
    expected = (b"abc", b"def\n", [b"line two\n", b"line three"], b"", str(len(body)))
    assert answer.body == repr(expected).encode()


async def test_chunked_request_body_reaches_flask(bridge: Any) -> None:
    """Without Content-Length, Werkzeug reads nothing unless the server says the input is
    terminated; the bridge has the whole body, so it says so and gives the length too."""
    flask = Flask(__name__)
    flask.post("/echo")(lambda: request.get_data())
    scope = http_scope("POST", "/echo", headers=[(b"transfer-encoding", b"chunked")])
    answer = await call(bridge(flask), scope, body=[b"first ", b"second ", b"third"])
    assert answer.body == b"first second third"


async def test_large_request_body_is_spooled_and_read_whole(bridge: Any) -> None:
    data = bytes(range(256)) * (20 * 1024)  # 5 MiB: past the in-memory part
    flask = Flask(__name__)
    flask.post("/digest")(lambda: hashlib.sha256(request.get_data()).hexdigest())
    scope = http_scope("POST", "/digest", headers=[(b"content-length", str(len(data)).encode())])
    pieces = [data[i : i + 65536] for i in range(0, len(data), 65536)]
    answer = await call(bridge(flask), scope, body=pieces)
    assert answer.body.decode() == hashlib.sha256(data).hexdigest()


async def test_body_over_max_body_size_by_content_length_is_413_unread(bridge: Any) -> None:
    called = threading.Event()
    app = bridge(lambda environ, start_response: called.set(), max_body_size=100)
    scope = http_scope("POST", headers=[(b"content-length", b"101")])
    answer = await call(app, scope, body=[b"x" * 101])
    assert answer.status == 413
    assert answer.headers["connection"] == "close"
    assert not called.is_set()


async def test_chunked_body_passing_max_body_size_is_413(bridge: Any) -> None:
    called = threading.Event()
    app = bridge(lambda environ, start_response: called.set(), max_body_size=100)
    scope = http_scope("POST", headers=[(b"transfer-encoding", b"chunked")])
    answer = await call(app, scope, body=[b"x" * 60, b"x" * 60, b"x" * 60])
    assert answer.status == 413
    assert not called.is_set()


async def test_stalled_body_is_408_and_takes_no_thread(bridge: Any) -> None:
    """One thread, one client that never finishes its body: another request is still
    answered at once, and the stalled one gets 408 after body_timeout."""
    called = threading.Event()

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        called.set()
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    one_thread = bridge(app, threads=1, body_timeout=3.0)
    scope = http_scope("POST", headers=[(b"content-length", b"1000")])
    stalled = asyncio.create_task(call(one_thread, scope, body=[b"abc"], body_ends=False))
    other = await asyncio.wait_for(call(one_thread), timeout=5)
    assert other.body == b"ok"
    assert not stalled.done()
    called.clear()
    answer = await asyncio.wait_for(stalled, timeout=10)
    assert answer.status == 408
    assert answer.headers["connection"] == "close"
    assert not called.is_set()


# --- environ


async def test_script_name_path_info_and_asgi_scope_under_a_mount(bridge: Any) -> None:
    seen: dict[str, Any] = {}

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        seen.update(environ)
        start_response("200 OK", [("Content-Length", "0")])
        return []

    outer = Starlette(routes=[Mount("/product", app=bridge(app))])
    scope = http_scope(path="/product/some/page")
    scope["portal"] = {"mount": "/product", "level": "ea"}
    answer = await call(outer, scope)
    assert answer.status == 200
    assert seen["SCRIPT_NAME"] == "/product"
    assert seen["PATH_INFO"] == "/some/page"
    assert seen["asgi.scope"]["portal"] == {"mount": "/product", "level": "ea"}
    assert seen["wsgi.input_terminated"] is True
    assert hasattr(seen["wsgi.errors"], "write")


async def test_lifespan_shutdown_ends_the_threads(bridge: Any) -> None:
    app = bridge(text_app(b"ok"), threads=3)
    await call(app)  # starts the pool
    threads = [t for t in threading.enumerate() if t.name.startswith("WSGI_")]
    assert threads
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    sent: list[Message] = []

    async def receive() -> Message:
        return next(messages)

    async def send(message: Message) -> None:
        sent.append(message)

    await app({"type": "lifespan"}, receive, send)
    assert [m["type"] for m in sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]
    deadline = time.monotonic() + 10
    while any(t.is_alive() for t in app.pool.threads):
        assert time.monotonic() < deadline, "the pool's threads did not end"
        await asyncio.sleep(0.05)


# --- through a real portal on uvicorn

product = Flask(__name__)
HUNG_UP: dict[str, threading.Event] = {}  # the endless stream's close(), by the test's token


@product.get("/text")
def text() -> str:
    return "t" * 1000


@product.post("/digest")
def digest() -> dict[str, Any]:
    data = request.get_data()
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


@product.get("/environ")
def environ_view() -> dict[str, Any]:
    scope = request.environ["asgi.scope"]
    return {
        "script_name": request.environ["SCRIPT_NAME"],
        "path_info": request.environ["PATH_INFO"],
        "mount": scope["portal"]["mount"],
    }


@product.get("/endless")
def endless() -> Response:
    token = request.args["token"]

    def lines() -> Iterator[bytes]:
        try:
            while True:
                yield b"line\n" * 100
        finally:  # GeneratorExit from close(): the bridge stopped the stream
            HUNG_UP[token].set()

    return Response(lines(), mimetype="text/plain")


@pytest.fixture(scope="module")
def bridged_portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPortal]:
    mounts = '[[mount]]\npath = "/bridge"\napp = "tests.test_bridge:product"\nlevel = "public"\n'
    with serve(tmp_path_factory.mktemp("bridge"), mounts=mounts) as running:
        yield running


def raw_exchange(portal: RunningPortal, request_bytes: bytes) -> bytes:
    port = int(portal.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(request_bytes)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def test_real_server_head_and_get(bridged_portal: RunningPortal) -> None:
    with bridged_portal.client() as client:
        got = client.get("/bridge/text")
        head = client.head("/bridge/text")
    assert got.status_code == 200 and got.text == "t" * 1000
    assert head.status_code == 200
    assert head.headers["content-length"] == "1000"
    assert head.content == b""


def test_real_server_mount_environ(bridged_portal: RunningPortal) -> None:
    with bridged_portal.client() as client:
        seen = client.get("/bridge/environ").json()
    assert seen == {"script_name": "/bridge", "path_info": "/environ", "mount": "/bridge"}


def test_real_server_chunked_and_large_uploads(bridged_portal: RunningPortal) -> None:
    pieces = [b"alpha ", b"beta ", b"gamma"]
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    answer = raw_exchange(
        bridged_portal,
        b"POST /bridge/digest HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked,
    )
    assert hashlib.sha256(b"alpha beta gamma").hexdigest().encode() in answer
    large = bytes(range(256)) * (16 * 1024)  # 4 MiB: spooled to a file on the way
    with bridged_portal.client() as client:
        got = client.post(
            "/bridge/digest", content=large, headers={"content-type": "application/octet-stream"}
        )
    assert got.json() == {"size": len(large), "sha256": hashlib.sha256(large).hexdigest()}


def test_real_server_client_disconnect_closes_the_stream(bridged_portal: RunningPortal) -> None:
    token = "disconnect-test"
    HUNG_UP[token] = threading.Event()
    port = int(bridged_portal.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(f"GET /bridge/endless?token={token} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        received = b""
        while len(received) < 10_000:
            received += sock.recv(65536)
    assert received.startswith(b"HTTP/1.1 200")
    assert HUNG_UP[token].wait(20), "the product's stream was never closed"
