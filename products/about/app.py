"""A public page: open without signing in."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route


async def about(request: Request) -> Response:
    return HTMLResponse(
        """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>About</title>
<link rel="stylesheet" href="/static/portal.css"></head><body><main class="narrow">
<section class="card"><h1>About this portal</h1>
<p>Our group's tools live here. Some are public; most need an account.</p>
<p><a class="button primary" href="/auth/login">Sign in</a></p></section></main></body></html>"""
    )


app = Starlette(routes=[Route("/", about)])
