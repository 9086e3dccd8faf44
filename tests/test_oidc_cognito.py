"""Amazon Cognito's access tokens as Bearer: they carry no `aud`, so `client_id` (one of the
portal's) and `token_use = "access"` are checked instead, as strictly, with issuer and expiry as
usual; a Cognito ID token is never a Bearer token.

The tokens come from the real provider (panva's oidc-provider), configured in provider.mjs to
shape them as Cognito does: `client_id`, `token_use`, `username`, `cognito:groups`, no `aud`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from itsdangerous import URLSafeTimedSerializer
from joserfc import jwt

from portal_asgi.exceptions import SettingsError, TokenError
from portal_asgi.jose_utils import unverified_claims
from portal_asgi.oidc.discovery import Discovery
from portal_asgi.oidc.jwt import CognitoClients, verify_jwt
from portal_asgi.oidc.keys import KeyCache
from portal_asgi.settings import OIDCSettings, Secret, load_settings

from .oidc.browser import Browser, user_access_token
from .oidc.harness import (
    AUDIENCE,
    COGNITO_EXPIRED,
    COGNITO_MACHINE,
    COGNITO_STRANGER,
    COGNITO_WRONG_USE,
    MACHINE,
    PORTAL_COGNITO,
    Provider,
    client_credentials_token,
    oidc_portal,
    oidc_settings,
    start_provider,
)
from .servers import RunningPortal, settings_text
from .test_oidc_keys import ISSUER as KEYS_ISSUER
from .test_oidc_keys import FakeIdP

JSON = {"accept": "application/json"}
CLIENTS = ["portal-cognito", "cognito-machine", "cognito-wrong-use", "cognito-expired"]
COGNITO = {
    "client": PORTAL_COGNITO,
    "audience": None,
    "level_claim": "cognito:groups",
    "level_prefix": "portal_",
    "extra": f'provider_kind = "cognito"\ntoken_client_ids = {CLIENTS!r}\n'.replace("'", '"'),
}


@pytest.fixture(scope="module")
def portal(
    oidc_provider: Provider, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningPortal]:
    with oidc_portal(tmp_path_factory.mktemp("oidc-cognito"), oidc_provider, **COGNITO) as running:
        yield running


def _get(portal: RunningPortal, path: str, token: str) -> httpx2.Response:
    with portal.client() as client:
        return client.get(path, headers={"authorization": f"Bearer {token}", **JSON})


def _assert_refused(response: httpx2.Response) -> None:
    """Treated as no identity: 401, the portal's own answer, no product body, no session."""
    assert response.status_code == 401
    assert response.json() == {"error": "authentication_required"}
    assert not any(c.startswith("portal_session=") for c in response.headers.get_list("set-cookie"))


def test_cognito_access_tokens_are_accepted_by_client_id_and_token_use(
    portal: RunningPortal, oidc_provider: Provider, tmp_path: Path
) -> None:
    machine = client_credentials_token(oidc_provider, COGNITO_MACHINE)
    claims = unverified_claims(machine)
    assert "aud" not in claims  # shaped as Cognito's
    assert (claims["client_id"], claims["token_use"]) == ("cognito-machine", "access")
    ok = _get(portal, "/stable/whoami", machine)
    assert ok.status_code == 200
    assert ok.json()["user"] == "cognito-machine" and ok.json()["level"] == "stable"
    above = _get(portal, "/ea/whoami", machine)  # no cognito:groups: the lowest level
    assert above.status_code == 403 and "mount_level" not in above.text
    # a person's access token from the portal's own app client: the level from cognito:groups
    person = user_access_token(oidc_provider.issuer, "cognito-groups", PORTAL_COGNITO, AUDIENCE)
    assert unverified_claims(person)["cognito:groups"] == ["portal_admin"]
    top = _get(portal, "/top/whoami", person)
    assert top.status_code == 200
    assert top.json()["user"] == "cognito-groups" and top.json()["level"] == "admin"
    # a portal set up for another provider (checking `aud`) refuses the same token
    with oidc_portal(tmp_path, oidc_provider) as generic:
        _assert_refused(_get(generic, "/stable/whoami", machine))


def _id_token(portal: RunningPortal) -> str:
    """The Cognito-shaped ID token of a sign-in, from the hint cookie kept for logout."""
    with Browser(portal.url) as browser:
        assert browser.login("cognito-groups").status_code == 303
        assert browser.get("/top/whoami", headers=JSON).json()["level"] == "admin"
        hint = browser.cookie("portal_oidc_hint")
    assert hint is not None
    payload = URLSafeTimedSerializer("unused").load_payload(hint.rsplit(".", 2)[0].encode())
    token: str = payload["id_token"]
    claims = unverified_claims(token)
    assert (claims["aud"], claims["token_use"]) == ("portal-cognito", "id")
    return token


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("another app client", "client_id 'cognito-stranger' is not one of portal-cognito, "),
        ("token_use id", "token_use 'id' is not 'access'"),
        ("expired", "expired"),
        ("id token as bearer", "token_use 'id' is not 'access'"),
        ("aud but no client_id of ours", "token_use None is not 'access'"),
        # same kid, another key: the signature fails before the issuer is read
        ("another provider", "JWT signature or payload refused"),
    ],
)
def test_rejects_cognito_tokens_not_meant_for_the_portal(
    portal: RunningPortal,
    oidc_provider: Provider,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    case: str,
    reason: str,
) -> None:
    # RFC 8725 sections 3.8 and 3.9: issuer and audience (here client_id and token_use) checked.
    if case == "another app client":
        token = client_credentials_token(oidc_provider, COGNITO_STRANGER)
    elif case == "token_use id":
        token = client_credentials_token(oidc_provider, COGNITO_WRONG_USE)
        assert unverified_claims(token)["client_id"] in CLIENTS
    elif case == "expired":
        token = client_credentials_token(oidc_provider, COGNITO_EXPIRED)
    elif case == "id token as bearer":
        token = _id_token(portal)
    elif case == "aud but no client_id of ours":
        token = client_credentials_token(oidc_provider, MACHINE)
        assert unverified_claims(token)["aud"] == AUDIENCE
    else:
        with start_provider(tmp_path) as stranger:
            token = client_credentials_token(stranger, COGNITO_MACHINE)
    with caplog.at_level(logging.INFO, logger="portal_asgi.oidc"):
        _assert_refused(_get(portal, "/stable/whoami", token))
    assert f"provider access token refused: {reason}" in caplog.text


def _cognito(tmp: Path, issuer: str, extra: str = "", audience: str | None = None) -> OIDCSettings:
    file = tmp / "settings.toml"
    auth = oidc_settings(issuer, audience=audience, extra=extra)
    file.write_text(settings_text(tmp, auth=auth))
    oidc = load_settings(file).auth.oidc
    assert oidc is not None
    return oidc


def test_cognito_is_recognised_by_its_issuer_or_named_in_settings(tmp_path: Path) -> None:
    pool = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123"
    assert _cognito(tmp_path, pool).cognito
    assert not _cognito(tmp_path, pool, 'provider_kind = "generic"').cognito
    assert _cognito(tmp_path, "http://127.0.0.1:9", 'provider_kind = "cognito"').cognito
    assert not _cognito(tmp_path, "https://cognito-idp.example.org/pool").cognito
    assert not _cognito(tmp_path, "https://idp.example/", audience="https://api").cognito
    settings = OIDCSettings(issuer=pool, client_id="app", client_secret=Secret("s"))
    assert settings.cognito and settings.token_client_ids == ()


@pytest.mark.parametrize(
    ("issuer", "extra", "audience", "key"),
    [
        # Cognito's access tokens have no aud: an audience would refuse them all, silently
        ("https://cognito-idp.eu-west-1.amazonaws.com/p", "", "https://api", "auth.oidc.audience"),
        ("https://idp.example/", 'token_client_ids = ["x"]', None, "auth.oidc.token_client_ids"),
        ("https://idp.example/", 'provider_kind = "aws"', None, "auth.oidc.provider_kind"),
    ],
)
def test_cognito_settings_that_cannot_work_are_refused(
    tmp_path: Path, issuer: str, extra: str, audience: str | None, key: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        _cognito(tmp_path, issuer, extra, audience)
    assert caught.value.key == key


@pytest.mark.parametrize(
    ("claims", "problem"),
    [
        ({"iss": "https://other.example"}, "issuer 'https://other.example' is not"),
        ({"client_id": None}, "client_id None is not one of app, cli"),
        ({"client_id": ["app"]}, r"client_id \['app'\] is not one of"),
        ({"token_use": None}, "token_use None is not 'access'"),
        ({"token_use": "id", "aud": "app"}, "token_use 'id' is not 'access'"),
        ({"exp": 1000}, "expired"),
        ({"sub": None}, "no subject"),
    ],
)
def test_cognito_claims_are_checked_as_strictly_as_aud(
    claims: dict[str, object], problem: str
) -> None:
    # RFC 8725 sections 3.8 and 3.9, for a provider whose access tokens have no aud.
    idp = FakeIdP()
    transport = httpx2.MockTransport(idp.handler)
    keys = KeyCache(Discovery(KEYS_ISSUER, timeout=5, transport=transport), transport=transport)

    def cognito_token(**changes: object) -> str:
        """Signed by the provider's key, shaped as Cognito's: no aud (None leaves a claim out)."""
        now = int(time.time())
        body = {"iss": KEYS_ISSUER, "sub": "u1", "iat": now, "exp": now + 300}
        body |= {"client_id": "cli", "token_use": "access"} | changes
        payload = {k: v for k, v in body.items() if v is not None}
        return jwt.encode({"alg": "RS256", "kid": "k1"}, payload, idp.keys[0])

    audience = CognitoClients(("app", "cli"))

    async def check(token: str) -> dict[str, object]:
        return await verify_jwt(
            token, keys, algorithms=("RS256",), issuer=KEYS_ISSUER, audience=audience
        )

    with pytest.raises(TokenError, match=problem):
        asyncio.run(check(cognito_token(**claims)))
    assert asyncio.run(check(cognito_token()))["client_id"] == "cli"
