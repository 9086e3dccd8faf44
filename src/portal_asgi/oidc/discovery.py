"""The provider's discovery document (OpenID Connect Discovery 1.0), fetched with httpx2 and cached.

Login pages ask for a fresh copy (a provider that is down is reported, not papered over); token
verification is content with the cached one, so provider access tokens keep verifying while the
provider is unreachable.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import httpx2

from ..exceptions import ProviderUnavailable

logger = logging.getLogger("portal_asgi.oidc")

REQUIRED = ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri")
RETRY_AFTER = 5.0  # seconds a failed fetch stands before the next try


def discovery_url(issuer: str) -> str:
    return issuer.rstrip("/") + "/.well-known/openid-configuration"


async def get_json(
    url: str, *, seconds: float, transport: httpx2.AsyncBaseTransport | None, what: str
) -> dict[str, Any]:
    """GET a JSON object from the provider; every failure is a `ProviderUnavailable` naming it."""
    try:
        async with httpx2.AsyncClient(timeout=seconds, transport=transport) as client:
            response = await client.get(url, headers={"accept": "application/json"})
    except httpx2.TimeoutException:
        raise ProviderUnavailable(
            f"{what} at {url} is unreachable: no answer within {seconds:g}s"
        ) from None
    except httpx2.HTTPError as exc:
        # ConnectError: nothing listens there, the name does not resolve, or a firewall
        how = "cannot connect" if isinstance(exc, httpx2.ConnectError) else "request failed"
        raise ProviderUnavailable(
            f"{what} at {url} is unreachable: {how} ({type(exc).__name__}: {exc})"
        ) from None
    if response.status_code != 200:
        raise ProviderUnavailable(f"{what} at {url} answered HTTP {response.status_code}")
    try:
        data = response.json()
    except ValueError:
        kind = response.headers.get("content-type", "no Content-Type")
        raise ProviderUnavailable(f"{what} at {url} is not JSON ({kind})") from None
    if not isinstance(data, dict):
        raise ProviderUnavailable(f"{what} at {url} is not a JSON object")
    return data


class Discovery:
    def __init__(
        self,
        issuer: str,
        *,
        timeout: float,
        transport: httpx2.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.issuer = issuer
        self.url = discovery_url(issuer)
        self.timeout = timeout
        self.transport = transport
        self.clock = clock
        self.cached: dict[str, Any] | None = None
        self.fetched_at = 0.0
        self.failure: ProviderUnavailable | None = None
        self.failed_at = 0.0
        self._lock = asyncio.Lock()

    async def metadata(self, *, max_age: float = 3600.0, stale_ok: bool = True) -> dict[str, Any]:
        """The document, refetched when older than `max_age` seconds. When the refetch fails,
        the cached copy stands in if `stale_ok`, else `ProviderUnavailable` is raised. A failure
        is remembered for a few seconds, so a busy login page does not hammer a provider that
        is down."""
        async with self._lock:
            now = self.clock()
            if self.cached is not None and now - self.fetched_at < max_age:
                return self.cached
            if self.failure is not None and now - self.failed_at < RETRY_AFTER:
                if stale_ok and self.cached is not None:
                    return self.cached
                raise self.failure
            try:
                data = await get_json(
                    self.url, seconds=self.timeout, transport=self.transport, what="discovery"
                )
                self._check(data)
            except ProviderUnavailable as exc:
                logger.error("OIDC provider unavailable: %s", exc)
                self.failure, self.failed_at = exc, now
                if stale_ok and self.cached is not None:
                    return self.cached
                raise
            self.cached, self.fetched_at, self.failure = data, now, None
            return data

    def _check(self, data: dict[str, Any]) -> None:
        problems = document_problems(data, issuer=self.issuer, url=self.url)
        if problems:
            raise ProviderUnavailable("; ".join(problems))


def document_problems(data: dict[str, Any], *, issuer: str, url: str) -> list[str]:
    """Why the portal cannot use this discovery document (for the login pages, and for
    `portal-asgi check --online`), or []."""
    problems = []
    missing = [key for key in REQUIRED if not isinstance(data.get(key), str)]
    if missing:
        problems.append(f"discovery at {url} lacks {', '.join(missing)}")
    # Discovery section 4.3: the document must name the issuer we asked for, or another party
    # could speak for it.
    named = data.get("issuer")
    if isinstance(named, str) and named.rstrip("/") != issuer.rstrip("/"):
        problems.append(f"discovery at {url} names issuer {named!r}, settings say {issuer!r}")
    return problems
