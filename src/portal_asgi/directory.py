"""What every worker knows without asking the database: users' levels and states, revoked
sessions, product-level overrides. Loaded once, then kept fresh by polling the change feed.

A request never queries the database; a change made by another worker or the CLI reaches this one
within one feed interval, a change made by this worker at once (`refresh()` after the write).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from sqlalchemy.exc import SQLAlchemyError

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
        self._unrecorded: set[str] = set()  # revoked here while the database was down
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        """Ask `run()` to return at its next pause: never cancelled in the middle of a query,
        where the connection pool would log the interrupted rollback as an error."""
        self._stopping.set()

    async def pause(self) -> bool:
        """Wait one interval; True when the portal is stopping instead."""
        try:
            await asyncio.wait_for(self._stopping.wait(), self.interval)
        except TimeoutError:
            return False
        return True

    def on_change(self, listener: Listener) -> None:
        """Call `listener` after every refresh that changed something (open WebSockets re-check)."""
        self._listeners.append(listener)

    def user(self, username: str) -> store.UserState | None:
        return self.users.get(username)

    def is_revoked(self, sid: str) -> bool:
        return sid in self.revoked

    def revoke_here(self, sid: str) -> None:
        """A revocation the database could not record (a logout while it is down): refused by
        this worker at once, and written to the database by the feed as soon as it answers."""
        self.revoked.add(sid)
        self._unrecorded.add(sid)

    async def _record_revocations(self) -> None:
        for sid in sorted(self._unrecorded):
            await store.revoke_session(self.db, sid)
            self._unrecorded.discard(sid)
            logger.warning(
                "change feed: recorded revocation of session %s… made while down", sid[:6]
            )

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
        """Poll until `stop()`. A database outage is logged, not fatal."""
        failing = False
        while not await self.pause():
            try:
                await self._record_revocations()
                await self.refresh()
            except (DatabaseUnavailable, SQLAlchemyError) as exc:
                # Anything the database says (down, or a table gone) must not end the feed: this
                # worker keeps serving from memory and catches up when the database answers.
                if not failing:
                    logger.warning(
                        "change feed: database unavailable (%s); serving from memory",
                        str(exc).splitlines()[0],
                    )
                failing = True
            else:
                if failing:
                    logger.warning("change feed: database is back")
                failing = False
