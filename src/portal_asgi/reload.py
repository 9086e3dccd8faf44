"""Settings reload without a restart, in each worker on its own.

    triggers        SIGHUP to the worker, the file changing on disk (polled every 2 s), the
                    admin area (`await runtime.reloader.reload()`)
    read            the file again, checked in full: `load_settings`, new products imported,
                    keys that need a restart refused (changes.py)
    prepare         the products of new or changed mounts loaded and their lifespans started;
                    everything else (database, directory and change feed, signing keys,
                    identity provider, socket registry, lifespans already running) is reused
    swap            one assignment each, with no await in between: the mounts' levels in the
                    shared policy, and the Portal's route table and pages (a new `RequestPath`
                    over a new `Runtime`). A request already inside the old one finishes there;
                    the next one meets the new one.
    retire          sockets on a removed or replaced product closed (1012); its requests
                    drained (up to `DRAIN_TIMEOUT`), then its lifespan shut down

A file that fails any step is refused: the error (file, key, problem) is logged and kept in
`state`, whatever was started for it is stopped, and the running configuration keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import hashlib
import logging
import os
import signal
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from .changes import Changes, compare, refuse_restart_only, same_app
from .exceptions import SettingsError
from .lifespans import LifespanFailed
from .products import Product, load_product
from .runtime import Runtime
from .settings import Settings, load_settings, settings_file
from .types import ASGIApp, Receive, Scope, Send

if TYPE_CHECKING:
    from .upstream import UpstreamKit

logger = logging.getLogger("portal_asgi.reload")

Trigger = Literal["startup", "signal", "file", "admin"]
WATCH_INTERVAL = 2.0  # seconds between two looks at the file
SETTLE = 0.2  # a file seen changing is read once it stayed the same this long (half-written)
STARTUP_TIMEOUT = 60.0  # a new product's lifespan startup, before the reload is refused
DRAIN_TIMEOUT = 30.0  # requests still inside an unmounted product, before its shutdown


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """What the file looked like: its stat (cheap to compare) and a hash of its content."""

    stat: tuple[int, int, int]  # mtime_ns, size, inode
    digest: str  # "" for a file that could not be read


MISSING = Fingerprint((0, 0, 0), "")


def fingerprint(file: str, last: Fingerprint | None = None) -> Fingerprint:
    """The file's fingerprint; `last` when its stat did not change (the content is not read)."""
    try:
        stat = os.stat(file)
        key = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if last is not None and last.stat == key:
            return last
        with open(file, "rb") as stream:
            return Fingerprint(key, hashlib.sha256(stream.read()).hexdigest())
    except OSError:
        return MISSING


def read_settings(source: Settings | str | os.PathLike[str] | None) -> tuple[Settings, Fingerprint]:
    """The settings a portal starts from, and the file's fingerprint taken just before it was
    read: a change made while the portal starts is seen by the first look at the file."""
    if isinstance(source, Settings):
        return source, fingerprint(source.file)
    file = settings_file(source)
    seen = fingerprint(file)
    return load_settings(file), seen


@dataclass(frozen=True, slots=True)
class ReloadResult:
    """One reload: applied (with what changed, maybe nothing) or refused (with the error)."""

    applied: bool
    trigger: Trigger
    at: dt.datetime  # UTC
    changes: Changes = field(default_factory=Changes)
    error: str = ""  # "file: key: problem" when refused

    def as_json(self) -> dict[str, Any]:
        return {
            "applied": self.applied,
            "trigger": self.trigger,
            "at": self.at.isoformat(),
            "changes": self.changes.as_json(),
            "error": self.error or None,
        }


@dataclass(frozen=True, slots=True)
class ReloadState:
    """This worker's settings, for the admin area. Each worker reloads on its own: another
    worker's state may differ for the few seconds until it has seen the same file."""

    file: str  # the settings file in force, absolute
    worker: int  # the process id of the worker that answers
    generation: int  # 1 at startup, one more at each applied reload
    loaded_at: dt.datetime  # when the configuration in force was read (UTC)
    loaded_by: Trigger  # "startup", or what triggered the reload that applied it
    changes: Changes | None = None  # what the last applied reload changed; None before one
    last_error: str | None = None  # the last refused reload's error, kept after later successes
    last_error_at: dt.datetime | None = None
    failing: bool = False  # the last attempt was refused: the file is not what serves

    def as_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "worker": self.worker,
            "generation": self.generation,
            "loaded_at": self.loaded_at.isoformat(),
            "loaded_by": self.loaded_by,
            "changes": self.changes.as_json() if self.changes is not None else None,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at.isoformat() if self.last_error_at else None,
            "failing": self.failing,
        }


class Tracked:
    """A mounted product's app, counting the requests and sockets inside it, so that a product
    a reload unmounts is shut down only once they are done. `app` is the product's own."""

    __slots__ = ("_idle", "active", "app")

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.active = 0
        self._idle: asyncio.Event | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1
            if not self.active and self._idle is not None:
                self._idle.set()

    async def idle(self) -> None:
        while self.active:
            self._idle = asyncio.Event()
            await self._idle.wait()


def _tracked(product: Product) -> Product:
    if isinstance(product.app, Tracked):
        return product
    return dataclasses.replace(product, app=Tracked(product.app))


class Reloader:
    """Reloads one worker's settings. `build` makes the request path for a runtime;
    `install(runtime, app)` puts both in service (the Portal's)."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        build: Callable[[Runtime], ASGIApp],
        install: Callable[[Runtime, ASGIApp], None],
        seen: Fingerprint | None = None,
        interval: float = WATCH_INTERVAL,
    ) -> None:
        self._build = build
        self._install = install
        self.file = runtime.settings.file
        self.interval = interval
        self._seen = seen if seen is not None else fingerprint(self.file)
        self._lock = asyncio.Lock()  # one reload at a time
        self._wake = asyncio.Event()
        self._signalled = False
        self._stopping = asyncio.Event()
        self._retiring: set[asyncio.Task[None]] = set()
        products = tuple(_tracked(product) for product in runtime.products)
        self.runtime = dataclasses.replace(runtime, products=products, reloader=self)
        self._state = ReloadState(
            file=os.path.abspath(self.file),
            worker=os.getpid(),
            generation=1,
            loaded_at=_now(),
            loaded_by="startup",
        )

    @property
    def state(self) -> ReloadState:
        return self._state

    async def reload(self, trigger: Trigger = "admin") -> ReloadResult:
        """Read the file again and apply it, or refuse it and keep serving what runs."""
        async with self._lock:
            seen = fingerprint(self.file)
            try:
                changes = await self._apply(trigger)
            except SettingsError as exc:
                result = self._refused(trigger, str(exc))
            except Exception as exc:  # a product or a part that failed in a way nobody foresaw
                logger.exception("settings reload from %s failed", self.file)
                result = self._refused(trigger, f"{self.file}: (reload): {exc!r}")
            else:
                result = ReloadResult(True, trigger, self._state.loaded_at, changes)
            self._seen = seen
            return result

    def _refused(self, trigger: Trigger, error: str) -> ReloadResult:
        logger.error(
            "settings reload refused (%s), the running configuration stays: %s", trigger, error
        )
        at = _now()
        self._state = dataclasses.replace(
            self._state, last_error=error, last_error_at=at, failing=True
        )
        return ReloadResult(False, trigger, at, error=error)

    async def _apply(self, trigger: Trigger) -> Changes:
        if self._stopping.is_set():
            raise SettingsError(self.file, "(reload)", "the portal is shutting down")
        old = self.runtime
        settings = load_settings(self.file)
        refuse_restart_only(old.settings, settings)
        changes = compare(old.settings, settings)
        kit = old.upstreams  # upstream mounts loaded from now on show the new title
        if kit is not None and kit.title != settings.portal.title:
            kit = dataclasses.replace(kit, title=settings.portal.title)
        products, fresh = self._products(old.products, settings, kit)
        runtime = dataclasses.replace(old, settings=settings, products=products, upstreams=kit)
        started = await self._start(fresh)
        try:
            app = self._build(runtime)
            if self._stopping.is_set():
                raise SettingsError(self.file, "(reload)", "the portal is shutting down")
        except BaseException:
            await old.lifespans.stop(started)
            raise
        # The swap: nothing awaited from here on, so no request sees half of it.
        old.policy.configure(settings.mounts)
        self._install(runtime, app)
        self.runtime = runtime
        self._state = dataclasses.replace(
            self._state,
            generation=self._state.generation + 1,
            loaded_at=_now(),
            loaded_by=trigger,
            changes=changes,
            failing=False,
        )
        self._retire(old.products, runtime)
        runtime.sockets.recheck()  # open sockets under the new levels
        # at warning, as other changes of what serves: seen at uvicorn's default log level
        logger.warning("settings reloaded from %s (%s): %s", self.file, trigger, changes.summary())
        return changes

    def _products(
        self, running: Iterable[Product], settings: Settings, upstreams: UpstreamKit | None
    ) -> tuple[tuple[Product, ...], list[Product]]:
        """The products for `settings`: a mount whose app did not change keeps its running
        product; the others are loaded (imported: a module imported before is not read again).
        Also those loaded, whose lifespans must start."""
        by_path = {product.mount.path: product for product in running}
        products: list[Product] = []
        fresh: list[Product] = []
        for mount in settings.mounts:
            before = by_path.get(mount.path)
            if before is not None and same_app(before.mount, mount):
                products.append(dataclasses.replace(before, mount=mount))
            else:
                product = _tracked(load_product(mount, settings.file, upstreams))
                products.append(product)
                fresh.append(product)
        # as load_products orders them
        products.sort(key=lambda product: len(product.mount.path), reverse=True)
        return tuple(products), fresh

    async def _start(self, fresh: list[Product]) -> list[ASGIApp]:
        """Start the lifespans of newly loaded products; on a failure, stop those started and
        refuse, naming the mount."""
        lifespans = self.runtime.lifespans
        started: list[ASGIApp] = []
        for product in fresh:
            apps = [app for app in product.lifespan_apps if app not in lifespans]
            try:
                await lifespans.start(apps, within=STARTUP_TIMEOUT)
            except LifespanFailed as exc:
                await lifespans.stop(started)
                raise SettingsError(self.file, f"{product.mount.key}.app", str(exc)) from exc
            except BaseException:
                await lifespans.stop(started)
                raise
            started += apps
        return started

    def _retire(self, running: Iterable[Product], runtime: Runtime) -> None:
        """Products the new runtime no longer uses: close their sockets now; shut down their
        lifespans once their requests are done."""
        kept = {id(product.app) for product in runtime.products}
        leaving = [product for product in running if id(product.app) not in kept]
        if not leaving:
            return
        runtime.sockets.end_mounts({product.mount.path for product in leaving})
        task = asyncio.create_task(self._drain(leaving), name="portal-asgi product retire")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _drain(self, leaving: list[Product]) -> None:
        busy = [product.app for product in leaving if isinstance(product.app, Tracked)]
        if any(app.active for app in busy):
            waits: list[asyncio.Future[Any]] = [
                asyncio.gather(*(app.idle() for app in busy)),
                asyncio.ensure_future(self._stopping.wait()),  # the portal stops: no waiting
            ]
            await asyncio.wait(waits, timeout=DRAIN_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
            for wait in waits:
                wait.cancel()
            late = [p.mount.path for p in leaving if isinstance(p.app, Tracked) and p.app.active]
            if late:
                logger.warning("shutting down unmounted products still answering: %s", late)
        async with self._lock:  # not while a reload starts the same app again
            used = {id(app) for product in self.runtime.products for app in product.lifespan_apps}
            apps = [app for p in leaving for app in p.lifespan_apps if id(app) not in used]
            await self.runtime.lifespans.stop(apps)

    async def _watch(self, files: bool) -> None:
        """Reload on SIGHUP and, with `files`, when the file's content changes (or the file is
        touched while the last reload was refused: a retry)."""
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._wake.wait()
            self._wake.clear()
            if self._stopping.is_set():
                return
            try:
                if self._signalled:
                    self._signalled = False
                    await self.reload("signal")
                elif files and await self._changed() and not self._stopping.is_set():
                    await self.reload("file")
            except Exception:  # the watch must outlive anything a reload lets out
                logger.exception("settings watch")

    async def _changed(self) -> bool:
        now = fingerprint(self.file, self._seen)
        if now == self._seen:
            return False
        if now.digest == self._seen.digest and not self._state.failing:
            self._seen = now  # touched, same content, and it serves: nothing to do
            return False
        await asyncio.sleep(SETTLE)  # an editor still writing: wait for the next look
        return fingerprint(self.file, now) == now

    def _signal(self) -> None:
        self._signalled = True
        self._wake.set()

    def _listen(self) -> bool:
        """SIGHUP reloads. Only a server's main thread can take signals (not a server run in a
        thread, as tests do), and not on Windows."""
        if not hasattr(signal, "SIGHUP"):
            return False
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._signal)
        except (RuntimeError, ValueError, NotImplementedError) as exc:
            logger.debug("no reload on SIGHUP here: %s", exc)
            return False
        return True

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Reloader]:
        """Put the first runtime in service, then watch for triggers until the portal stops."""
        self._install(self.runtime, self._build(self.runtime))
        listening = self._listen()
        files = self.runtime.settings.portal.watch_settings
        watcher = asyncio.create_task(self._watch(files), name="portal-asgi settings watch")
        try:
            yield self
        finally:
            # before any await: a reload still preparing sees it and does not install
            self._stopping.set()
            self._wake.set()
            if listening:
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            await watcher
            await asyncio.gather(*self._retiring)
