"""Provider access tokens as `Authorization: Bearer` on any mount (the original `/api/private`,
`/api/eaonly` pattern). Plugged into the Identity middleware after the portal's own tokens.

A token is accepted when its signature (RS256/ES256, a key from the provider's JWKS), issuer,
audience and expiry hold. Its level comes from its claims (`level_source = "claims"`) or from the
portal's user table (`"database"`). The portal username comes from the user table when the
subject has logged in before (so a token cannot claim someone else's name), else from its claims.
The subject's portal user is known by name and never-reused id: once that user is deleted, a
new user who took the name is someone else, and the subject is a stranger again.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict

from ..db import store
from ..db.engine import Database
from ..directory import Directory
from ..exceptions import DatabaseUnavailable, ProviderUnavailable, TokenError
from ..levels import Levels
from ..user import PortalUser
from .allow import refusal
from .claims import claim_at, fallback_username, level_from, username_from
from .provider import OIDCProvider

logger = logging.getLogger("portal_asgi.oidc")

_MAX_SUBJECTS = 10_000


class ProviderBearer:
    def __init__(
        self, provider: OIDCProvider, *, db: Database, directory: Directory, levels: Levels
    ) -> None:
        self.provider = provider
        self.db = db
        self.directory = directory
        self.levels = levels
        # subject -> (portal username, uid): it never changes while that user exists, so it is
        # asked of the database once per subject, not once per request.
        self._usernames: OrderedDict[str, tuple[str, str]] = OrderedDict()
        # subjects with no portal user yet (machine clients), until when that answer stands
        self._strangers: OrderedDict[str, float] = OrderedDict()

    async def __call__(self, token: str) -> PortalUser | None:
        if not self.provider.settings.audience or token.count(".") != 2:
            return None
        try:
            claims = await self.provider.verify_access_token(token)
        except TokenError as exc:
            logger.info("provider access token refused: %s", exc)
            return None
        except ProviderUnavailable as exc:
            logger.warning("provider access token not checked, provider unavailable: %s", exc)
            return None
        # the sign-in rules hold for tokens too: else a refused person's token would get in
        refused = refusal(self.provider.settings, [claims], levels=self.levels)
        if refused is not None:
            logger.info("provider access token refused: %s", refused.reason)
            return None
        subject = str(claims["sub"])
        try:
            known = await self._user(subject)
        except DatabaseUnavailable as exc:
            # Whether this subject is a disabled portal user cannot be told: refuse for now.
            logger.warning("provider access token refused: user table unavailable: %s", exc)
            return None
        state = self.directory.holder(*known) if known else None
        if known is not None and state is None:
            # deleted (or not in this worker's directory yet): ask the user table again later
            self._forget(subject)
        username = known[0] if known else None
        if username is None or state is None:
            # Not a portal user (yet): named from its claims, never after another account.
            username = username_from(claims, self.provider.settings.username_claim)
            if self.directory.user(username) is not None:
                username = fallback_username(username, subject)
        elif not state.active:
            logger.info("provider access token refused: user %s is disabled", username)
            return None
        settings = self.provider.settings
        if settings.level_source == "database":
            level = state.level if state is not None else self.levels.lowest
        else:
            found = level_from(
                [claims],
                path=settings.level_claim,
                prefix=settings.level_prefix,
                levels=self.levels,
            )
            level = found or self.levels.lowest
        email = claim_at(claims, "email")
        name = claim_at(claims, "name")
        return PortalUser(
            username=username,
            level=level,
            email=email if isinstance(email, str) else (state.email if state else ""),
            name=name if isinstance(name, str) else (state.name if state else ""),
            sid=str(claims.get("jti", "")),
            uid=state.uid if state is not None else "",
            via="provider",
            expires=float(claims["exp"]),
        )

    async def _user(self, subject: str) -> tuple[str, str] | None:
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
