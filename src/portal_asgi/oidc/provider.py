"""The OpenID provider as the portal uses it.

The authorization code flow goes through Authlib's Starlette client (`StarletteOAuth2App`): it
builds the authorization URL with PKCE S256, `state` and `nonce`, exchanges the code with the
client authentication the settings name, and builds the RP-initiated logout URL. The portal does
its own part around it: the discovery document and keys are cached here (Authlib would refetch the
JWKS on every unknown `kid`), the login transaction lives in its own cookie instead of a server
session, and ID tokens are verified against the portal's algorithm allow-list.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import httpx2
from authlib.integrations.starlette_client import (  # type: ignore[import-untyped]
    OAuthError,
    StarletteIntegration,
    StarletteOAuth2App,
)

from ..exceptions import ProviderUnavailable, TokenError
from ..settings import OIDCSettings
from .discovery import Discovery
from .errors import LoginRefused
from .jwt import Audience, CognitoClients, check_id_token, verify_jwt
from .keys import KeyCache
from .transaction import LoginTransaction

logger = logging.getLogger("portal_asgi.oidc")

# Login pages check that the provider answers, with a discovery document at most this old
# (seconds): fresh enough to report an outage, stale enough not to hammer the provider.
FRESH = 5.0

# What a refusal at the token endpoint means, in the person's words (RFC 6749 section 5.2).
_TOKEN_ERRORS: dict[str, tuple[int, str]] = {
    "invalid_client": (
        503,
        "Sign-in is unavailable: the identity provider refuses the credentials this portal "
        "signs in with. The portal is misconfigured; please tell its administrator.",
    ),
    "unauthorized_client": (
        503,
        "Sign-in is unavailable: the identity provider does not allow this portal to sign "
        "people in. Please tell its administrator.",
    ),
    "invalid_grant": (
        400,
        "That sign-in link was already used or has expired. Please sign in again.",
    ),
}


class OIDCProvider:
    def __init__(
        self,
        settings: OIDCSettings,
        *,
        base_url: str,
        transport: httpx2.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.redirect_uri = settings.redirect_uri or base_url + "/auth/callback"
        self.post_logout_redirect_uri = settings.post_logout_redirect_uri or base_url + "/"
        self.transport = transport
        self.discovery = Discovery(settings.issuer, timeout=settings.timeout, transport=transport)
        self.keys = KeyCache(self.discovery, transport=transport)
        # What a provider access token must be for to be accepted: `aud` = audience, or for
        # Amazon Cognito (whose access tokens carry no `aud`) a `client_id` of ours; None: no
        # provider access token is accepted, as there is nothing to tell ours from others'.
        self.access_audience: Audience | None = (
            CognitoClients(settings.token_client_ids or (settings.client_id,))
            if settings.cognito
            else settings.audience or None
        )

    @property
    def name(self) -> str:
        return self.settings.name

    def _client(self, metadata: Mapping[str, Any]) -> Any:
        """An Authlib Starlette client over the cached metadata (it never fetches discovery)."""
        client_kwargs: dict[str, Any] = {
            "scope": " ".join(self.settings.scopes),
            "code_challenge_method": "S256",
            "token_endpoint_auth_method": self.settings.token_endpoint_auth_method,
            "timeout": self.settings.timeout,
        }
        if self.transport is not None:
            client_kwargs["transport"] = self.transport
        server_metadata = {k: v for k, v in metadata.items() if k != "jwks"}
        return StarletteOAuth2App(
            StarletteIntegration("portal"),
            name="portal",
            client_id=self.settings.client_id,
            client_secret=str(self.settings.client_secret),
            client_kwargs=client_kwargs,
            **server_metadata,
        )

    async def metadata(self, *, max_age: float = 3600.0, stale_ok: bool = True) -> dict[str, Any]:
        return await self.discovery.metadata(max_age=max_age, stale_ok=stale_ok)

    async def start(self, next_path: str) -> tuple[str, LoginTransaction]:
        """The provider's authorization URL for a new login, and the transaction to keep. The
        discovery document is at most a few seconds old: a provider that is down is reported."""
        metadata = await self.metadata(max_age=FRESH, stale_ok=False)
        extra: dict[str, str] = {}
        if self.settings.audience:
            extra["audience"] = self.settings.audience  # Auth0 issues a JWT access token for it
        result = await self._client(metadata).create_authorization_url(self.redirect_uri, **extra)
        transaction = LoginTransaction(
            state=result["state"],
            nonce=result["nonce"],
            code_verifier=result["code_verifier"],
            redirect_uri=self.redirect_uri,
            next=next_path,
        )
        return str(result["url"]), transaction

    async def exchange(self, transaction: LoginTransaction, code: str) -> dict[str, Any]:
        """The token endpoint's answer for `code`; LoginRefused says why when there is none."""
        metadata = await self.metadata()
        try:
            token = await self._client(metadata).fetch_access_token(
                redirect_uri=transaction.redirect_uri,
                code=code,
                code_verifier=transaction.code_verifier,
            )
        except OAuthError as exc:
            status, message = _TOKEN_ERRORS.get(
                str(exc.error),
                (400, "The identity provider refused this sign-in. Please sign in again."),
            )
            reason = f"token endpoint refused the code: {exc.error}: {exc.description}"
            if status == 503:
                logger.error("OIDC provider misconfigured: %s", reason)
            raise LoginRefused(status, message, reason) from None
        except (httpx2.HTTPError, ValueError) as exc:
            raise ProviderUnavailable(f"token endpoint: {type(exc).__name__}: {exc}") from None
        if not isinstance(token, Mapping) or not isinstance(token.get("id_token"), str):
            raise LoginRefused(
                503,
                "Sign-in is unavailable: the identity provider did not say who you are.",
                "token endpoint answered without an id_token",
            )
        return dict(token)

    async def verify_id_token(
        self, id_token: str, *, nonce: str, access_token: str | None
    ) -> dict[str, Any]:
        metadata = await self.metadata()
        claims = await verify_jwt(
            id_token,
            self.keys,
            algorithms=self.settings.algorithms,
            issuer=str(metadata["issuer"]),
            audience=self.settings.client_id,
        )
        check_id_token(
            claims, client_id=self.settings.client_id, nonce=nonce, access_token=access_token
        )
        return claims

    async def verify_access_token(self, token: str) -> dict[str, Any]:
        """Claims of a provider access token meant for this portal (`access_audience`)."""
        if self.access_audience is None:
            raise TokenError("no [auth.oidc] audience set: provider access tokens are not accepted")
        metadata = await self.metadata()
        return await verify_jwt(
            token,
            self.keys,
            algorithms=self.settings.algorithms,
            issuer=str(metadata["issuer"]),
            audience=self.access_audience,
        )

    async def userinfo(self, token: Mapping[str, Any]) -> dict[str, Any] | None:
        """The userinfo endpoint's claims, or None (no endpoint, or it refused the token)."""
        metadata = await self.metadata()
        if not metadata.get("userinfo_endpoint"):
            return None
        try:
            info = await self._client(metadata).userinfo(token=dict(token))
        except (OAuthError, httpx2.HTTPError, ValueError) as exc:
            logger.info("OIDC userinfo not used: %s", exc)
            return None
        return dict(info) if isinstance(info, Mapping) else None

    async def logout_url(self, id_token: str | None) -> str | None:
        """Where to send the browser to end the provider's session, when the provider offers it.
        Uses the cached metadata only: logging out of the portal never waits for the provider."""
        metadata = self.discovery.cached
        if not metadata or not metadata.get("end_session_endpoint"):
            return None
        extra = {} if id_token else {"client_id": self.settings.client_id}
        result = await self._client(metadata).create_logout_url(
            post_logout_redirect_uri=self.post_logout_redirect_uri,
            id_token_hint=id_token,
            **extra,
        )
        return str(result["url"])
