"""The audit log: every event goes to the `audit_events` table and, as one JSON line, to the
`portal_asgi.audit` logger. Denials are rate-limited so that a flood cannot fill the disk."""

from __future__ import annotations

import datetime as dt
import json
import logging

from .db import store
from .db.engine import Database

logger = logging.getLogger("portal_asgi.audit")


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
