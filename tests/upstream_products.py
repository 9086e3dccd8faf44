"""Products served elsewhere, for the upstream tests (tests/test_upstream.py): each runs in a
process of its own, `starlette` on uvicorn and `wsgi` (Flask) on gunicorn, and the portal mounts
them with `upstream =`. Both check the portal's assertion with `portal_asgi.assertion` under
`/checked` (PORTAL_URL: the portal's address; UPSTREAM_MOUNT: the mount whose assertions they take).

    /healthz            200 (ready)
    /headers            the request's headers and path, as the product received them
    /big?size=N         N bytes, streamed in 64 KiB pieces
    /upload             (POST) the size of the body it read, a piece at a time
    /slow?seconds=S     answers after S seconds
    /redirect?to=URL    302 to URL
    /cookies            Set-Cookie: its own with Path and Domain, and one naming the portal's
    /ws?tag=T           (Starlette) echo; "close:CODE" closes with CODE; the close code it
                        got is kept for /closes?tag=T
    /checked/me         who the verified assertion says is calling
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

from flask import Flask, Response, jsonify, request
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, StreamingResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.types import ASGIApp
from starlette.websockets import WebSocket
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from portal_asgi.assertion import (
    AssertionMiddleware,
    Verifier,
    WSGIAssertionMiddleware,
    assertion_required,
)
from portal_asgi.flask import current_user

PIECE = 64 * 1024
PORTAL_URL = os.environ.get("PORTAL_URL", "http://127.0.0.1:8000")
MOUNT = os.environ.get("UPSTREAM_MOUNT", "/up")


def verifier() -> Verifier:
    return Verifier(f"{PORTAL_URL}/.well-known/jwks.json", audience=MOUNT, issuer=PORTAL_URL)


def pieces(size: int) -> Iterator[bytes]:
    block = b"x" * PIECE
    while size > 0:
        yield block[:size]
        size -= PIECE


# -- Starlette on uvicorn -------------------------------------------------------------------------

CLOSES: dict[str, int] = {}  # tag -> the close code the socket got (this process's only)


async def healthz(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def headers(request: Request) -> JSONResponse:
    return JSONResponse(
        {
            "headers": [
                [k.decode("latin-1"), v.decode("latin-1")] for k, v in request.scope["headers"]
            ],
            "path": request.url.path,
            "raw_path": request.scope.get("raw_path", b"").decode("latin-1"),
            "query": request.url.query,
        }
    )


async def big(request: Request) -> StreamingResponse:
    size = int(request.query_params.get("size", "0"))

    async def stream() -> AsyncIterator[bytes]:
        for piece in pieces(size):
            yield piece

    return StreamingResponse(
        stream(), media_type="application/octet-stream", headers={"content-length": str(size)}
    )


async def upload(request: Request) -> JSONResponse:
    size = 0
    async for piece in request.stream():
        size += len(piece)
    return JSONResponse({"size": size})


async def slow(request: Request) -> PlainTextResponse:
    await asyncio.sleep(float(request.query_params.get("seconds", "1")))
    return PlainTextResponse("late")


async def redirect(request: Request) -> RedirectResponse:
    return RedirectResponse(request.query_params["to"], status_code=302)


async def cookies(request: Request) -> PlainTextResponse:
    response = PlainTextResponse("cookies")
    response.raw_headers += [
        (b"set-cookie", b"own=1; Path=/base/area; Domain=127.0.0.1; HttpOnly"),
        (b"set-cookie", b"root=2; Path=/"),
        (b"set-cookie", b"portal_session=forged; Path=/"),
    ]
    return response


async def closes(request: Request) -> JSONResponse:
    return JSONResponse({"code": CLOSES.get(request.query_params["tag"])})


async def echo(websocket: WebSocket) -> None:
    offered = websocket.scope.get("subprotocols") or []
    await websocket.accept(subprotocol=offered[0] if offered else None)
    tag = websocket.query_params.get("tag", "")
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            CLOSES[tag] = int(message.get("code", 1000))
            return
        text = message.get("text")
        if text is not None and text.startswith("close:"):
            await websocket.close(int(text.split(":", 1)[1]), reason="asked to")
            return
        if text is not None:
            await websocket.send_text(text)
        else:
            await websocket.send_bytes(message.get("bytes") or b"")


async def checked_me(request: Request) -> JSONResponse:
    user = request.user
    return JSONResponse(
        {
            "username": user.identity,
            "name": user.display_name,
            "email": getattr(user, "email", ""),
            "level": getattr(user, "level", ""),
            "scopes": list(request.auth.scopes),
            "portal": request.scope.get("portal", {}),
            "x-portal-user": request.headers.get("x-portal-user"),
        }
    )


ROUTES = [
    Route("/healthz", healthz),
    Route("/headers{rest:path}", headers),
    Route("/big", big),
    Route("/upload", upload, methods=["POST", "PUT"]),
    Route("/slow", slow),
    Route("/redirect", redirect),
    Route("/cookies", cookies),
    Route("/closes", closes),
    WebSocketRoute("/ws", echo),
]
checked: ASGIApp = AssertionMiddleware(Starlette(routes=[Route("/me", checked_me)]), verifier())
starlette = Starlette(
    routes=[*ROUTES, Mount("/checked", app=checked), Mount("/base", routes=ROUTES)]
)


# -- Flask on gunicorn ----------------------------------------------------------------------------

flask = Flask(__name__)


@flask.get("/healthz")
def flask_healthz() -> str:
    return "ok"


@flask.get("/headers")
def flask_headers() -> Response:
    found = {k: v for k, v in request.environ.items() if k.startswith(("HTTP_", "CONTENT_"))}
    return jsonify({"environ": found, "path": request.path})


@flask.get("/big")
def flask_big() -> Response:
    size = int(request.args.get("size", "0"))
    return Response(
        pieces(size), mimetype="application/octet-stream", headers={"Content-Length": str(size)}
    )


@flask.route("/upload", methods=["POST"])
def flask_upload() -> Response:
    size = 0
    stream = request.stream
    while piece := stream.read(PIECE):
        size += len(piece)
    return jsonify({"size": size})


def _me() -> dict[str, Any]:
    user = current_user()
    assert user is not None
    return {
        "username": user.username,
        "level": user.level,
        "email": user.email,
        "x-portal-user": request.headers.get("X-Portal-User"),
    }


@flask.get("/decorated/me")
@assertion_required(verifier())
def flask_decorated() -> Response:
    return jsonify(_me())


checked_flask = Flask("checked")


@checked_flask.get("/me")
def flask_checked_me() -> Response:
    return jsonify(_me())


checked_flask.wsgi_app = WSGIAssertionMiddleware(checked_flask.wsgi_app, verifier())  # type: ignore[method-assign]
wsgi = DispatcherMiddleware(flask, {"/checked": checked_flask})
