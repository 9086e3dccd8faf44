"""Products: import strings to ASGI apps. Flask and other WSGI apps go through the WSGI bridge
(`bridge.py`, built on a2wsgi), ASGI apps are mounted as they are, a mixed mount sends HTTP to
one app and WebSockets to another, and an upstream mount relays both to a product served
elsewhere (`upstream/`)."""

from __future__ import annotations

import importlib
import inspect
import logging
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from .bridge import WSGIBridge
from .exceptions import SettingsError
from .settings import MountSettings, Settings
from .types import ASGIApp, Receive, Scope, Send

if TYPE_CHECKING:
    from .upstream import UpstreamKit

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


def load_product(mount: MountSettings, file: str, upstreams: UpstreamKit | None = None) -> Product:
    """`upstreams`: what upstream mounts need of a running portal; without it (the command line
    listing products) an upstream mount is listed and answers 503."""
    if mount.upstream is not None:
        if upstreams is None:
            return Product(mount, _not_served, ())
        from .upstream import UpstreamApp  # httpx2 and websockets, only for portals that use them

        upstream = UpstreamApp(mount, upstreams)
        return Product(mount, upstream, (upstream,))  # its lifespan opens and closes its client
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


async def _not_served(scope: Scope, receive: Receive, send: Send) -> None:
    from .answers import refuse

    if scope["type"] in ("http", "websocket"):
        await refuse(scope, receive, send, 503)


def load_products(settings: Settings, upstreams: UpstreamKit | None = None) -> list[Product]:
    if settings.portal.app_dir not in sys.path:
        sys.path.insert(0, settings.portal.app_dir)
    products = [load_product(mount, settings.file, upstreams) for mount in settings.mounts]
    # the longest path first: the router takes the first match, so nested mounts win
    return sorted(products, key=lambda p: len(p.mount.path), reverse=True)
