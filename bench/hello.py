"""The smallest products there are, for bench/request_bench.py: one route, `GET /hello`, answering
the text "hello". Each is served bare (`uvicorn bench.hello:starlette`, `bench.hello:flask_a2wsgi`)
and mounted in the portal (`app = "bench.hello:starlette"`, `"bench.hello:flask"`), so that what
a request costs beyond the bare product is the portal's own request path and nothing else.
"""

from __future__ import annotations

from typing import Any, cast

from a2wsgi import WSGIMiddleware
from flask import Flask
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route


async def _hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hello")


starlette = Starlette(routes=[Route("/hello", _hello)])

flask = Flask(__name__)


@flask.get("/hello")
def _flask_hello() -> tuple[str, int, dict[str, str]]:
    return "hello", 200, {"Content-Type": "text/plain; charset=utf-8"}


# a2wsgi as it comes, the bridge most ASGI servers would put a Flask app behind; its WSGIApp type
# wants an environ narrower than Flask's dict[str, Any]
flask_a2wsgi = WSGIMiddleware(cast(Any, flask))
