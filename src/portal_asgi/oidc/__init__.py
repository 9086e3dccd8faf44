"""Single sign-on through any OpenID Connect provider (docs/oidc.md).

discovery.py    the provider's discovery document, cached
keys.py         the provider's signing keys (JWKS), cached by `kid`, refetched at most once a minute
jwt.py          verifying the provider's ID tokens and access tokens (RS256/ES256 only)
claims.py       levels and usernames from claims, for each provider's claim shape
transaction.py  the login transaction's own short-lived signed cookie
provider.py     the provider as the portal uses it: Authlib's Starlette client for the flow
bearer.py       provider access tokens as `Authorization: Bearer` on any mount
"""

from __future__ import annotations

from .bearer import ProviderBearer
from .provider import OIDCProvider

__all__ = ["OIDCProvider", "ProviderBearer"]
