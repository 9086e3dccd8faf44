"""The request path. `RequestPath.__call__` is everything a request meets, in order; each step's
code is one import away (`middleware/`, `routes.py`, `access.py`). This is the one drawing of
it; the docs link here.

    uvicorn portal_asgi:app
      Portal                   lifespan: settings, database, change feed, product lifespans,
                               settings reload (reload.py: a new RequestPath swapped in)
        RequestPath
          1. inbound           one pass over the headers; the client's X-Portal-* dropped
          2. proxies           the real client and scheme, from trusted proxies only
          3. limits, paths     431 for too many or too large headers, 400 for ambiguous paths;
             host              a browser at another name than base_url's is sent there (307)
          4. identity          session cookie or Bearer -> scope["user"], scope["auth"]
          5. routes            one table: the portal's pages, or the mount with the longest path
                               and, inside it, the mount's rule with the longest path
          6. guard             the chosen route's rules: Origin of a WebSocket, cross-site
                               requests on the session cookie, a password to change first
                               (everywhere but /account), the level it requires now
          7. the answer        the page or the product, with the security headers of whoever
                               answers and the refreshed session cookie; open WebSockets stay
                               in the registry and are judged again (sockets.py)
          8. audit             the portal's refusals, rate-limited
          +  observe           around it all: the request id (X-Request-ID), the metrics, the
                               access line (observe.py)

A refusal answers at once with the status of the answers table (answers.py) and is audited.
Nothing here reads what a product wrote into the scope.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from .admin import service
from .admin.api import admin_api_routes
from .admin.pages import AdminPages
from .answers import (
    UNAUTHORIZED_BODY,
    UNAUTHORIZED_HEADERS,
    Prepared,
    is_browser,
    refuse,
    response_headers,
    send_prepared,
    send_response,
)
from .audit import ensure_log_handler
from .exceptions import PortalError
from .logs import access_log
from .middleware import inbound as incoming
from .middleware.denials import DENIALS, Denials
from .middleware.guard import Guard, Refusal, plain
from .middleware.headers import Outgoing, SecurityHeaders
from .middleware.hosts import Hosts
from .middleware.identity import BearerAuthenticator, Identity
from .middleware.limits import Limits
from .middleware.origins import Origins
from .middleware.paths import is_ambiguous
from .middleware.proxies import Proxies
from .observe import Observer, Seen, reason
from .oidc import ProviderBearer
from .pages.account import AccountPages
from .pages.auth import AuthPages
from .pages.catalogue import Catalogue
from .pages.context import frame_of
from .pages.frame import Frame
from .pages.metrics import MetricsPage
from .pages.oidc import OIDCPages
from .pages.system import SystemPages
from .products import Product
from .reload import Reloader, read_settings
from .routes import Route as PortalRoute
from .routes import RouteTable
from .runtime import Runtime, build_runtime, running
from .settings import RuleSettings, Settings
from .sockets import SocketSession
from .types import ASGIApp, Receive, Scope, Send

logger = logging.getLogger("portal_asgi")

NOT_SERVING = "The portal is not serving right now: it is starting or stopping. Try again shortly."


class RequestPath:
    def __init__(self, runtime: Runtime) -> None:
        settings = runtime.settings
        security = settings.security
        self.title = settings.portal.title
        self.frame = frame_of(runtime)  # refusal pages: the title, the user's header (answers.py)
        self.proxies = Proxies(security.trusted_proxies)
        self.hosts = Hosts(settings.portal.base_url, self.proxies)
        self.limits = Limits(
            max_body_size=security.max_body_size,
            max_headers=security.max_headers,
            max_header_size=security.max_header_size,
        )
        self.identity = Identity(
            codec=runtime.codec,
            directory=runtime.directory,
            levels=runtime.levels,
            cookie=runtime.cookie,
            idle_timeout=settings.auth.idle_timeout,
            bearer=_provider_bearer(runtime),
        )
        self.routes = build_routes(runtime)
        self.guard = Guard(
            levels=runtime.levels,
            origin=settings.portal.base_url,
            websocket_origins=Origins((settings.portal.base_url, *settings.websocket.origins)),
        )
        self.headers = SecurityHeaders(
            product_headers=security.product_headers,
            https=settings.https,
            hsts_max_age=security.hsts_max_age,
            form_targets=_form_targets(settings),
        )
        self.cookie_name = runtime.cookie.name.encode()
        self.unauthorized = _unauthorized(self.headers)
        self.denials = Denials(runtime.db, per_minute=security.audit_denials_per_minute)
        ensure_log_handler()
        self.observer = Observer(
            runtime.metrics, self.proxies, access_log=access_log(settings.logging)
        )

    async def __call__(self, scope: Scope, receive: Receive, server_send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return
        # 1-2. What arrived, and from whom: the client's own X-Portal-* and forwarding headers
        # are dropped; a trusted proxy's forwarding headers name the real client.
        inbound = incoming.read(scope)
        # what the metrics and the access line learn; before proxies.apply: see observe.py
        seen = self.observer.start(scope, inbound, server_send)
        send = seen.forward  # remembers the status (a bound method: cheaper than an object)
        try:
            if inbound.forwarded:  # else there is nothing a proxy could vouch for
                self.proxies.apply(scope, inbound)
            scope["headers"] = inbound.headers
            # 3. What cannot be read one way is refused before anything reads it.
            if self.limits.headers_refused(inbound):
                await self.refuse(scope, receive, seen, plain(431))
                return
            if is_ambiguous(scope):
                await self.refuse(scope, receive, seen, plain(400))
                return
            browser = is_browser(scope, inbound.accept)  # asked once (answers.py)
            # A browser's cookies belong to the name it used: at another name, it is sent to
            # base_url's before it could sign in where its session would not count.
            location = self.hosts.elsewhere(scope, inbound) if browser else None
            if location is not None:
                await self.hosts.send_there(Outgoing(send, self.headers, product=False), location)
                return
            # 4. Who is calling (anonymous when no credential is good); never a refusal itself.
            cookie = await self.identity.identify(scope, inbound)
            # 5-6. The route, and its rules at the level it requires now.
            route = seen.route = self.routes.match(scope["path"])
            required = route.required()
            refusal = self.guard.check(scope, route, required)
            if refusal is not None:
                await self.refuse(scope, receive, seen, refusal, browser)
                return
            # 7. The answer.
            if route.kind == "product":
                await self.product(route, required, scope, receive, send, cookie)
            elif route.kind == "page":
                await self.page(route, scope, receive, seen, cookie)
            elif route.kind == "bare":
                await self.to_slash(scope, receive, send)
            else:  # no route; a blocked rule path (404, as if absent); 400: unreadable for rules
                await self.refuse(scope, receive, seen, _unserved(route), browser)
        finally:
            self.observer.done(scope, seen)

    def product(
        self,
        route: PortalRoute,
        required: str,
        scope: Scope,
        receive: Receive,
        send: Send,
        cookie: bytes | None,
    ) -> Awaitable[None]:
        """The product's answer (to await: not a coroutine of its own, one frame less a request)."""
        root_path = scope.get("root_path", "")
        scope["app_root_path"] = scope.get("app_root_path", root_path)
        scope["root_path"] = root_path + route.path
        scope["portal"] = {"mount": route.path, "level": required}
        outgoing = Outgoing(
            send, self.headers, product=True, cookie=cookie, cookie_name=self.cookie_name
        )
        assert route.app is not None
        return self._answer(route.app, scope, receive, outgoing)

    async def page(
        self, route: PortalRoute, scope: Scope, receive: Receive, seen: Seen, cookie: bytes | None
    ) -> None:
        body = await self.limits.capped_body(scope, receive)
        if body is None:
            await self.refuse(scope, receive, seen, plain(413))
            return
        outgoing = Outgoing(
            seen.forward,
            self.headers,
            product=False,
            no_store=scope["path"].startswith("/auth/"),
            cookie=None if scope["path"].startswith("/static/") else cookie,
            cookie_name=self.cookie_name,
        )
        assert route.app is not None
        await self._answer(route.app, scope, body, outgoing)
        if outgoing.status in DENIALS:  # a page's own refusal (a failed sign-in, a 405...)
            recording = self.denials.record(scope, outgoing.status)
            if recording is not None:
                await recording

    async def _answer(self, app: ASGIApp, scope: Scope, receive: Receive, send: Outgoing) -> None:
        """Run the page or product; an error it lets out is logged here, and answered 500
        (never a traceback) when it had not started its answer."""
        try:
            await app(scope, receive, send.__call__)  # bound: cheaper to call than the object
        except ClientDisconnect:
            # the client left while the page or product read its body: nobody to answer and
            # nothing broken, and a traceback per dropped request would let anyone flood the log
            logger.debug("client left during %s %s", scope.get("method"), scope.get("path"))
        except Exception:
            logger.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if not send.status and scope["type"] == "http":
                await refuse(scope, receive, send, 500, title=self.title, frame=self.frame)

    async def to_slash(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A mount's bare path: 307 to its slash form (the method and body go along)."""
        query = scope.get("query_string", b"").decode("latin-1")
        target = scope["path"] + "/" + (f"?{query}" if query else "")
        outgoing = Outgoing(send, self.headers, product=False)
        if scope["type"] != "http":
            await refuse(scope, receive, outgoing, 404, title=self.title, frame=self.frame)
            return
        await send_response(outgoing, 307, b"", "text/plain", [(b"location", target.encode())])

    async def refuse(
        self,
        scope: Scope,
        receive: Receive,
        seen: Seen,
        refusal: Refusal,
        browser: bool | None = None,
    ) -> None:
        seen.refusal = reason(refusal)  # for the metrics (observe.py)
        if refusal.status == 401 and browser is False and scope["type"] == "http":
            # the most frequent refusal (anyone may flood it): its answer was made once
            await send_prepared(seen.forward, self.unauthorized)
            status = 401
        else:
            outgoing = Outgoing(seen.forward, self.headers, product=False)
            await refuse(
                scope,
                receive,
                outgoing,
                refusal.status,
                title=self.title,
                frame=self.frame,
                detail=refusal.text,
                redirect=refusal.redirect,
                error=refusal.error,
                browser=browser,
            )
            status = outgoing.status
        # by what was answered: a browser sent to sign in (303) is not a denial
        if status in DENIALS or refusal.event != "denied":
            recording = self.denials.record(scope, refusal.status, refusal.event, **refusal.detail)
            if recording is not None:  # None: past the audit's rate, counted only
                await recording


def _provider_bearer(runtime: Runtime) -> list[BearerAuthenticator]:
    """The provider's access tokens, tried after the portal's own API tokens."""
    if runtime.oidc is None:
        return []
    bearer = ProviderBearer(
        runtime.oidc, db=runtime.db, directory=runtime.directory, levels=runtime.levels
    )
    return [bearer]


def _form_targets(settings: Settings) -> tuple[str, ...]:
    """Where the portal's forms may post besides itself: the OIDC provider (its logout)."""
    oidc = settings.auth.oidc
    if oidc is None:
        return ()
    parts = urlsplit(oidc.issuer)
    return (f"{parts.scheme}://{parts.netloc}",) if parts.scheme and parts.netloc else ()


def build_routes(runtime: Runtime) -> RouteTable:
    mounts = []
    for product in runtime.products:
        path = product.mount.path

        def required(path: str = path) -> str:
            return runtime.policy.level(path)

        # open sockets are judged again with the same rule for as long as they stay open
        app = SocketSession(product.app, registry=runtime.sockets, required=required)
        rules = {
            rule.key: _rule_route(runtime, product, rule, required) for rule in product.mount.rules
        }
        mounts.append(
            PortalRoute("product", app, required, path=path, csrf=product.mount.csrf, rules=rules)
        )
    return RouteTable(
        pages=build_pages(runtime), catalogue_level=runtime.levels.lowest, mounts=mounts
    )


def _rule_route(
    runtime: Runtime, product: Product, rule: RuleSettings, mount: Callable[[], str]
) -> PortalRoute:
    """The route of one of a mount's rules. A blocked path is "missing" behind the mount's own
    level, as a path the product lacks would be; a raised one requires the higher of the rule's
    level and the mount's live level, for requests and for the sockets it opens."""
    settings = product.mount
    if rule.block:
        return PortalRoute(
            "missing", None, mount, path=settings.path, csrf=settings.csrf, rule=rule.path
        )
    rank, floor = runtime.levels.rank, rule.level or runtime.levels.highest

    def required() -> str:
        live = mount()
        return floor if rank(floor) > rank(live) else live

    app = SocketSession(product.app, registry=runtime.sockets, required=required)
    return PortalRoute(
        "product", app, required, path=settings.path, csrf=settings.csrf, rule=rule.path
    )


def _unauthorized(headers: SecurityHeaders) -> Prepared:
    """The JSON 401, as `answers.refuse` and `Outgoing` make it (tests/test_answers.py), made
    once: a refused flood should cost next to nothing."""
    made = response_headers(UNAUTHORIZED_BODY, "application/json", UNAUTHORIZED_HEADERS)
    final = headers.headers_for(made, product=False)
    return Prepared(401, tuple(final), UNAUTHORIZED_BODY)


def _unserved(route: PortalRoute) -> Refusal:
    if route.rule:  # a blocked path: the client sees a 404, the audit log the rule
        return Refusal(route.status, "rule.blocked", {"rule": route.rule})
    return plain(route.status)


def build_pages(runtime: Runtime) -> Starlette:
    """The portal's own pages. The route table has already chosen them and checked their level
    (the catalogue at `/` needs the lowest signed-in level)."""
    admin = service.Context.of(runtime)  # one for the API and the pages: one hashing pool
    routes: list[BaseRoute] = [
        *admin_api_routes(runtime, admin),  # first: /admin/api is the API's, whatever follows
        *AdminPages(runtime, admin).routes(),  # each checks the level itself (admin/pages.py)
        *AccountPages(runtime, admin).routes(),
        *(OIDCPages(runtime, runtime.oidc) if runtime.oidc else AuthPages(runtime)).routes(),
        *SystemPages(runtime).routes(),
        *MetricsPage(runtime).routes(),
        Route("/", Catalogue(runtime).endpoint, methods=["GET", "HEAD"]),
        Mount("/static", StaticFiles(packages=[("portal_asgi", "static")]), name="static"),
    ]
    pages = Starlette(
        routes=routes,
        exception_handlers={404: _answer, 405: _answer, 500: _server_error},
    )
    pages.state.runtime = runtime
    pages.state.title = runtime.settings.portal.title
    pages.state.frame = frame_of(runtime)
    return pages


async def _answer(request: Request, exc: Exception) -> Response:
    if isinstance(exc, HTTPException):  # a 405's `Allow` goes along
        allow = (exc.headers or {}).get("Allow")
        headers = [(b"allow", allow.encode("latin-1"))] if allow else []
        return _Refusal(exc.status_code, request.app.state.title, request.app.state.frame, headers)
    return _Refusal(500, request.app.state.title, request.app.state.frame)


async def _server_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, ClientDisconnect):  # the client left mid-body: see RequestPath._answer
        logger.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _Refusal(500, request.app.state.title, request.app.state.frame)


class _Refusal(Response):
    """A refusal from answers.py, as a Response for Starlette's exception handlers."""

    def __init__(
        self,
        status: int,
        title: str,
        frame: Frame | None = None,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        super().__init__(status_code=status)
        self._status = status
        self._title = title
        self._frame = frame
        self._extra = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await refuse(
            scope,
            receive,
            send,
            self._status,
            title=self._title,
            frame=self._frame,
            headers=self._extra,
        )


def build_app(runtime: Runtime) -> RequestPath:
    return RequestPath(runtime)


class Portal:
    """`portal_asgi:app`. Importing it touches nothing: settings are read, the database opened
    and products imported when the server sends the lifespan startup event."""

    def __init__(self, settings: Settings | str | os.PathLike[str] | None = None) -> None:
        self._source = settings
        self.runtime: Runtime | None = None  # the one in force: a settings reload replaces it
        self.reloader: Reloader | None = None  # also `runtime.reloader`
        self._app: ASGIApp | None = None

    def _install(self, runtime: Runtime, app: ASGIApp) -> None:
        """Put a runtime and its request path in service (at startup, and by a reload)."""
        self.runtime, self._app = runtime, app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = self._app
        if app is not None and scope["type"] != "lifespan":
            await app(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        else:
            await refuse(scope, receive, send, 503, detail=NOT_SERVING)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        message = await receive()
        assert message["type"] == "lifespan.startup"
        async with contextlib.AsyncExitStack() as stack:
            try:
                settings, seen = read_settings(self._source)
                runtime = build_runtime(settings)
                await stack.enter_async_context(running(runtime))
                self.reloader = Reloader(runtime, build=build_app, install=self._install, seen=seen)
                await stack.enter_async_context(self.reloader.running())
                runtime = self.reloader.runtime
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
