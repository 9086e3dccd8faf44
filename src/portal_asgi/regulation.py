"""Login regulation: failed logins are counted per account and per client address in the
database; `max_retries` failures within `find_time` ban the account or the address for `ban_time`
(answered 429 with Retry-After). The account key is the casefolded username, known or not, so the
answer and its timing say nothing about whether the account exists."""

from __future__ import annotations

import datetime as dt
import logging
import math

from sqlalchemy.exc import IntegrityError

from . import audit
from .db import throttle
from .db.engine import Database
from .db.models import utcnow
from .settings import SecuritySettings

logger = logging.getLogger("portal_asgi.regulation")


def keys(username: str, client: str) -> list[throttle.Key]:
    found: list[throttle.Key] = [("account", username.strip().casefold()[:255])]
    if client:
        found.append(("address", client[:255]))
    return found


def _seconds_until(until: dt.datetime, now: dt.datetime) -> int:
    return max(1, math.ceil((until - now).total_seconds()))


class Regulator:
    def __init__(self, db: Database, settings: SecuritySettings) -> None:
        self.db = db
        self.settings = settings

    async def retry_after(self, username: str, client: str) -> int:
        """Seconds until the ban on this account or address ends; 0 when neither is banned."""
        now = utcnow()
        until = await throttle.banned_until(self.db, keys(username, client), now)
        return _seconds_until(until, now) if until else 0

    async def failed(self, username: str, client: str) -> int:
        """Count a failed login; the Retry-After to answer when it started a ban, else 0."""
        now = utcnow()
        try:
            bans = await throttle.record_failure(
                self.db,
                keys(username, client),
                now=now,
                find_time=self.settings.find_time,
                max_retries=self.settings.max_retries,
                ban_time=self.settings.ban_time,
            )
        except IntegrityError:
            # another worker started the same ban at the same moment: it is in force
            return await self.retry_after(username, client)
        for ban in bans:
            logger.warning("login ban: %s %r until %s", ban.kind, ban.key, ban.until)
            await audit.record(
                self.db,
                "ban",
                username=ban.key if ban.kind == "account" else "",
                client=ban.key if ban.kind == "address" else client,
                kind=ban.kind,
                failures=ban.failures,
                until=ban.until.isoformat(),
            )
        return _seconds_until(max(b.until for b in bans), now) if bans else 0

    async def succeeded(self, username: str) -> None:
        """A right password clears the account's count, not the address's: an attacker behind one
        address must not reset it by signing in to an account of their own."""
        await throttle.clear_failures(self.db, keys(username, "")[0])
