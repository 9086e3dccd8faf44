"""Verifying the provider's JWTs: ID tokens at login, access tokens on every Bearer request.

Only the algorithms in settings (RS256, ES256; never HS256 or `none`, RFC 8725 section 3.1), a key
from the provider's own JWKS, and the registered claims a relying party must check.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError

from ..exceptions import TokenError
from ..jose_utils import b64url_encode, unverified_header
from .keys import KeyCache

LEEWAY = 60  # seconds of clock skew tolerated between the provider and the portal


@dataclass(frozen=True, slots=True)
class CognitoClients:
    """Who an Amazon Cognito access token must be for. Cognito's access tokens carry no `aud`;
    `client_id` (the app client it was issued to) and `token_use = "access"` stand for it, and
    are checked as strictly: a Cognito ID token (`token_use = "id"`) is never a Bearer token."""

    client_ids: tuple[str, ...]


# An `aud` to find in the token, or the Cognito clients its `client_id` must be one of.
Audience = str | CognitoClients


async def verify_jwt(
    token: str,
    keys: KeyCache,
    *,
    algorithms: Sequence[str],
    issuer: str,
    audience: Audience,
    now: float | None = None,
) -> dict[str, Any]:
    """The claims of `token` once its signature, `iss`, `aud` (or Cognito's `client_id` and
    `token_use`), `exp`, `nbf` and `iat` hold."""
    header = unverified_header(token)
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in algorithms:
        raise TokenError(f"algorithm {alg!r} is not allowed (allowed: {', '.join(algorithms)})")
    if "crit" in header:
        raise TokenError("JWT carries critical header extensions the portal does not understand")
    kid = header.get("kid")
    key = await keys.key(kid if isinstance(kid, str) else None, alg)
    try:
        claims = dict(jwt.decode(token, key, algorithms=[alg]).claims)
    except JoseError as exc:
        raise TokenError(f"JWT signature or payload refused: {exc.error}") from None
    current = time.time() if now is None else now
    _check_claims(claims, issuer=issuer, audience=audience, now=current)
    return claims


def _number(claims: dict[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TokenError(f"claim {name!r} is not a number")
    return float(value)


def _check_audience(claims: dict[str, Any], audience: Audience) -> None:
    if isinstance(audience, CognitoClients):
        use = claims.get("token_use")
        if use != "access":
            raise TokenError(f"token_use {use!r} is not 'access' (not a Cognito access token)")
        client_id = claims.get("client_id")
        if not isinstance(client_id, str) or client_id not in audience.client_ids:
            raise TokenError(
                f"client_id {client_id!r} is not one of {', '.join(audience.client_ids)}"
            )
        return
    aud = claims.get("aud")
    audiences = aud if isinstance(aud, list) else [aud]
    if audience not in audiences:
        raise TokenError(f"audience {aud!r} does not include {audience!r}")


def _check_claims(claims: dict[str, Any], *, issuer: str, audience: Audience, now: float) -> None:
    if claims.get("iss") != issuer:
        raise TokenError(f"issuer {claims.get('iss')!r} is not {issuer!r}")
    _check_audience(claims, audience)
    exp = _number(claims, "exp")
    if exp is None:
        raise TokenError("no expiry (exp)")
    if exp + LEEWAY < now:
        raise TokenError("expired")
    nbf = _number(claims, "nbf")
    if nbf is not None and nbf - LEEWAY > now:
        raise TokenError("not valid yet (nbf)")
    iat = _number(claims, "iat")
    if iat is not None and iat - LEEWAY > now:
        raise TokenError("issued in the future (iat)")
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise TokenError("no subject (sub)")


def check_id_token(
    claims: dict[str, Any], *, client_id: str, nonce: str, access_token: str | None
) -> None:
    """The ID token checks beyond a plain JWT (OpenID Connect Core 1.0, section 3.1.3.7)."""
    aud = claims.get("aud")
    if isinstance(aud, list) and len(aud) > 1 and claims.get("azp") != client_id:
        raise TokenError("ID token for several audiences without this portal as azp")
    if claims.get("iat") is None:
        raise TokenError("ID token without iat")
    found = claims.get("nonce")
    if not isinstance(found, str) or not hmac.compare_digest(found, nonce):
        raise TokenError("ID token nonce does not match this login (replayed ID token?)")
    at_hash = claims.get("at_hash")
    if at_hash is not None and access_token is not None:
        # RS256 and ES256 both hash with SHA-256: the left half, base64url.
        digest = hashlib.sha256(access_token.encode("ascii", "replace")).digest()
        expected = b64url_encode(digest[: len(digest) // 2])
        if not (isinstance(at_hash, str) and hmac.compare_digest(at_hash, expected)):
            raise TokenError("ID token at_hash does not match the access token")
