"""The portal's own JWTs (sessions and API tokens; and, signed only, the assertions upstream
products receive), behind one small strict wrapper of python-jose.

Rules (RFC 8725): the algorithm is always ours (ES256), never read from the token; `exp`, `iat`,
`iss`, `aud`, `sub`, `uid` (the user's never-reused id) and `sid` are required, so a token
minted before `uid` existed is refused like any other invalid token; headers that point at other keys (`jku`, `x5u`, `jwk`,
`x5c`) are refused; `kid` must name one of our keys, and the token is checked with that key only.
Verified tokens are cached until they expire, so a request does not pay again for a signature it
already checked; a cached token whose key has left the ring is refused like any other.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import jose.backends
from jose import JWTError, jwt
from jose.backends.cryptography_backend import CryptographyECKey

from .exceptions import TokenError, UnknownKey
from .keys import ALGORITHM, KeyRing, SigningKey

_REQUIRED = ("exp", "iat", "iss", "aud", "sub", "uid", "sid")
_ASSERTION_REQUIRED = ("typ", "exp", "iat", "aud", "sub")
_FORBIDDEN_HEADERS = ("jku", "x5u", "jwk", "x5c", "crit")
_OPTIONS = {f"require_{name}": True for name in ("exp", "iat", "iss", "aud", "sub")}


def assert_cryptography_backend() -> None:
    """python-jose falls back to pure-Python backends when `cryptography` is missing; we refuse to."""
    if jose.backends.ECKey is not CryptographyECKey:
        raise RuntimeError(
            "python-jose is not using its cryptography backend; install cryptography"
        )


class TokenCodec:
    """Signs with the ring's current key; verifies with the key a token's `kid` names, among the
    ring's keys (one key alone makes a ring of one)."""

    def __init__(
        self, keys: KeyRing | SigningKey, *, issuer: str, cache_size: int = 10_000
    ) -> None:
        assert_cryptography_backend()
        self.keys = keys if isinstance(keys, KeyRing) else KeyRing(keys)
        self.issuer = issuer
        self._cache: OrderedDict[str, tuple[str, dict[str, Any]]] = OrderedDict()
        self._cache_size = cache_size

    @property
    def key(self) -> SigningKey:
        """The key new tokens are signed with now."""
        return self.keys.current

    def sign(self, claims: dict[str, Any]) -> str:
        body = {"iss": self.issuer, "aud": self.issuer, **claims}
        missing = [name for name in _REQUIRED if name not in body]
        if missing:
            raise ValueError(f"token claims missing: {', '.join(missing)}")
        return self._encode(body)

    def sign_assertion(self, claims: dict[str, Any]) -> str:
        """An upstream product's `X-Portal-Assertion` (`claims.assertion`): its `aud` is a mount
        path, so `verify`, which wants the portal's own, never accepts one."""
        missing = [name for name in _ASSERTION_REQUIRED if name not in claims]
        if missing or claims["aud"] == self.issuer:
            raise ValueError(f"assertion claims missing or wrong: {', '.join(missing) or 'aud'}")
        return self._encode({"iss": self.issuer, **claims})

    def _encode(self, body: dict[str, Any]) -> str:
        key = self.keys.current
        token: str = jwt.encode(
            body, key.private_pem, algorithm=ALGORITHM, headers={"kid": key.kid}
        )
        return token

    def verify(self, token: str, *, now: float | None = None) -> dict[str, Any]:
        """The token's claims, or TokenError. Does not consult revocation (see directory.py)."""
        now = time.time() if now is None else now
        cached = self._cache.get(token)
        if cached is not None:
            kid, claims = cached
            if claims["exp"] > now and self.keys.get(kid) is not None:
                self._cache.move_to_end(token)
                return claims
            del self._cache[token]
            if claims["exp"] > now:
                raise UnknownKey("token signed by a key that is no longer ours")
            raise TokenError("token expired")
        kid, claims = self._verify(token)
        if len(self._cache) >= self._cache_size:
            self._cache.popitem(last=False)
        self._cache[token] = (kid, claims)
        return claims

    def forget(self, revoked: Callable[[str], bool], *, now: float | None = None) -> int:
        """Drop verified tokens that expired or whose session `revoked` says is over; how many.
        A revoked token is refused before its cached claims are read (directory.py), so this
        only gives the memory back."""
        now = time.time() if now is None else now
        gone = [
            token
            for token, (_kid, claims) in self._cache.items()
            if not claims["exp"] > now or revoked(claims["sid"])
        ]
        for token in gone:
            del self._cache[token]
        return len(gone)

    def _verify(self, token: str) -> tuple[str, dict[str, Any]]:
        if len(token) > 8192:
            raise TokenError("token too long")
        try:
            header = jwt.get_unverified_header(token)
        except JWTError as exc:
            raise TokenError(f"malformed token: {exc}") from None
        if header.get("alg") != ALGORITHM:
            raise TokenError(f"algorithm {header.get('alg')!r} is not allowed")
        if any(name in header for name in _FORBIDDEN_HEADERS):
            raise TokenError("token header points at another key")
        key = self.keys.get(header.get("kid"))
        if key is None:
            raise UnknownKey("token signed by an unknown key")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.public_pem,
                algorithms=[ALGORITHM],
                audience=self.issuer,
                issuer=self.issuer,
                options=_OPTIONS,
            )
        except JWTError as exc:
            raise TokenError(f"token refused: {exc}") from None
        for name in _REQUIRED:
            if name not in claims:
                raise TokenError(f"token lacks {name}")
        if not isinstance(claims["exp"], int | float) or not all(
            isinstance(claims[name], str) for name in ("sid", "uid")
        ):
            raise TokenError("token claims have the wrong types")
        return key.kid, claims
