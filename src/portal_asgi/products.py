"""Products: import strings to ASGI apps. Flask and other WSGI apps go through the WSGI bridge
(`bridge.py`, built on a2wsgi), ASGI apps are mounted as they are, and a mixed mount sends HTTP to
one app and WebSockets to another."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import logging
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

from .bridge import WSGIBridge
from .exceptions import SettingsError
from .settings import MountSettings, Settings
from .types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("portal_asgi.products")


def import_object(reference: str) -> object:
    """`package.module:attribute` (attributes may be dotted), like uvicorn's import strings."""
    module_name, sep, attribute = reference.partition(":")
    if not sep or not module_name or not attribute:
        raise ImportError(f"{reference!r} is not of the form 'module:attribute'")
    module = importlib.import_module(module_name)
    value: object = module
    for part in attribute.split("."):
        value = getattr(value, part)
    return value


def is_wsgi(app: object) -> bool:
    """Flask apps (anything with `wsgi_app`) and plain WSGI callables are WSGI; coroutine
    functions and objects with an async `__call__` are ASGI."""
    if hasattr(app, "wsgi_app"):
        return True
    if inspect.iscoroutinefunction(app):
        return False
    call = type(app).__call__ if not inspect.isroutine(app) else None
    return not (call is not None and inspect.iscoroutinefunction(call))


# The bridge's limits when no mount gives them: the defaults of settings.py, in one place.
_DEFAULT_MOUNT = MountSettings(path="/", app="", level="public")


def as_asgi(app: object, mount: MountSettings = _DEFAULT_MOUNT) -> tuple[ASGIApp, bool]:
    """The app as ASGI, and whether it is native ASGI (whose lifespan the portal must run).
    A WSGI app goes through the bridge with the mount's thread count and body limits."""
    if not callable(app):
        raise TypeError("is not callable")
    if is_wsgi(app):
        bridge = WSGIBridge(
            cast(Any, app),
            threads=mount.threads,
            max_body_size=mount.max_body_size,
            body_timeout=mount.body_timeout,
        )
        return cast(ASGIApp, bridge), False
    return cast(ASGIApp, app), True


class MixedApp:
    """HTTP to `http`, WebSockets to `websocket`: one path, one level, two apps."""

    def __init__(self, http: ASGIApp, websocket: ASGIApp) -> None:
        self.http = http
        self.websocket = websocket

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await (self.websocket if scope["type"] == "websocket" else self.http)(scope, receive, send)


@dataclass(frozen=True, slots=True)
class Product:
    mount: MountSettings
    app: ASGIApp
    lifespan_apps: tuple[ASGIApp, ...]


def load_product(mount: MountSettings, file: str) -> Product:
    apps: list[ASGIApp] = []
    lifespans: list[ASGIApp] = []
    for key, reference in (("app", mount.app), ("websocket", mount.websocket)):
        if reference is None:
            continue
        try:
            obj = import_object(reference)
            app, native = as_asgi(obj, mount)
        except Exception as exc:
            problem = f"{reference!r} does not import: {type(exc).__name__}: {exc}"
            raise SettingsError(file, f"{mount.key}.{key}", problem) from exc
        if key == "websocket" and not native:
            raise SettingsError(file, f"{mount.key}.websocket", f"{reference!r} is not an ASGI app")
        apps.append(app)
        if native or isinstance(app, WSGIBridge):  # the bridge's lifespan stops its threads
            lifespans.append(app)
    app = apps[0] if len(apps) == 1 else MixedApp(apps[0], apps[1])
    return Product(mount, app, tuple(lifespans))


def load_products(settings: Settings) -> list[Product]:
    if settings.portal.app_dir not in sys.path:
        sys.path.insert(0, settings.portal.app_dir)
    products = [load_product(mount, settings.file) for mount in settings.mounts]
    # the longest path first: the router takes the first match, so nested mounts win
    return sorted(products, key=lambda p: len(p.mount.path), reverse=True)


@contextlib.asynccontextmanager
async def run_lifespans(apps: Sequence[ASGIApp]) -> AsyncIterator[None]:
    """Run each ASGI product's lifespan (Starlette's Mount does not forward it); apps that do
    not speak lifespan are left alone, one that fails its startup stops the portal's."""
    seen: set[int] = set()
    running: list[_Lifespan] = []
    try:
        for app in apps:
            if id(app) in seen:
                continue
            seen.add(id(app))
            lifespan = _Lifespan(app)
            if await lifespan.startup():
                running.append(lifespan)
        yield
    finally:
        for lifespan in reversed(running):
            await lifespan.shutdown()


class _Lifespan:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.incoming: asyncio.Queue[Message] = asyncio.Queue()
        self.outgoing: asyncio.Queue[Message | None] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        scope: dict[str, Any] = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        try:
            await self.app(scope, self.incoming.get, self._send)
        except Exception as exc:  # an app without lifespan support raises here
            logger.debug("product %r has no lifespan: %s", self.app, exc)
        finally:
            await self.outgoing.put(None)

    async def _send(self, message: Message) -> None:
        await self.outgoing.put(message)

    async def startup(self) -> bool:
        self.task = asyncio.create_task(self._run())
        await self.incoming.put({"type": "lifespan.startup"})
        reply = await self.outgoing.get()
        if reply is None:
            return False
        if reply["type"] == "lifespan.startup.failed":
            raise RuntimeError(f"a product failed to start: {reply.get('message', '')}")
        return True

    async def shutdown(self) -> None:
        await self.incoming.put({"type": "lifespan.shutdown"})
        await self.outgoing.get()
        if self.task is not None:
            await self.task
