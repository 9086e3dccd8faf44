"""Single sign-on through any OpenID Connect provider (docs/oidc.md).

discovery.py    the provider's discovery document, cached
keys.py         the provider's signing keys (JWKS), cached by `kid`, refetched at most once a minute
jwt.py          verifying the provider's ID tokens and access tokens (RS256/ES256 only; Amazon
                Cognito's access tokens by `client_id` and `token_use`, as they carry no `aud`)
claims.py       levels and usernames from claims, for each provider's claim shape
allow.py        who may sign in (allowed groups, email domains, a level claim)
resolve.py      who the claims describe, their portal name and level: one set of rules for a
                sign-in and a Bearer token (and the `admins` the settings name)
transaction.py  the login transaction's own short-lived signed cookie
provider.py     the provider as the portal uses it: Authlib's Starlette client for the flow
bearer.py       provider access tokens as `Authorization: Bearer` on any mount
online.py       `portal-asgi check --online`: the provider's documents fetched and judged
"""

from __future__ import annotations

from .bearer import ProviderBearer
from .provider import OIDCProvider

__all__ = ["OIDCProvider", "ProviderBearer"]
