"""A public page: open without signing in. It offers "Sign in" to a visitor, and to someone
already signed in their name and the way back to their products instead."""

from __future__ import annotations

from html import escape

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>About</title>
<link rel="stylesheet" href="/static/portal.css"></head><body><main class="narrow">
<section class="card"><h1>About this portal</h1>
<p>Our group's tools live here. Some are public; most need an account.</p>
{action}</section></main></body></html>"""

VISITOR = '<p><a class="button primary" href="/auth/login">Sign in</a></p>'
SIGNED_IN = (
    '<p class="muted">You are signed in as <strong>{name}</strong>.</p>'
    '<p><a class="button primary" href="/">Your products</a></p>'
)


async def about(request: Request) -> Response:
    # the portal puts who is calling in the scope, signed in or not (a public mount too)
    user = request.scope.get("user")
    if user is not None and user.is_authenticated:
        action = SIGNED_IN.format(name=escape(user.display_name))
    else:
        action = VISITOR
    return HTMLResponse(PAGE.format(action=action))


app = Starlette(routes=[Route("/", about)])
