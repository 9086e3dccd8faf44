"""Slow and oversized request bodies against a public Flask mount of a real portal on uvicorn.

The attack: a WSGI bridge that hands a request to a thread before its body has arrived lets a
thread wait on a client. More slow-body connections than the mount has threads, each sending
`Content-Length: 1000` and 3 bytes, left every other user of that product unanswered (CWE-400,
the slowloris family, here on the body: OWASP ASVS 4.0.3 item 12.1.1 for the size limit)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask, request

from portal_asgi.exceptions import SettingsError
from portal_asgi.settings import load_settings

from ..servers import RunningPortal, serve, settings_text

THREADS = 10  # the bridge's default pool, which the slow clients outnumber
BODY_TIMEOUT = 4.0
MAX_BODY = 1000

# The mount behind the size limit: it records every call, to prove a refused body never
# reached it.
limited = Flask(__name__)
CALLS: list[str] = []
CALLS_LOCK = threading.Lock()


@limited.post("/upload")
def upload() -> dict[str, int]:
    with CALLS_LOCK:
        CALLS.append(request.path)
    return {"size": len(request.get_data())}


MOUNTS = f"""
[[mount]]
path = "/open"
app = "products.test.app:app"
level = "public"
body_timeout = "{BODY_TIMEOUT}s"

[[mount]]
path = "/limited"
app = "tests.security.test_slow_bodies:limited"
level = "public"
max_body_size = {MAX_BODY}
"""


@pytest.fixture(scope="module")
def body_portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPortal]:
    with serve(tmp_path_factory.mktemp("bodies"), mounts=MOUNTS) as running:
        yield running


def connect(portal: RunningPortal) -> socket.socket:
    port = int(portal.url.rsplit(":", 1)[1])
    return socket.create_connection(("127.0.0.1", port), timeout=20)


def read_answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


def calls() -> list[str]:
    with CALLS_LOCK:
        return list(CALLS)


def test_slow_bodies_do_not_starve_a_public_flask_mount(body_portal: RunningPortal) -> None:
    """More trickling bodies than the mount has threads: another user's GET is answered at
    once, while the slow ones still wait; they get 408 after body_timeout."""
    slow: list[socket.socket] = []
    try:
        for _ in range(THREADS + 2):
            sock = connect(body_portal)
            sock.sendall(
                b"POST /open/echo HTTP/1.1\r\nHost: portal\r\nContent-Type: text/plain\r\n"
                b"Content-Length: 1000\r\n\r\nabc"
            )
            slow.append(sock)
        started = time.monotonic()
        with body_portal.client() as client:
            answer = client.get("/open/whoami")
        took = time.monotonic() - started
        assert answer.status_code == 200, answer.text
        assert took < 2.0, f"the GET waited {took:.1f}s behind the slow bodies"
        for sock in slow:  # none has been answered yet: the GET did not wait for them
            sock.setblocking(False)
            with pytest.raises(BlockingIOError):
                sock.recv(1)
            sock.setblocking(True)
            sock.settimeout(BODY_TIMEOUT * 5)
        for sock in slow:
            reply = read_answer(sock)
            assert status_of(reply) == 408, reply[:200]
            assert b"connection: close" in reply.lower()
        assert time.monotonic() - started >= BODY_TIMEOUT * 0.9
    finally:
        for sock in slow:
            sock.close()


def test_body_over_max_body_size_is_refused_by_content_length(body_portal: RunningPortal) -> None:
    """RFC 9110 section 15.5.14: 413 from the declared length, before the body is sent."""
    before = len(calls())
    with connect(body_portal) as sock:
        sock.sendall(
            b"POST /limited/upload HTTP/1.1\r\nHost: portal\r\n"
            b"Content-Type: application/octet-stream\r\n"
            + f"Content-Length: {MAX_BODY + 1}\r\n\r\n".encode()
        )
        reply = read_answer(sock)  # answered and closed without a byte of the body
    assert status_of(reply) == 413, reply[:200]
    assert len(calls()) == before


def test_chunked_body_over_max_body_size_is_refused(body_portal: RunningPortal) -> None:
    before = len(calls())
    piece = b"x" * 400
    chunk = b"%x\r\n%s\r\n" % (len(piece), piece)
    with connect(body_portal) as sock:
        sock.sendall(
            b"POST /limited/upload HTTP/1.1\r\nHost: portal\r\n"
            b"Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
            + chunk * 3
            + b"0\r\n\r\n"
        )
        reply = read_answer(sock)
    assert status_of(reply) == 413, reply[:200]
    assert len(calls()) == before


def test_body_within_max_body_size_reaches_the_product(body_portal: RunningPortal) -> None:
    """The control: the same mount takes a body under the limit (so the 413s above are the
    limit's, not a broken mount's)."""
    with body_portal.client() as client:
        answer = client.post("/limited/upload", content=b"y" * MAX_BODY)
    assert answer.status_code == 200
    assert answer.json() == {"size": MAX_BODY}
    assert calls()[-1] == "/upload"


def test_mount_body_limits_in_settings(tmp_path: Path) -> None:
    file = tmp_path / "settings.toml"
    file.write_text(settings_text(tmp_path, mounts=MOUNTS))
    opened, limited_mount = load_settings(file, environ={}).mounts
    assert (opened.body_timeout, opened.max_body_size, opened.threads) == (
        4.0,
        10 * 1024 * 1024,
        10,
    )
    assert (limited_mount.body_timeout, limited_mount.max_body_size) == (30.0, MAX_BODY)
    file.write_text(settings_text(tmp_path, mounts=MOUNTS.replace("= 1000", "= -1")))
    with pytest.raises(SettingsError, match=r"mount\[2\]\.max_body_size: expected a whole number"):
        load_settings(file, environ={})
