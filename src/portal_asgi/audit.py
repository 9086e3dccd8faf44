"""The audit log: every event goes to the `audit_events` table and, as one JSON line, to the
`portal_asgi.audit` logger. Denials are rate-limited so that a flood cannot fill the disk."""

from __future__ import annotations

import datetime as dt
import json
import logging
import time

from .answers import header
from .db import store
from .db.engine import Database
from .exceptions import DatabaseUnavailable
from .types import ASGIApp, Message, Receive, Scope, Send
from .user import PortalUser

logger = logging.getLogger("portal_asgi.audit")

DENIALS = frozenset({400, 401, 403, 405, 413, 429, 431})
# scope key where a middleware that refuses names the audit event and adds detail to it
DENIAL_KEY = "portal.denial"


def json_line(event: str, *, username: str = "", client: str = "", **detail: object) -> str:
    at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    body = {"at": at, "event": event, "username": username, "client": client, **detail}
    return json.dumps(body, default=str, sort_keys=True)


async def record(
    db: Database, event: str, *, username: str = "", client: str = "", **detail: object
) -> None:
    """Log the event, then store it; the log line is written even when the database is down,
    and DatabaseUnavailable is raised to the caller, who knows what else to do about it."""
    logger.info(json_line(event, username=username, client=client, **detail))
    await store.audit(db, event, username=username, client=client, **detail)


def ensure_log_handler() -> None:
    """Uvicorn configures its own loggers only: without this the JSON lines would be lost. A
    deployment that configures logging (a handler on the root logger) keeps its own."""
    if logger.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


class DenialSampler:
    """At most `per_minute` denials recorded per window; the rest are counted and reported as
    one `denied.suppressed` event when the next window opens. Per process, in the instance."""

    def __init__(self, per_minute: int, *, window: float = 60.0) -> None:
        self.per_minute = per_minute
        self.window = window
        self.started = 0.0
        self.recorded = 0
        self.suppressed = 0

    def admit(self, now: float) -> tuple[bool, int]:
        """(record this one?, suppressed count from the last window to report now)."""
        report = 0
        if now - self.started >= self.window:
            report, self.suppressed = self.suppressed, 0
            self.started, self.recorded = now, 0
        if self.recorded < self.per_minute:
            self.recorded += 1
            return True, report
        self.suppressed += 1
        return False, report


class AuditDenials:
    """Records the portal's own refusals (not a product's answers) as `denied` events."""

    def __init__(
        self, app: ASGIApp, *, db: Database, per_minute: int, products: frozenset[str]
    ) -> None:
        self.app = app
        self.db = db
        self.sampler = DenialSampler(per_minute)
        self.products = products

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        status = 0

        async def watching(message: Message) -> None:
            nonlocal status
            if message["type"] in ("http.response.start", "websocket.http.response.start"):
                status = int(message["status"])
            await send(message)

        await self.app(scope, receive, watching)
        named = DENIAL_KEY in scope  # refused by a middleware that named it, whatever the status
        product = scope.get("portal", {}).get("mount") in self.products
        if product or (status not in DENIALS and not named):
            return
        keep, suppressed = self.sampler.admit(time.monotonic())
        try:
            if suppressed:
                await record(self.db, "denied.suppressed", count=suppressed)
            if keep:
                user = scope.get("user")
                client = scope.get("client")
                # a refusal may name itself and add detail (origins.py: the refused Origin)
                reason: dict[str, object] = dict(scope.get(DENIAL_KEY, {}))
                await record(
                    self.db,
                    str(reason.pop("event", "denied")),
                    username=user.username if isinstance(user, PortalUser) else "",
                    client=client[0] if client else "",
                    status=status,
                    method=scope.get("method", "WEBSOCKET"),
                    path=str(scope.get("path", ""))[:200],
                    agent=header(scope, b"user-agent")[:120],
                    **reason,
                )
        except DatabaseUnavailable as exc:
            logger.warning("audit: could not store a denial: %s", exc)
