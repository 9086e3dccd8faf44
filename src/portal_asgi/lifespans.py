"""The lifespans of the mounted products. Starlette's `Mount` does not forward lifespan events, so
the portal runs each ASGI product's (and each WSGI bridge's, whose shutdown stops its threads):
at startup for every mount, and one by one when a settings reload adds or removes a mount.

An app that does not speak lifespan is left alone. A product whose startup fails stops the
portal's own startup, and a reload that mounts it is refused (reload.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable
from typing import Any

from .types import ASGIApp, Message

logger = logging.getLogger("portal_asgi.products")


class LifespanFailed(RuntimeError):
    """A product answered `lifespan.startup.failed`, or did not answer in time."""


class Lifespan:
    """One product's lifespan, driven as a server drives it."""

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
        """True when the app runs a lifespan (then `shutdown` must follow), False when it has
        none; raises LifespanFailed when its startup failed."""
        self.task = asyncio.create_task(self._run(), name=f"portal-asgi lifespan {self.app!r}")
        await self.incoming.put({"type": "lifespan.startup"})
        reply = await self.outgoing.get()
        if reply is None:
            return False
        if reply["type"] == "lifespan.startup.failed":
            raise LifespanFailed(f"a product failed to start: {reply.get('message', '')}")
        return True

    async def shutdown(self) -> None:
        await self.incoming.put({"type": "lifespan.shutdown"})
        await self.outgoing.get()
        if self.task is not None:
            await self.task

    def abandon(self) -> None:
        """A startup that never answered: stop waiting for it."""
        if self.task is not None:
            self.task.cancel()


class Lifespans:
    """The products' lifespans that run now, each app once however many mounts share it."""

    def __init__(self) -> None:
        self._running: dict[int, Lifespan] = {}  # id(app) -> its lifespan, in start order

    def __contains__(self, app: object) -> bool:
        return id(app) in self._running

    async def start(self, apps: Iterable[ASGIApp], *, within: float | None = None) -> None:
        """Start the apps that do not run yet, in order. When one fails (or, with `within`,
        does not answer its startup within that many seconds), those this call started are shut down again and
        LifespanFailed is raised."""
        started: list[ASGIApp] = []
        try:
            for app in apps:
                if id(app) in self._running:
                    continue
                lifespan = Lifespan(app)
                try:
                    async with asyncio.timeout(within):
                        runs = await lifespan.startup()
                except TimeoutError:
                    lifespan.abandon()
                    raise LifespanFailed(
                        f"a product did not finish its startup within {within:g} s"
                    ) from None
                if runs:
                    self._running[id(app)] = lifespan
                    started.append(app)
        except BaseException:
            await self.stop(started)
            raise

    async def stop(self, apps: Iterable[ASGIApp]) -> None:
        """Shut down the lifespans of `apps` that run, the last started first."""
        ids = {id(app) for app in apps}
        for key in reversed([key for key in self._running if key in ids]):
            await self._running.pop(key).shutdown()

    async def stop_all(self) -> None:
        while self._running:
            key = next(reversed(self._running))
            await self._running.pop(key).shutdown()

    @contextlib.asynccontextmanager
    async def running(self, apps: Iterable[ASGIApp]) -> AsyncIterator[None]:
        """Start `apps`; on exit, shut down whatever runs then (also what a reload added)."""
        await self.start(apps)
        try:
            yield
        finally:
            await self.stop_all()
