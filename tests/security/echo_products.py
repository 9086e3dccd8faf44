"""Test-only products that echo every request header they receive: one WSGI (Flask, where
`X_Portal_User` and `X-Portal-User` would both become HTTP_X_PORTAL_USER) and one ASGI."""

from __future__ import annotations

from flask import Flask, Response, jsonify, request
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

wsgi = Flask(__name__)


@wsgi.route("/", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
@wsgi.route("/<path:rest>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
def echo(rest: str = "") -> Response:
    environ = {k: str(v) for k, v in request.environ.items() if k.startswith("HTTP_")}
    response = jsonify(
        {
            "environ": environ,
            "root": request.script_root,  # the mount that answered
            "remote_addr": request.remote_addr,
            "scheme": request.scheme,
            "body": request.get_data(as_text=True),
        }
    )
    response.headers["X-Frame-Options"] = "SAMEORIGIN"  # a product's own header: kept as is
    return response


@wsgi.get("/cacheable")
def cacheable() -> Response:
    """A page a product lets shared caches keep: the portal must not put a cookie on it."""
    response = jsonify({"cacheable": True})
    response.headers["Cache-Control"] = "public, max-age=600"
    return response


async def echo_asgi(request: Request) -> JSONResponse:
    return JSONResponse(
        {
            "headers": [
                [k.decode("latin-1"), v.decode("latin-1")] for k, v in request.scope["headers"]
            ],
            "root": request.scope.get("portal", {}).get("mount", ""),
            "client": request.client.host if request.client else "",
            "body": (await request.body()).decode("utf-8", "replace"),
        }
    )


asgi = Starlette(
    routes=[Route("/{rest:path}", echo_asgi, methods=["GET", "POST", "PUT", "PATCH", "DELETE"])]
)
