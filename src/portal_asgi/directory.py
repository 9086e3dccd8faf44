"""What every worker knows without asking the database: users' levels and states, revoked
sessions, product-level overrides. Loaded once, then kept fresh by polling the change feed.

A request never queries the database; a change made by another worker or the CLI reaches this one
within one feed interval, a change made by this worker at once (`refresh()` after the write).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from .db import store
from .db.engine import Database
from .exceptions import DatabaseUnavailable

logger = logging.getLogger("portal_asgi.directory")

Listener = Callable[[], None]


class Directory:
    def __init__(self, db: Database, *, interval: float) -> None:
        self.db = db
        self.interval = interval
        self.users: dict[str, store.UserState] = {}
        self.revoked: set[str] = set()
        self.mount_levels: dict[str, str] = {}
        self.loaded = False
        self.last_change = 0
        self._listeners: list[Listener] = []
        self._lock = asyncio.Lock()

    def on_change(self, listener: Listener) -> None:
        """Call `listener` after every refresh that changed something (open WebSockets re-check)."""
        self._listeners.append(listener)

    def user(self, username: str) -> store.UserState | None:
        return self.users.get(username)

    def is_revoked(self, sid: str) -> bool:
        return sid in self.revoked

    async def load(self) -> None:
        snap = await store.snapshot(self.db)
        self.users = {name: state for name, state in snap.users.items() if state is not None}
        self.revoked = snap.revoked
        self.mount_levels = snap.mount_levels
        self.last_change = snap.last_change
        self.loaded = True
        self._notify()

    async def refresh(self) -> bool:
        """Apply what changed since the last poll; True when anything did."""
        async with self._lock:
            if not self.loaded:
                await self.load()
                return True
            snap = await store.changes_since(self.db, self.last_change)
            if snap is None:
                return False
            for name, state in snap.users.items():
                if state is None:
                    self.users.pop(name, None)
                else:
                    self.users[name] = state
            self.revoked |= snap.revoked
            for path, level in snap.mount_levels.items():
                if level:
                    self.mount_levels[path] = level
                else:
                    self.mount_levels.pop(path, None)
            self.last_change = snap.last_change
        self._notify()
        return True

    def _notify(self) -> None:
        for listener in self._listeners:
            listener()

    async def run(self) -> None:
        """Poll forever (cancelled at shutdown). A database outage is logged, not fatal."""
        failing = False
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.refresh()
            except DatabaseUnavailable as exc:
                if not failing:
                    logger.warning(
                        "change feed: database unavailable (%s); serving from memory", exc
                    )
                failing = True
            else:
                if failing:
                    logger.warning("change feed: database is back")
                failing = False
