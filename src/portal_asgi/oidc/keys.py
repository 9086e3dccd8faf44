"""The provider's signing keys, cached by `kid`.

An unknown `kid` (the provider rotated its keys) refetches the JWKS, at most once a minute, so a
flood of tokens with made-up `kid`s cannot turn the portal into a cannon aimed at the provider.
When the provider is unreachable the cached keys keep serving.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import httpx2
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, JWKRegistry, RSAKey

from ..exceptions import ProviderUnavailable, TokenError
from .discovery import Discovery, get_json

logger = logging.getLogger("portal_asgi.oidc")

REFETCH_INTERVAL = 60.0
KTY = {"RS256": "RSA", "ES256": "EC"}  # the key type each allowed algorithm needs

Key = RSAKey | ECKey


class KeyCache:
    def __init__(
        self,
        discovery: Discovery,
        *,
        transport: httpx2.AsyncBaseTransport | None = None,
        refetch_interval: float = REFETCH_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.discovery = discovery
        self.transport = transport
        self.refetch_interval = refetch_interval
        self.clock = clock
        self.keys: dict[str, Key] = {}
        self.fetched_at: float | None = None
        self.fetches = 0
        self._lock = asyncio.Lock()

    async def key(self, kid: str | None, alg: str) -> Key:
        """The key that signed a token with header `kid` and `alg`; TokenError when none does."""
        found = self._find(kid, alg)
        if found is None:
            await self._refetch()
            found = self._find(kid, alg)
        if found is None:
            raise TokenError(f"no {alg} signing key with kid {kid!r} at the provider")
        return found

    def _find(self, kid: str | None, alg: str) -> Key | None:
        wanted = KTY.get(alg)
        if kid is not None:
            key = self.keys.get(kid)
            return key if key is not None and key.key_type == wanted else None
        # No kid: acceptable only when exactly one key could have signed it.
        candidates = [key for key in self.keys.values() if key.key_type == wanted]
        return candidates[0] if len(candidates) == 1 else None

    async def _refetch(self) -> None:
        async with self._lock:
            now = self.clock()
            if self.fetched_at is not None and now - self.fetched_at < self.refetch_interval:
                return
            self.fetched_at = now  # a failed fetch also waits its turn
            try:
                metadata = await self.discovery.metadata()
                data = await get_json(
                    metadata["jwks_uri"],
                    seconds=self.discovery.timeout,
                    transport=self.transport,
                    what="JWKS",
                )
            except ProviderUnavailable as exc:
                logger.error(
                    "OIDC signing keys not refreshed, keeping %d cached: %s", len(self.keys), exc
                )
                return
            self.fetches += 1
            keys = signing_keys(data)
            if keys:
                self.keys = keys
            else:
                logger.error("OIDC provider's JWKS holds no usable signing key; keeping the cache")


def signing_keys(data: dict[str, Any]) -> dict[str, Key]:
    """The keys of a JWKS that may verify the provider's tokens, by `kid`."""
    keys: dict[str, Key] = {}
    raw = data.get("keys")
    if not isinstance(raw, list):
        return keys
    for index, item in enumerate(raw):
        if not isinstance(item, dict) or item.get("use", "sig") != "sig":
            continue
        if item.get("kty") not in ("RSA", "EC") or "d" in item:
            continue  # only public asymmetric keys; an "oct" key would allow HS256 forgeries
        try:
            key = JWKRegistry.import_key(item)
        except (JoseError, ValueError, TypeError) as exc:
            logger.warning("OIDC provider key %s skipped: %s", item.get("kid"), exc)
            continue
        if isinstance(key, RSAKey | ECKey):
            keys[str(item.get("kid", f"#{index}"))] = key
    return keys
