"""`X-Portal-Assertion`: who is calling, signed by the portal for one upstream mount.

The claims are `claims.assertion`'s (`aud` the mount's path, about a minute of life), signed with
the portal's current key, so an upstream verifies them against `/.well-known/jwks.json`
(`portal_asgi.assertion`). One assertion per user and mount is reused for half its life: a
product always gets one with at least half a minute left, and the portal signs once per user
per half minute rather than once per request."""

from __future__ import annotations

import time

from .. import claims
from ..levels import Levels
from ..tokens import TokenCodec
from ..user import PortalUser

CACHE_SIZE = 10_000


class Assertions:
    def __init__(
        self, codec: TokenCodec, levels: Levels, *, audience: str, size: int = CACHE_SIZE
    ) -> None:
        self.codec = codec
        self.levels = levels
        self.audience = audience
        self.size = size
        # (who, as what, under which key) -> (the header's value, reused until)
        self._cache: dict[tuple[str, ...], tuple[bytes, float]] = {}

    def header(self, user: object) -> bytes | None:
        """The assertion for `user`; None for an anonymous caller (a public mount)."""
        if not isinstance(user, PortalUser):
            return None
        now = time.time()
        kid = self.codec.key.kid  # a rotation signs the next ones with the new key
        key = (user.username, user.uid, user.level, user.email, user.name, kid)
        found = self._cache.get(key)
        if found is not None and found[1] > now:
            return found[0]
        minted = claims.assertion(
            self.levels, user.username, user, audience=self.audience, now=int(now)
        )
        value = self.codec.sign_assertion(minted).encode("ascii")
        self._cache.pop(key, None)
        if len(self._cache) >= self.size:
            del self._cache[next(iter(self._cache))]  # the oldest
        self._cache[key] = (value, now + claims.ASSERTION_LIFETIME / 2)
        return value
