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

import httpx2

from ..exceptions import ProviderUnavailable, TokenError
from ..jwks import KTY, Key, find_key, signing_keys
from .discovery import Discovery, get_json

logger = logging.getLogger("portal_asgi.oidc")

__all__ = ["KTY", "Key", "KeyCache", "signing_keys"]

REFETCH_INTERVAL = 60.0


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
        # No kid: acceptable only when exactly one key could have signed it.
        return find_key(self.keys, kid, alg)

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
            keys = signing_keys(data, log=logger, whose="OIDC provider")
            if keys:
                self.keys = keys
            else:
                logger.error("OIDC provider's JWKS holds no usable signing key; keeping the cache")
