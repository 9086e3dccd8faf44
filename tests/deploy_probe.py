"""A test-only product for tests/test_deploy.py: says which portal process answered and what the
portal told it about the request (scheme, client, forwarding headers)."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def probe(request: Request) -> JSONResponse:
    server = request.scope.get("server") or ("", 0)
    client = request.scope.get("client") or ("", 0)
    user = request.scope.get("user")
    return JSONResponse(
        {
            "port": server[1],  # which portal answered, behind a load balancer
            "scheme": request.url.scheme,
            "client": client[0],
            "user": getattr(user, "identity", ""),
            "x_forwarded_for": request.headers.get("x-forwarded-for", ""),
            "x_forwarded_proto": request.headers.get("x-forwarded-proto", ""),
        }
    )


app = Starlette(routes=[Route("/", probe)])
