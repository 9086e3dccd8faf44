"""Provider access tokens as `Authorization: Bearer` on any mount (the original `/api/private`,
`/api/eaonly` pattern). Plugged into the Identity middleware after the portal's own tokens.

A token is accepted when its signature (RS256/ES256, a key from the provider's JWKS), issuer,
audience (Amazon Cognito: `client_id` and `token_use`) and expiry hold. Who it speaks for, under
which name and at which level, is decided by the same rules as a browser sign-in (resolve.py).
"""

from __future__ import annotations

import logging

from ..db.engine import Database
from ..directory import Directory
from ..exceptions import DatabaseUnavailable, ProviderUnavailable, TokenError
from ..levels import Levels
from ..user import PortalUser
from .allow import Refusal
from .provider import OIDCProvider
from .resolve import ProviderUsers, identify

logger = logging.getLogger("portal_asgi.oidc")


class ProviderBearer:
    def __init__(
        self, provider: OIDCProvider, *, db: Database, directory: Directory, levels: Levels
    ) -> None:
        self.provider = provider
        self.levels = levels
        self.users = ProviderUsers(db=db, directory=directory, levels=levels)

    async def __call__(self, token: str) -> PortalUser | None:
        if self.provider.access_audience is None or token.count(".") != 2:
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
        who = identify(self.provider.settings, [claims], levels=self.levels)
        if isinstance(who, Refusal):
            logger.info("provider access token refused: %s", who.reason)
            return None
        try:
            return await self.users.for_token(
                who, sid=str(claims.get("jti", "")), expires=float(claims["exp"])
            )
        except DatabaseUnavailable as exc:
            # Whether this subject is a disabled portal user cannot be told: refuse for now.
            logger.warning("provider access token refused: user table unavailable: %s", exc)
            return None
