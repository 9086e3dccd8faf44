"""Who a provider's claims describe, under which portal name, at which level: one set of rules
for a browser sign-in (pages/oidc.py) and for a provider access token used as Bearer (bearer.py),
so that the two cannot drift apart.

1. A person named in `[auth.oidc] admins` (by verified email, or by the exact value of
   `username_claim`) is let in, at the highest level, whatever the claims say.
2. Anyone else must pass the sign-in rules (allow.py).
3. The level: the highest one the claims name (else the lowest) with `level_source = "claims"`;
   the one in the portal's user table with `"database"`.
4. The name: the portal user of the subject, found by subject and never-reused id; before their
   first sign-in, `username_claim` (then email, then subject), never a name another account holds.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..db import store
from ..db.engine import Database
from ..directory import Directory
from ..levels import Levels
from ..settings import OIDCSettings
from ..user import PortalUser
from .allow import Refusal, email_of, refusal
from .claims import claim_at, fallback_username, level_from, username_from

logger = logging.getLogger("portal_asgi.oidc")

_MAX_SUBJECTS = 10_000


@dataclass(frozen=True, slots=True)
class Claimed:
    """What the provider's claims say about one person."""

    subject: str
    username: str  # the name the claims give; the portal may know them by another
    email: str
    name: str
    level: str | None  # None: the portal's user table decides (level_source = "database")
    admin: bool  # named in [auth.oidc] admins

    def level_with(self, stored: str | None, levels: Levels) -> str:
        """The level they hold, given the one in the portal's user table (None: no row yet)."""
        return self.level or stored or levels.lowest


def is_admin(settings: OIDCSettings, sources: Sequence[Mapping[str, Any]]) -> bool:
    """Named in `admins`: by an email address the provider says is verified (case-insensitive),
    or by the exact value of `username_claim` (not its email or subject fallbacks, which would
    let an unverified address in by the back door)."""
    if not settings.admins:
        return False
    email, verified = email_of(sources)
    username = claim_at(sources[0], settings.username_claim)
    for entry in settings.admins:
        if verified and entry.lower() == email.lower():
            return True
        if isinstance(username, str) and entry == username:
            return True
    return False


def identify(
    settings: OIDCSettings, sources: Sequence[Mapping[str, Any]], *, levels: Levels
) -> Claimed | Refusal:
    """Who `sources` (the first is the verified token: the ID token at sign-in, the access token
    as Bearer; then userinfo, the access token) describe, or why they may not come in."""
    first = sources[0]
    admin = is_admin(settings, sources)
    if not admin:
        refused = refusal(settings, sources, levels=levels)
        if refused is not None:
            return refused
    if admin:
        level: str | None = levels.highest
    elif settings.level_source == "database":
        level = None
    else:
        found = level_from(
            sources, path=settings.level_claim, prefix=settings.level_prefix, levels=levels
        )
        level = found or levels.lowest
    email, name = claim_at(first, "email"), claim_at(first, "name")
    return Claimed(
        subject=str(first["sub"]),
        username=username_from(first, settings.username_claim),
        email=email if isinstance(email, str) else "",
        name=name if isinstance(name, str) else "",
        level=level,
        admin=admin,
    )


class ProviderUsers:
    """The portal users of the provider's subjects: written at sign-in, read for Bearer tokens."""

    def __init__(self, *, db: Database, directory: Directory, levels: Levels) -> None:
        self.db = db
        self.directory = directory
        self.levels = levels
        # subject -> (portal username, uid): it never changes while that user exists, so it is
        # asked of the database once per subject, not once per request.
        self._usernames: OrderedDict[str, tuple[str, str]] = OrderedDict()
        # subjects with no portal user yet (machine clients), until when that answer stands
        self._strangers: OrderedDict[str, float] = OrderedDict()

    async def sign_in(self, who: Claimed) -> store.UserRecord:
        """Create or refresh the portal user of `who` (DatabaseUnavailable, UserError)."""
        return await store.upsert_oidc_user(
            self.db,
            subject=who.subject,
            username=who.username,
            email=who.email,
            name=who.name,
            level=who.level,  # None keeps the table's level (a new row: the lowest)
            default_level=self.levels.lowest,
            fallback_username=fallback_username(who.username, who.subject),
        )

    async def for_token(self, who: Claimed, *, sid: str, expires: float) -> PortalUser | None:
        """The user a provider access token speaks for, or None when the portal has disabled
        them. Reads the user table at most once per subject (DatabaseUnavailable)."""
        known = await self._known(who.subject)
        state = self.directory.holder(*known) if known else None
        if known is not None and state is None:
            # deleted (or not in this worker's directory yet): ask the user table again later
            self._forget(who.subject)
        if known is None or state is None:
            # Not a portal user (yet): named from its claims, never after another account.
            username = who.username
            if self.directory.user(username) is not None:
                username = fallback_username(username, who.subject)
        elif not state.active:
            logger.info("provider access token refused: user %s is disabled", known[0])
            return None
        else:
            username = known[0]
        return PortalUser(
            username=username,
            level=who.level_with(state.level if state else None, self.levels),
            email=who.email or (state.email if state else ""),
            name=who.name or (state.name if state else ""),
            sid=sid,
            uid=state.uid if state is not None else "",
            via="provider",
            expires=expires,
        )

    async def _known(self, subject: str) -> tuple[str, str] | None:
        """The (username, uid) of the portal user of `subject`, or None."""
        if subject in self._usernames:
            return self._usernames[subject]
        now = time.monotonic()
        if self._strangers.get(subject, 0.0) > now:
            return None
        found = await store.user_for_subject(self.db, subject)
        if found is None:
            self._strangers[subject] = now + self.directory.interval
            _trim(self._strangers)
            return None
        self._usernames[subject] = (found.username, found.uid)
        _trim(self._usernames)
        return self._usernames[subject]

    def _forget(self, subject: str) -> None:
        self._usernames.pop(subject, None)
        self._strangers[subject] = time.monotonic() + self.directory.interval
        _trim(self._strangers)


def _trim(
    cache: OrderedDict[str, tuple[str, str]] | OrderedDict[str, float],
) -> None:
    while len(cache) > _MAX_SUBJECTS:
        cache.popitem(last=False)
