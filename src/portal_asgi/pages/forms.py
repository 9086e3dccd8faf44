"""The portal's own management pages (`/account`, `/admin`): server-rendered forms that work
without JavaScript. What they share is here: a posted form read within a bound and its CSRF
token checked, a page answered (never cached, with the frame of every portal page and a CSRF
cookie when the browser holds none), a 303 back to the page with a notice after a change, and
the pages' refusals.

A change is a POST answered 303 to the page it came from, with `?done=<what>` naming one of
the page's fixed notices (never text from the request). A secret (a one-time password, an API
token) is shown in the answer to the POST itself, once, and never put in a URL or a cookie."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from ..admin.errors import AdminError, TooManyAttempts
from ..exceptions import DatabaseUnavailable
from ..runtime import Runtime
from ..user import PortalUser
from .context import frame_of, page_context
from .templates import render, render_error

logger = logging.getLogger("portal_asgi.admin")

MAX_FORM_BYTES = 16 * 1024
MAX_FIELDS = 20
NO_STORE = {"cache-control": "no-store"}
# The ends of a token's life offered by the forms that mint one (values as `check_ttl` reads).
TOKEN_LIFETIMES = (
    ("1d", "1 day"),
    ("7d", "7 days"),
    ("30d", "30 days"),
    ("90d", "90 days"),
    ("365d", "1 year"),
)


def client_address(request: Request) -> str:
    return request.client.host if request.client else ""


async def read_form(request: Request) -> dict[str, str] | None:
    """The posted text fields; None when the body is larger than MAX_FORM_BYTES. (The request
    path has read the body already, within `[security] max_body_size`.)"""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_FORM_BYTES:
        return None
    if len(await request.body()) > MAX_FORM_BYTES:
        return None
    form = await request.form(max_files=0, max_fields=MAX_FIELDS)
    return {key: value for key, value in form.items() if isinstance(value, str)}


def with_query(url: str, **params: str | int) -> str:
    """`url` with `params` added to its query (empty values left out)."""
    query = urlencode({key: value for key, value in params.items() if value not in ("", None)})
    if not query:
        return url
    return url + ("&" if "?" in url else "?") + query


class FormPages:
    """The base of a set of management pages over one running portal."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.frame = frame_of(runtime)

    def page(
        self, request: Request, template: str, *, status: int = 200, **context: Any
    ) -> HTMLResponse:
        """`template` with the frame of every portal page; a fresh CSRF cookie goes with it when
        the browser holds none, so that its forms always work."""
        values = page_context(self.runtime, request, **context)
        token, cookie = self.frame.csrf_token(request.scope)
        values["csrf_token"] = token
        response = HTMLResponse(render(template, **values), status_code=status, headers=NO_STORE)
        if cookie is not None:
            response.headers.append("set-cookie", cookie)
        return response

    def refusal(self, request: Request, status: int, heading: str, text: str) -> HTMLResponse:
        """A refusal as the portal's error page, in the frame of the signed-in user."""
        frame, cookie = self.frame.context(request.scope)
        body = render_error(status=status, heading=heading, text=text, **frame)
        response = HTMLResponse(body, status_code=status, headers=NO_STORE)
        if cookie is not None:
            response.headers.append("set-cookie", cookie)
        return response

    async def posted(self, request: Request) -> dict[str, str] | Response:
        """The fields of a posted form whose CSRF token is good, or the refusal to answer:
        413 for a form too large, 403 for a missing or wrong token (nothing was changed)."""
        fields = await read_form(request)
        if fields is None:
            return self.refusal(request, 413, "Too large", "That form was larger than allowed.")
        if not self.runtime.csrf.check(request.headers.get("cookie", ""), fields.get("csrf_token")):
            return self.refusal(
                request,
                403,
                "Form expired",
                "This form expired or did not come from this portal, so nothing was changed. "
                "Go back, reload the page and try again.",
            )
        return fields

    @staticmethod
    def back(url: str, done: str, **params: str | int) -> RedirectResponse:
        """303 to `url` (a path of this portal), with the notice `done` to show there."""
        return RedirectResponse(with_query(url, done=done, **params), 303, headers=NO_STORE)

    @staticmethod
    def notice(request: Request, notices: Mapping[str, str]) -> str:
        """The fixed text of the notice `?done=` names on this page, or ""."""
        return notices.get(request.query_params.get("done", ""), "")

    @staticmethod
    def user(request: Request) -> PortalUser:
        """The signed-in user (the route, or the page's own check, made sure there is one)."""
        user = request.scope.get("user")
        assert isinstance(user, PortalUser)
        return user

    def unavailable(self, request: Request) -> HTMLResponse:
        return self.refusal(
            request,
            503,
            "Unavailable",
            "The portal cannot reach its database right now. Try again shortly.",
        )

    async def handle(
        self,
        request: Request,
        run: Callable[[dict[str, str]], Awaitable[Response]],
        again: Again,
    ) -> Response:
        """A posted change: the form checked, then `run(fields)`. A refusal of the admin service
        shows the page again through `again(status, error)`, with the service's status (422
        for bad input, 409 for the last admin...) and what was wrong; nothing was changed."""
        fields = await self.posted(request)
        if isinstance(fields, Response):
            return fields
        try:
            return await run(fields)
        except TooManyAttempts as exc:
            response = await again(429, sentence(exc))
            response.headers["retry-after"] = str(exc.retry_after)
            return response
        except AdminError as exc:
            return await again(exc.status, sentence(exc))
        except DatabaseUnavailable as exc:
            logger.error("%s %s: database unavailable: %s", request.method, request.url.path, exc)
            return self.unavailable(request)


# shows the page again after a refused change: (status, what was wrong) -> the page
Again = Callable[[int, str], Awaitable[Response]]


# How the forms name the fields the service's refusals name (`Invalid.field`).
FIELDS = {
    "username": "Username",
    "email": "E-mail",
    "level": "Level",
    "password": "Password",
    "current_password": "Current password",
    "new_password": "New password",
    "label": "Label",
    "ttl": "Expires after",
    "confirm": "Confirm",
    "active": "State",
    "path": "Product",
    "since": "Since",
    "outcome": "Outcome",
}


def sentence(exc: AdminError) -> str:
    """The service's refusal as a sentence for a page, led by the field at fault."""
    text = exc.detail.strip()
    text = text if text.endswith((".", "!", "?")) else text + "."
    label = FIELDS.get(exc.field or "")
    return f"{label}: {text}" if label else text[:1].upper() + text[1:]
