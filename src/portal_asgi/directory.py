"""What every worker knows without asking the database: users' levels and states, revoked
sessions, product-level overrides, and (when they live in the database) the signing keys. Loaded
once, then kept fresh by polling the change feed.

A request never queries the database; a change made by another worker or the CLI reaches this one
within one feed interval, a change made by this worker at once (`refresh()` after the write).

Why no committed change is missed. Change ids are handed out when a row is inserted, but
transactions commit in any order (MariaDB): change 4 may commit after change 5 was read. So the
directory remembers the ids below the highest it has read that it has not seen (`pending`) and
asks for them again at every poll, until they appear or are older than `horizon`, longer than
any transaction may run (then they were rolled back: a permanent gap, forgotten). A snapshot
reports the same kind of ids (those that may still commit). As a backstop, the whole directory
is reloaded from a snapshot every `resync`, and whenever this worker could not poll for so long
that the changes it missed may have been pruned (`retention`).

What stays bounded. `pending` holds at most the ids of one `horizon` (capped at `max_pending`,
past which a reload is due); revocations are forgotten once every token carrying them has
expired (their session row's `expires_at`, plus `store.GRACE`), and `prune()` deletes the same
from the tables, with changes older than `retention`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import Protocol

from sqlalchemy.exc import SQLAlchemyError

from .db import accounts, store
from .db.engine import Database
from .db.models import utcnow
from .exceptions import DatabaseUnavailable

logger = logging.getLogger("portal_asgi.directory")

Listener = Callable[[], None]
Clock = Callable[[], dt.datetime]  # naive UTC, as the database stores times

NEVER = dt.datetime.max  # the expiry of a revocation whose session row was not read yet
SEEN_EVERY = dt.timedelta(minutes=1)  # how often sessions' `last_seen_at` is written
MAX_SEEN = 100_000  # sessions remembered as used between two writes


class Keys(Protocol):
    """The signing keys, when the database holds them (`signing.KeyKeeper`): reloaded with every
    snapshot, when the feed says they changed, and when `due` (a key starts signing, or may
    have stopped verifying: time alone changes that, without a change in the feed)."""

    def due(self, now: dt.datetime) -> bool: ...
    async def load(self, now: dt.datetime | None = None) -> None: ...
    async def prune(self, now: dt.datetime | None = None) -> list[str]: ...


class Directory:
    def __init__(
        self,
        db: Database,
        *,
        interval: float,
        horizon: float = store.HORIZON.total_seconds(),
        resync: float = 15 * 60,
        retention: float = 24 * 3600,
        prune_every: float = 10 * 60,
        max_pending: int = 10_000,
        clock: Clock = utcnow,
        keys: Keys | None = None,
    ) -> None:
        if retention <= 2 * horizon:
            raise ValueError("the change feed's retention must be well above its horizon")
        self.db = db
        self.interval = interval
        self.horizon = dt.timedelta(seconds=horizon)
        self.resync = dt.timedelta(seconds=resync)
        self.retention = dt.timedelta(seconds=retention)
        self.prune_every = dt.timedelta(seconds=prune_every)
        self.max_pending = max_pending
        self.clock = clock
        self.keys = keys
        self.users: dict[str, store.UserState] = {}
        self.revoked: dict[str, dt.datetime] = {}  # sid -> when its tokens have all expired
        self.mount_levels: dict[str, str] = {}
        self.loaded = False
        self.last_change = 0
        # bumped at every change: what was judged against an older version is judged again
        self.version = 0
        self.last_poll: float | None = None  # time.monotonic() of the last good poll (/readyz)
        self.failures = 0  # polls the database did not answer (metrics.py counts them)
        self.pending: dict[int, dt.datetime] = {}  # change id -> when it was first missed
        self._loaded_at = dt.datetime.min
        self._polled_at = dt.datetime.min
        self._pruned_at = dt.datetime.min
        self._reload_soon = False
        self._listeners: list[Listener] = []
        self._lock = asyncio.Lock()
        self._unrecorded: set[str] = set()  # revoked here while the database was down
        self._seen: set[str] = set()  # sessions and tokens used since `last_seen_at` was written
        self._seen_written = dt.datetime.min
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
        """Whoever holds `username` now (for display; to judge a token use `holder`)."""
        return self.users.get(username)

    def holder(self, username: str, uid: object) -> store.UserState | None:
        """The user a token names, when `username` still belongs to the user of id `uid`: a
        token of a deleted user names an id nobody holds any more, whoever took the name."""
        state = self.users.get(username)
        if state is None or not isinstance(uid, str) or not uid or state.uid != uid:
            return None
        return state

    def saw(self, sid: str) -> None:
        """A session or API token was used: its `last_seen_at` (the admin area's "last seen")
        is written by the feed at most once a minute, never by the request."""
        if len(self._seen) < MAX_SEEN:
            self._seen.add(sid)

    async def _write_seen(self) -> None:
        now = self.clock()
        if not self._seen or now - self._seen_written < SEEN_EVERY:
            return
        sids, self._seen, self._seen_written = self._seen, set(), now
        try:
            await accounts.touch_sessions(self.db, sids, now)
        except (DatabaseUnavailable, SQLAlchemyError) as exc:  # only informative: not retried
            logger.info("change feed: could not record when sessions were last seen: %s", exc)

    def is_revoked(self, sid: str) -> bool:
        return sid in self.revoked

    def revoke_here(self, sid: str) -> None:
        """A revocation the database could not record (a logout while it is down): refused by
        this worker at once, and written to the database by the feed as soon as it answers."""
        self.revoked[sid] = NEVER
        self._unrecorded.add(sid)
        self.version += 1

    async def _record_revocations(self) -> None:
        for sid in sorted(self._unrecorded):
            await store.revoke_session(self.db, sid)
            self._unrecorded.discard(sid)
            logger.warning(
                "change feed: recorded revocation of session %s… made while down", sid[:6]
            )

    async def load(self) -> None:
        async with self._lock:
            await self._load()
        self._notify()

    async def _load(self) -> None:
        now = self.clock()
        snap = await store.snapshot(
            self.db, now=now, horizon=self.horizon, max_missing=self.max_pending
        )
        if self.keys is not None:
            # after the snapshot: a key change it counts as read is in the table by now, and
            # one still pending below it is read again when it appears
            await self.keys.load(now)
        self.users = {name: state for name, state in snap.users.items() if state is not None}
        unrecorded = {sid: self.revoked.get(sid, NEVER) for sid in self._unrecorded}
        self.revoked = snap.revoked | unrecorded
        self.mount_levels = snap.mount_levels
        # ids this worker already waits for stay pending (they may be above the snapshot's
        # idea of settled); the snapshot adds those it could not see committed
        kept = {i: t for i, t in self.pending.items() if i <= snap.last_change}
        self.pending = {i: kept.get(i, now) for i in snap.missing} | kept
        self.last_change = snap.last_change
        self._expire_pending(now)
        self._loaded_at = self._polled_at = now
        self._reload_soon = False
        self.loaded = True

    def _expire_pending(self, now: dt.datetime) -> None:
        for change_id, since in list(self.pending.items()):
            if since < now - self.horizon:
                del self.pending[change_id]  # rolled back: no transaction runs that long
        if len(self.pending) > self.max_pending:
            logger.warning(
                "change feed: %d change ids missing at once; reloading", len(self.pending)
            )
            for change_id in sorted(self.pending)[: len(self.pending) - self.max_pending]:
                del self.pending[change_id]
            self._reload_soon = True

    def _reload_due(self, now: dt.datetime) -> bool:
        return (
            self._reload_soon
            or now - self._loaded_at >= self.resync
            # changes this worker has not read may have been pruned meanwhile
            or now - self._polled_at >= self.retention - self.horizon
        )

    async def refresh(self) -> bool:
        """Apply what changed since the last poll; True when anything did."""
        async with self._lock:
            now = self.clock()
            if not self.loaded or self._reload_due(now):
                await self._load()
                changed = True
            else:
                changed = await self._poll(now)
        if changed:
            self._notify()
        return changed

    async def _poll(self, now: dt.datetime) -> bool:
        self._expire_pending(now)
        snap = await store.changes_since(self.db, self.last_change, pending=self.pending.keys())
        # keys first: should reading them fail, the key change is read again at the next poll
        if self.keys is not None and ((snap is not None and snap.keys) or self.keys.due(now)):
            await self.keys.load(now)
        self._polled_at = now
        if snap is None:
            return False
        for name, state in snap.users.items():
            if state is None:
                self.users.pop(name, None)
            else:
                self.users[name] = state
        self.revoked.update(snap.revoked)
        for path, level in snap.mount_levels.items():
            if level:
                self.mount_levels[path] = level
            else:
                self.mount_levels.pop(path, None)
        for change_id in snap.seen:
            self.pending.pop(change_id, None)
        newest = max(self.last_change, snap.last_change)
        first = max(self.last_change + 1, newest - self.max_pending)
        for change_id in range(first, newest):
            if change_id not in snap.seen:
                self.pending[change_id] = now  # allocated, not committed yet (or rolled back)
        self.last_change = newest
        self._expire_pending(now)
        return True

    def forget_expired(self, now: dt.datetime | None = None) -> int:
        """Forget revocations no unexpired token can carry; how many were forgotten."""
        cutoff = (now or self.clock()) - store.GRACE
        gone = [sid for sid, expires in self.revoked.items() if expires < cutoff]
        for sid in gone:
            del self.revoked[sid]
        return len(gone)

    async def prune(self) -> store.Pruned:
        """Forget expired revocations here, and delete them (and old changes) from the tables."""
        now = self.clock()
        self._pruned_at = now
        self.forget_expired(now)
        if self.keys is not None:
            await self.keys.prune(now)
        return await store.prune(self.db, retention=self.retention, now=now, horizon=self.horizon)

    def _notify(self) -> None:
        self.version += 1
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
                self.failures += 1
                if not failing:
                    logger.warning(
                        "change feed: database unavailable (%s); serving from memory",
                        str(exc).splitlines()[0],
                    )
                failing = True
                continue
            self.last_poll = time.monotonic()
            await self._write_seen()
            if failing:
                logger.warning("change feed: database is back")
            failing = False
            if self.clock() - self._pruned_at >= self.prune_every:
                try:
                    await self.prune()
                except (DatabaseUnavailable, SQLAlchemyError) as exc:
                    # e.g. two workers deleting the same rows at once: the next round retries
                    logger.warning("change feed: pruning failed (%s)", str(exc).splitlines()[0])
