"""Levels and usernames from a provider's claims, whatever its shape:

| provider | claim | example |
| --- | --- | --- |
| Auth0 | `scope` (space-separated) or `permissions` | `"openid access:ea"`, `["access:devel"]` |
| Okta | `groups` | `["Everyone", "portal-ea"]` |
| Cognito | `cognito:groups` | `["portal_admin"]` |
| Keycloak | `realm_access.roles` (a dotted path into nested objects) | `{"roles": ["access:devel"]}` |
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from ..levels import Levels

_MISSING = object()


def claim_at(claims: Mapping[str, Any], path: str) -> Any:
    """The claim named `path`, else the value at the dotted path (`realm_access.roles`), else None.
    The whole name is tried first: Auth0's namespaced claims are URLs full of dots."""
    if path in claims:
        return claims[path]
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part, _MISSING)
        if value is _MISSING:
            return None
    return value


def claim_values(value: Any) -> list[str]:
    """A space-separated string (OAuth `scope`) or a list of strings, as a list."""
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list | tuple):
        return [item for item in value if isinstance(item, str)]
    return []


def level_from(
    sources: Iterable[Mapping[str, Any]], *, path: str, prefix: str, levels: Levels
) -> str | None:
    """The highest level named under `path` in any of `sources` (ID token, userinfo, access
    token), or None when none names one."""
    values: list[str] = []
    for claims in sources:
        values += claim_values(claim_at(claims, path))
    return levels.highest_in(values, prefix)


def has_claim(claims: Mapping[str, Any], path: str) -> bool:
    return claim_at(claims, path) is not None


def username_from(claims: Mapping[str, Any], username_claim: str) -> str:
    """The portal username for a provider user: `username_claim`, else email, else subject;
    without whitespace (usernames have none) and at most 140 characters."""
    for name in (username_claim, "email", "sub"):
        value = claim_at(claims, name)
        if isinstance(value, str) and value.strip():
            return "_".join(value.split())[:140]
    return "_".join(str(claims.get("sub", "")).split())[:140]


def fallback_username(username: str, subject: str) -> str:
    """The name used when `username` already belongs to another account: never take it over."""
    return f"{username[:140]}~{hashlib.sha256(subject.encode()).hexdigest()[:8]}"
