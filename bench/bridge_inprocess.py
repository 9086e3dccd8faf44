"""Where a WSGI request's time goes, without a network: the Flask test product's `GET /whoami`
called directly as WSGI, through plain a2wsgi and through the portal's bridge, each driven by a
minimal in-process ASGI "server" on uvloop, one request at a time. Counts the loop wake-ups from
threads (`call_soon_threadsafe`) per request as well. Usage:
`python bench/bridge_inprocess.py [--requests 5000]`; `make bench` runs it.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any, cast

import uvloop
from a2wsgi import WSGIMiddleware
from common import ROOT

from portal_asgi.products import as_asgi
from portal_asgi.types import ASGIApp, Message

sys.path.insert(0, str(ROOT))  # the products package lives at the top of the repository
from products.test.app import app as flask

SCOPE: dict[str, Any] = {
    "type": "http",
    "asgi": {"version": "3.0"},
    "http_version": "1.1",
    "method": "GET",
    "scheme": "http",
    "path": "/whoami",
    "raw_path": b"/whoami",
    "root_path": "",
    "query_string": b"",
    "headers": [(b"host", b"127.0.0.1"), (b"accept", b"application/json")],
    "server": ("127.0.0.1", 8000),
    "client": ("127.0.0.1", 50000),
}


async def one(app: ASGIApp) -> None:
    sent: list[Message] = []
    delivered = False

    async def receive() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()  # pragma: no cover - only a disconnect would come
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(dict(SCOPE), receive, send)
    assert sent[0]["status"] == 200, sent


async def through(app: ASGIApp, count: int) -> tuple[list[float], float]:
    """µs a request, and loop wake-ups from other threads a request."""
    loop = asyncio.get_running_loop()
    original = loop.call_soon_threadsafe
    crossings = 0

    def counting(callback: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal crossings
        crossings += 1
        return original(callback, *args, **kwargs)

    for _ in range(200):  # warm-up: threads started, code paths hot
        await one(app)
    loop.call_soon_threadsafe = counting  # type: ignore[method-assign,assignment]
    samples: list[float] = []
    try:
        for _ in range(count):
            started = time.perf_counter_ns()
            await one(app)
            samples.append((time.perf_counter_ns() - started) / 1000)
    finally:
        loop.call_soon_threadsafe = original  # type: ignore[method-assign]
    return samples, crossings / count


def direct(count: int) -> list[float]:
    """The Flask app alone, called as WSGI in this thread: the floor for any bridge."""
    from a2wsgi.wsgi import build_environ

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        return None

    samples: list[float] = []
    for _ in range(200 + count):
        started = time.perf_counter_ns()
        environ = cast(dict[str, Any], build_environ(cast(Any, dict(SCOPE)), cast(Any, None)))
        iterable = flask(environ, start_response)
        b"".join(iterable)
        getattr(iterable, "close", lambda: None)()
        samples.append((time.perf_counter_ns() - started) / 1000)
    return samples[200:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=5000, help="requests a variant (5000)")
    args = parser.parse_args()
    bridge, _ = as_asgi(flask)
    variants: list[tuple[str, Callable[[], Any]]] = [
        ("a2wsgi", lambda: through(cast(ASGIApp, WSGIMiddleware(cast(Any, flask))), args.requests)),
        ("bridge", lambda: through(bridge, args.requests)),
    ]
    floor = statistics.median(direct(args.requests))
    print(f"{args.requests} sequential GET /whoami in-process on uvloop; medians\n")
    print("| path | µs a request | over the bare WSGI call | loop wake-ups from threads |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| Flask called directly as WSGI | {floor:.0f} | | 0 |")
    for name, run in variants:
        samples, crossings = uvloop.run(run())
        median = statistics.median(samples)
        print(f"| {name} | {median:.0f} | {median - floor:.0f} | {crossings:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
