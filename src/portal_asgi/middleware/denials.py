"""The portal's refusals go to the audit log as `denied` events (or a named event with detail,
such as `websocket.origin_refused`), at most `[security] audit_denials_per_minute` per worker;
the rest are counted in one `denied.suppressed` event. A product's own answers are its business
and are never recorded here: the request path calls this only for the portal's refusals and the
portal's own pages."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable

from ..answers import header
from ..audit import DenialSampler, record
from ..db.engine import Database
from ..exceptions import DatabaseUnavailable
from ..types import Scope
from ..user import PortalUser

logger = logging.getLogger("portal_asgi.audit")

# the statuses of a portal page that are refusals
DENIALS = frozenset({400, 401, 403, 405, 413, 429, 431})


class Denials:
    def __init__(self, db: Database, *, per_minute: int) -> None:
        self.db = db
        self.sampler = DenialSampler(per_minute)

    def record(
        self, scope: Scope, status: int, event: str = "denied", **detail: object
    ) -> Awaitable[None] | None:
        """Count a denial; the write to await, or None past the rate when nothing is due (not
        a coroutine of its own: a flood of refusals makes none)."""
        keep, suppressed = self.sampler.admit(time.monotonic())
        if not keep and not suppressed:
            return None
        return self._write(scope, status, event, keep, suppressed, detail)

    async def _write(
        self,
        scope: Scope,
        status: int,
        event: str,
        keep: bool,
        suppressed: int,
        detail: dict[str, object],
    ) -> None:
        try:
            if suppressed:
                await record(self.db, "denied.suppressed", count=suppressed)
            if keep:
                user = scope.get("user")
                client = scope.get("client")
                await record(
                    self.db,
                    event,
                    username=user.username if isinstance(user, PortalUser) else "",
                    client=client[0] if client else "",
                    status=status,
                    method=scope.get("method", "WEBSOCKET"),
                    path=str(scope.get("path", ""))[:200],
                    agent=header(scope, b"user-agent")[:120],
                    **detail,
                )
        except DatabaseUnavailable as exc:
            logger.warning("audit: could not store a denial: %s", exc)
