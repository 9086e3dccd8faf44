"""A plain Starlette product: reads `request.user` and `request.auth.scopes` that the portal sets."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

state: dict[str, bool] = {"started": False}


async def home(request: Request) -> Response:
    user = request.user
    scopes = ", ".join(request.auth.scopes) if hasattr(request, "auth") else ""
    return HTMLResponse(
        f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Dashboard</title>
<link rel="stylesheet" href="/static/portal.css"></head><body><main class="narrow">
<section class="card"><h1>Dashboard</h1>
<p>Signed in as <strong>{user.display_name}</strong>.</p>
<p class="muted">Scopes: {scopes}</p><p><a href="/">Back to the portal</a></p>
</section></main></body></html>"""
    )


async def me(request: Request) -> Response:
    user = request.user
    return JSONResponse(
        {
            "authenticated": user.is_authenticated,
            "identity": user.identity if user.is_authenticated else "",
            "scopes": list(request.auth.scopes),
            "portal": request.scope.get("portal", {}),
            "lifespan_ran": state["started"],
        }
    )


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    state["started"] = True  # proves the portal runs product lifespans
    yield
    state["started"] = False


app = Starlette(routes=[Route("/", home), Route("/me", me)], lifespan=lifespan)
