"""The portal's refusals, in one place (the answers table of docs/architecture.md): 303 to login
for browsers, 401 JSON with `WWW-Authenticate` for everything else, 403 by Accept, 400 for
malformed paths. WebSocket handshakes are refused with the same status through
`websocket.http.response` when the server offers it, else closed before accept."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from .pages.frame import Frame
from .pages.templates import render_error
from .types import Receive, Scope, Send


def header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return ""


def wants_html(scope: Scope) -> bool:
    return "text/html" in header(scope, b"accept")


def is_browser(scope: Scope, accept: str | None = None) -> bool:
    """A browser navigation: GET or HEAD whose Accept names text/html (`*/*` alone is not one).
    `accept`: the (first) Accept header, when it was already read."""
    if scope.get("method") not in ("GET", "HEAD"):
        return False
    return "text/html" in (header(scope, b"accept") if accept is None else accept)


def full_path(scope: Scope) -> str:
    path = str(scope.get("path", "/"))
    query = scope.get("query_string", b"")
    return f"{path}?{query.decode('latin-1')}" if query else path


def response_headers(
    body: bytes, content_type: str, extra: list[tuple[bytes, bytes]] | None = None
) -> list[tuple[bytes, bytes]]:
    """The headers of the portal's own small answers (`send_response`)."""
    return [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        *(extra or []),
    ]


async def send_response(
    send: Send,
    status: int,
    body: bytes,
    content_type: str,
    extra: list[tuple[bytes, bytes]] | None = None,
    *,
    websocket: bool = False,
) -> None:
    prefix = "websocket.http.response" if websocket else "http.response"
    headers = response_headers(body, content_type, extra)
    await send({"type": f"{prefix}.start", "status": status, "headers": headers})
    await send({"type": f"{prefix}.body", "body": body})


@dataclass(frozen=True, slots=True)
class Prepared:
    """An HTTP answer made once, to be sent many times: its headers are final (the security
    headers included), no `send` wrapper adds any."""

    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes


async def send_prepared(send: Send, answer: Prepared) -> None:
    # a list of its own: a server or middleware may change the one it is handed
    start = {"type": "http.response.start", "status": answer.status, "headers": [*answer.headers]}
    await send(start)
    await send({"type": "http.response.body", "body": answer.body})


# The answer to a client that is not a browser and sent no credential the route accepts
UNAUTHORIZED_BODY = b'{"error": "authentication_required"}'
UNAUTHORIZED_HEADERS = [(b"www-authenticate", b'Bearer realm="portal"')]


async def refuse_websocket(scope: Scope, receive: Receive, send: Send, status: int) -> None:
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    if "websocket.http.response" in scope.get("extensions", {}):
        body = json.dumps({"error": _ERRORS.get(status, "refused")}).encode()
        await send_response(send, status, body, "application/json", websocket=True)
        # uvicorn's websockets-sansio logs a spurious "returned without completing handshake"
        # error when the app returns before the closed connection is noticed (Kludex/uvicorn
        # PR 3138); one turn of the event loop lets it notice first.
        await asyncio.sleep(0)
    else:
        await send({"type": "websocket.close", "code": 1008})


_ERRORS = {
    400: "bad_request",
    401: "authentication_required",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    429: "too_many_requests",
    431: "headers_too_large",
    500: "server_error",
    502: "bad_gateway",
    503: "unavailable",
    504: "gateway_timeout",
}
_TITLES = {
    400: ("Bad request", "This address is not one the portal accepts."),
    403: (
        "Not for your level",
        "Your level does not open this page. If you need it, ask the portal's administrator.",
    ),
    404: ("Not found", "There is nothing at this address."),
    405: ("Method not allowed", "This address does not answer that kind of request."),
    413: ("Too large", "That request was larger than the portal accepts."),
    429: ("Too many requests", "Too many requests at once. Please try again in a moment."),
    431: ("Headers too large", "That request carried more headers than the portal accepts."),
    500: ("Something went wrong", "The portal could not answer this request. Please try again."),
    502: ("Product unavailable", "This product did not answer. Please try again shortly."),
    503: ("Unavailable", "The portal cannot reach its database right now. Try again shortly."),
    504: ("Product too slow", "This product took too long to answer. Please try again."),
}


async def refuse(
    scope: Scope,
    receive: Receive,
    send: Send,
    status: int,
    *,
    title: str = "portal-asgi",
    detail: str | None = None,
    redirect: str | None = None,
    error: str | None = None,
    frame: Frame | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
    browser: bool | None = None,
) -> None:
    """Answer `status` in the form the client understands (HTML, JSON or a refused handshake).
    With `redirect`, a browser's navigation is sent there (303) instead; `error` is the JSON
    answer's code when not the status's usual one. With `frame`, an HTML page carries the
    portal's title and the signed-in user's header with their Sign-out form (pages/frame.py:
    no database work); without it, `title` alone. `headers` go along (a 405's `Allow`).
    `browser`: `is_browser(scope)`, when the caller already knows it."""
    if scope["type"] == "websocket":
        await refuse_websocket(scope, receive, send, status)
        return
    if (redirect is not None or status == 401) and browser is None:
        browser = is_browser(scope)
    if redirect is not None and browser:
        await send_response(send, 303, b"", "text/plain", [(b"location", redirect.encode())])
        return
    if status == 401:
        if browser:
            location = "/auth/login?next=" + quote(full_path(scope), safe="/")
            await send_response(send, 303, b"", "text/plain", [(b"location", location.encode())])
        else:
            body, extra = UNAUTHORIZED_BODY, UNAUTHORIZED_HEADERS
            await send_response(send, 401, body, "application/json", extra)
        return
    more = list(headers or ())
    if wants_html(scope):
        heading, text = _TITLES.get(status, ("Refused", "The portal refused this request."))
        context: dict[str, Any] = {"portal_title": title}
        if frame is not None:
            context, cookie = frame.context(scope)
            if cookie is not None:
                more.append((b"set-cookie", cookie.encode("latin-1")))
        page = render_error(status=status, heading=heading, text=detail or text, **context)
        await send_response(send, status, page.encode(), "text/html; charset=utf-8", more)
    else:
        body = json.dumps({"error": error or _ERRORS.get(status, "refused")}).encode()
        await send_response(send, status, body, "application/json", more)
