"""The request path, top to bottom:

Portal                      lifespan: settings, database, change feed, product lifespans
  security_outer            SecurityHeaders, TrustedProxies, AuditDenials, RequestLimits
  PathCheck                 ambiguous paths answer 400 before routing
    Identity                cookie or Bearer -> scope["user"], scope["auth"]; X-Portal-* headers
      OriginCheck           WebSocket handshakes from a foreign Origin answer 403
      CrossSiteCheck        unsafe cross-site requests on the session cookie answer 403
        Starlette router    portal pages, then one Mount(path, LevelGuard(level, product))
                            per [[mount]], longest path first; inside each guard a
                            SocketSession keeps judging the sockets it let through
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from .answers import refuse
from .exceptions import PortalError
from .guard import LevelGuard
from .identity import Identity
from .oidc import ProviderBearer
from .origins import OriginCheck
from .pages.auth import AuthPages
from .pages.catalogue import Catalogue
from .pages.oidc import OIDCPages
from .pages.system import SystemPages
from .paths import PathCheck
from .runtime import Runtime, build_runtime, running
from .security import security_inner, security_outer
from .settings import Settings, load_settings
from .sockets import SocketSession
from .types import ASGIApp, Receive, Scope, Send

logger = logging.getLogger("portal_asgi")


def _guarded_route(path: str, endpoint: Any, level: str, runtime: Runtime) -> Route:
    app = Route(path, endpoint).app
    guard = LevelGuard(
        app,
        path=path,
        required=lambda: level,
        levels=runtime.levels,
        title=runtime.settings.portal.title,
    )
    return Route(path, guard, methods=["GET", "HEAD"])


def _live_level(runtime: Runtime, path: str) -> Callable[[], str]:
    return lambda: runtime.policy.level(path)


def routes(runtime: Runtime) -> list[BaseRoute]:
    title = runtime.settings.portal.title
    pages: list[BaseRoute] = [
        *(OIDCPages(runtime, runtime.oidc) if runtime.oidc else AuthPages(runtime)).routes(),
        *SystemPages(runtime).routes(),
        _guarded_route("/", Catalogue(runtime).endpoint, runtime.levels.lowest, runtime),
        Mount("/static", StaticFiles(packages=[("portal_asgi", "static")]), name="static"),
    ]
    # `/outer/inner` without its slash would match the Mount of `/outer`: every mount's bare
    # path redirects to its slash form, ahead of all mounts, so the router never picks the outer.
    redirects: list[BaseRoute] = [
        Route(product.mount.path, _to_slash, methods=["GET", "HEAD"])
        for product in runtime.products
    ]
    mounts: list[BaseRoute] = []
    for product in runtime.products:  # already longest path first
        path = product.mount.path
        required = _live_level(runtime, path)
        guard = LevelGuard(
            # open sockets are judged again with the same rule, for as long as they stay open
            SocketSession(product.app, registry=runtime.sockets, required=required),
            path=path,
            required=required,
            levels=runtime.levels,
            title=title,
        )
        mounts.append(Mount(path, app=guard))
    return [*pages, *redirects, *mounts]


async def _to_slash(request: Request) -> Response:
    query = request.url.query
    target = request.url.path + "/" + (f"?{query}" if query else "")
    return RedirectResponse(target, status_code=307)


async def _not_found(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    return _AnswerResponse(status)


async def _server_error(request: Request, exc: Exception) -> Response:
    logger.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _AnswerResponse(500)


class _AnswerResponse(Response):
    """A refusal from answers.py, as a Response for Starlette's exception handlers."""

    def __init__(self, status: int) -> None:
        super().__init__(status_code=status)
        self._status = status

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await refuse(scope, receive, send, self._status)


def _websocket_origins(runtime: Runtime) -> tuple[str, ...]:
    return (runtime.settings.portal.base_url, *runtime.settings.websocket.origins)


def build_app(runtime: Runtime) -> Starlette:
    identity: dict[str, Any] = {
        "codec": runtime.codec,
        "directory": runtime.directory,
        "levels": runtime.levels,
        "cookie": runtime.cookie,
        "idle_timeout": runtime.settings.auth.idle_timeout,
    }
    if runtime.oidc is not None:  # the provider's access tokens, after the portal's own
        identity["bearer"] = [
            ProviderBearer(
                runtime.oidc, db=runtime.db, directory=runtime.directory, levels=runtime.levels
            )
        ]
    app = Starlette(
        routes=routes(runtime),
        middleware=[
            *security_outer(runtime),  # headers, proxies, audit of denials, limits
            Middleware(PathCheck),
            Middleware(Identity, **identity),
            Middleware(OriginCheck, allowed=_websocket_origins(runtime)),
            *security_inner(runtime),  # cross-site request blocking
        ],
        exception_handlers={404: _not_found, 405: _not_found, 500: _server_error},
    )
    app.state.runtime = runtime
    return app


class Portal:
    """`portal_asgi:app`. Importing it touches nothing: settings are read, the database opened
    and products imported when the server sends the lifespan startup event."""

    def __init__(self, settings: Settings | str | os.PathLike[str] | None = None) -> None:
        self._source = settings
        self.runtime: Runtime | None = None
        self._app: ASGIApp | None = None

    def _settings(self) -> Settings:
        if isinstance(self._source, Settings):
            return self._source
        return load_settings(self._source)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if self._app is None:
            await refuse(scope, receive, send, 503)
            return
        await self._app(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        message = await receive()
        assert message["type"] == "lifespan.startup"
        async with contextlib.AsyncExitStack() as stack:
            try:
                runtime = build_runtime(self._settings())
                await stack.enter_async_context(running(runtime))
                self.runtime, self._app = runtime, build_app(runtime)
            except (PortalError, ValueError, RuntimeError, OSError) as exc:
                logger.error("portal-asgi could not start: %s", exc)
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                return
            logger.info(
                "portal-asgi serving %d products at %s",
                len(runtime.products),
                runtime.settings.portal.base_url,
            )
            await send({"type": "lifespan.startup.complete"})
            message = await receive()
            self._app = None
        await send({"type": "lifespan.shutdown.complete"})
