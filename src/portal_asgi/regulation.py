"""Login regulation: login attempts are counted per account and per client address in the
database, each one BEFORE its password is checked (db/throttle.py makes the count atomic across
workers). An account or address holding `max_retries` attempts within `find_time` (failures, and
checks still running) lets no more through: the attempt that finds it full, or the failure that
fills it, bans it for `ban_time` (answered 429 with Retry-After). So however many logins arrive at
once, at most `max_retries` wrong passwords are checked per account and per address.

The account key is the casefolded username, known or not, so the answer and its timing say
nothing about whether the account exists."""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

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


def _seconds_until(until: dt.datetime | None, now: dt.datetime) -> int:
    return max(1, math.ceil((until - now).total_seconds())) if until else 0


@dataclass(frozen=True, slots=True)
class Attempt:
    """One login attempt, counted: `retry_after` > 0 when it was refused (check no password)."""

    username: str
    client: str
    rows: Mapping[throttle.Key, int]  # what it counted, to take back when its password is right
    retry_after: int


class Regulator:
    def __init__(self, db: Database, settings: SecuritySettings) -> None:
        self.db = db
        self.limits = throttle.Limits(settings.max_retries, settings.find_time, settings.ban_time)

    async def attempt(self, username: str, client: str) -> Attempt:
        """Count a login attempt before its password is checked."""
        now = utcnow()
        counted = await throttle.count_attempt(
            self.db, keys(username, client), now=now, limits=self.limits
        )
        await self._report(counted.bans, client)
        return Attempt(username, client, counted.rows, _seconds_until(counted.banned_until, now))

    async def failed(self, attempt: Attempt) -> int:
        """The attempt's password was wrong (it stays counted); the Retry-After to answer when a
        ban is now in force on its account or address, else 0."""
        now = utcnow()
        bans, until = await throttle.record_failure(
            self.db, keys(attempt.username, attempt.client), now=now, limits=self.limits
        )
        await self._report(bans, attempt.client)
        # old attempts go on a failure: the tables stay as small as the attack rate allows
        await throttle.prune(self.db, now=now, find_time=self.limits.find_time)
        return _seconds_until(until, now)

    async def succeeded(self, attempt: Attempt) -> None:
        """A right password clears the account's count, but takes back only its own attempt from
        the address's: an attacker behind one address must not reset it by signing in to an
        account of their own, and people sharing an address (an office, a NAT) must not ban it
        by signing in."""
        await throttle.forget(
            self.db, clear=keys(attempt.username, "")[0], rows=attempt.rows, now=utcnow()
        )

    async def _report(self, bans: Sequence[throttle.BanRecord], client: str) -> None:
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
