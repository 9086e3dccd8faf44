"""Public keys from a JSON Web Key Set, for checking signatures: the OIDC provider's (oidc/keys.py)
and, in a product served elsewhere, the portal's own (assertion.py). One copy of the rules for
both: asymmetric signing keys only (an `oct` key would let an HS256 token "signed" with a public
key through, RFC 8725 section 3.1), never a private key, and the key type the algorithm needs.
"""

from __future__ import annotations

import logging

from joserfc.errors import JoseError
from joserfc.jwk import ECKey, JWKRegistry, RSAKey

KTY = {"RS256": "RSA", "ES256": "EC"}  # the key type each allowed algorithm needs

Key = RSAKey | ECKey


def signing_keys(data: object, *, log: logging.Logger, whose: str) -> dict[str, Key]:
    """The keys of a JWKS that may verify signatures, by `kid` (`#n` for a key without one);
    a key that cannot be read is skipped, and said so to `log`."""
    keys: dict[str, Key] = {}
    raw = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(raw, list):
        return keys
    for index, item in enumerate(raw):
        if not isinstance(item, dict) or item.get("use", "sig") != "sig":
            continue
        if item.get("kty") not in ("RSA", "EC") or "d" in item:
            continue
        try:
            key = JWKRegistry.import_key(item)
        except (JoseError, ValueError, TypeError) as exc:
            log.warning("%s key %s skipped: %s", whose, item.get("kid"), exc)
            continue
        if isinstance(key, RSAKey | ECKey):
            keys[str(item.get("kid", f"#{index}"))] = key
    return keys


def find_key(keys: dict[str, Key], kid: str | None, alg: str) -> Key | None:
    """The key named `kid` when it suits `alg`; without a `kid`, the only key that does."""
    wanted = KTY.get(alg)
    if kid is not None:
        key = keys.get(kid)
        return key if key is not None and key.key_type == wanted else None
    candidates = [key for key in keys.values() if key.key_type == wanted]
    return candidates[0] if len(candidates) == 1 else None
