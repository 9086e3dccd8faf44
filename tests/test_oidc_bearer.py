"""The provider's access tokens as `Authorization: Bearer` on any mount: real tokens from the real
provider (client credentials), and forgeries of them."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from cryptography.hazmat.primitives import serialization
from itsdangerous import URLSafeTimedSerializer
from joserfc import jwt
from joserfc.jwk import JWKRegistry, RSAKey
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from portal_asgi.db import store
from portal_asgi.jose_utils import b64url_encode, unverified_claims, unverified_header

from .oidc.browser import Browser, user_access_token
from .oidc.harness import (
    AUDIENCE,
    MACHINE,
    MACHINE_ES,
    OTHER_APP,
    Provider,
    client_credentials_token,
    oidc_portal,
    oidc_settings,
    start_provider,
)
from .servers import RunningPortal, serve

JSON = {"accept": "application/json"}


@pytest.fixture(scope="module")
def portal(
    oidc_provider: Provider, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningPortal]:
    with oidc_portal(tmp_path_factory.mktemp("oidc-bearer"), oidc_provider) as running:
        yield running


def access_token(
    provider: Provider, client: tuple[str, str] = MACHINE, scope: str = "access:stable access:ea"
) -> str:
    return client_credentials_token(provider, client, scope)


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}", **JSON}


def test_provider_access_token_reaches_mounts_up_to_its_level(
    portal: RunningPortal, oidc_provider: Provider
) -> None:
    token = access_token(oidc_provider)
    with portal.client() as client:
        ok = client.get("/ea/whoami", headers=bearer(token))
        assert ok.status_code == 200
        assert ok.json()["user"] == "machine" and ok.json()["level"] == "ea"
        assert client.get("/devel/whoami", headers=bearer(token)).status_code == 403
        assert client.get("/ea/whoami", headers=JSON).status_code == 401


def test_es256_access_token_is_accepted(portal: RunningPortal, oidc_provider: Provider) -> None:
    token = access_token(oidc_provider, MACHINE_ES, scope="access:stable access:ea access:devel")
    assert unverified_header(token)["alg"] == "ES256"
    with portal.client() as client:
        ok = client.get("/devel/whoami", headers=bearer(token))
        assert ok.status_code == 200 and ok.json()["level"] == "devel"


def test_rejects_token_signed_by_another_key_under_the_providers_kid(
    portal: RunningPortal, oidc_provider: Provider
) -> None:
    # RFC 8725 section 3.3: a valid-looking token is only as good as its signature.
    real = unverified_claims(access_token(oidc_provider))
    claims = real | {"scope": "access:stable access:ea access:devel access:admin"}
    other = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})
    forged = jwt.encode({"alg": "RS256", "kid": "rsa-1", "typ": "at+jwt"}, claims, other)
    with portal.client() as client:
        refused = client.get("/top/whoami", headers=bearer(forged))
        assert refused.status_code == 401
        assert refused.json() == {"error": "authentication_required"}


def test_rejects_hs256_signed_with_the_providers_public_key(
    portal: RunningPortal, oidc_provider: Provider
) -> None:
    # RFC 8725 section 3.1: the algorithm comes from the allow-list, never from the token.
    jwks = httpx2.get(oidc_provider.issuer + "/jwks", timeout=10).json()
    rsa = next(key for key in jwks["keys"] if key["kty"] == "RSA")
    public = JWKRegistry.import_key(rsa)
    assert isinstance(public, RSAKey)
    pem = public.as_pem(private=False)
    claims = unverified_claims(access_token(oidc_provider)) | {"scope": "access:admin"}
    for secret in (pem, pem.strip(), json.dumps(rsa).encode()):
        header = b64url_encode(json.dumps({"alg": "HS256", "kid": rsa["kid"]}).encode())
        body = b64url_encode(json.dumps(claims).encode())
        mac = hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest()
        forged = f"{header}.{body}.{b64url_encode(mac)}"
        with portal.client() as client:
            assert client.get("/top/whoami", headers=bearer(forged)).status_code == 401
    serialization.load_pem_public_key(pem)  # it was a real public key


def test_rejects_unsigned_token(portal: RunningPortal, oidc_provider: Provider) -> None:
    # RFC 8725 section 3.1: "none" is not an algorithm the portal accepts.
    claims = unverified_claims(access_token(oidc_provider)) | {"scope": "access:admin"}
    header = b64url_encode(json.dumps({"alg": "none", "kid": "rsa-1"}).encode())
    for forged in (f"{header}.{b64url_encode(json.dumps(claims).encode())}.", f"{header}.x.y"):
        with portal.client() as client:
            assert client.get("/stable/whoami", headers=bearer(forged)).status_code == 401


def test_rejects_id_token_used_as_access_token(portal: RunningPortal) -> None:
    # RFC 8725 section 3.9: an ID token's audience is the portal's client, not its API.
    with Browser(portal.url) as browser:
        assert browser.login("okta-groups").status_code == 303
        hint = browser.cookie("portal_oidc_hint")
        assert hint is not None
    # the cookie is signed, not encrypted: its payload reads without the portal's secret
    id_token = URLSafeTimedSerializer("unused").load_payload(hint.rsplit(".", 2)[0].encode())[
        "id_token"
    ]
    assert unverified_claims(id_token)["aud"] == "portal"
    with portal.client() as client:
        assert client.get("/stable/whoami", headers=bearer(id_token)).status_code == 401


def test_rejects_token_from_another_provider_with_the_same_kid(
    portal: RunningPortal, tmp_path: Path
) -> None:
    # RFC 8725 section 3.8: the issuer is checked, and keys are the configured issuer's only.
    with start_provider(tmp_path) as stranger:
        token = access_token(stranger)
        assert unverified_claims(token)["aud"] == AUDIENCE
        with portal.client() as client:
            assert client.get("/stable/whoami", headers=bearer(token)).status_code == 401


def test_provider_token_cannot_borrow_a_local_accounts_name(
    oidc_provider: Provider, tmp_path: Path
) -> None:
    with oidc_portal(tmp_path, oidc_provider) as running:
        running.add_user("machine", "admin")
        running.wait_until(
            lambda: (
                running.portal.runtime is not None
                and running.portal.runtime.directory.user("machine") is not None
            )
        )
        token = access_token(oidc_provider)
        with running.client() as client:
            whoami = client.get("/ea/whoami", headers=bearer(token))
            assert whoami.status_code == 200
            assert whoami.json()["user"].startswith("machine~")
            assert whoami.json()["level"] == "ea"
            assert client.get("/top/whoami", headers=bearer(token)).status_code == 403


def test_portal_without_audience_accepts_no_provider_tokens(
    oidc_provider: Provider, tmp_path: Path
) -> None:
    # RFC 8725 section 3.9: without an audience to check, no provider token is trusted.
    with oidc_portal(tmp_path, oidc_provider, audience=None) as running:
        with running.client() as client:
            token = access_token(oidc_provider)
            assert client.get("/stable/whoami", headers=bearer(token)).status_code == 401


def test_users_access_token_is_named_as_the_portal_knows_them(
    oidc_provider: Provider, tmp_path: Path
) -> None:
    # A person's access token (got by another client of theirs): level from its claims, name
    # from the portal's user table, and refused once the portal disabled them.
    with oidc_portal(
        tmp_path, oidc_provider, level_claim="groups", level_prefix="portal-"
    ) as running:
        running.add_user("admin", "admin")  # a local account the impostor's name collides with
        with Browser(running.url) as browser:
            assert browser.login("impostor").status_code == 303
            portal_name = browser.get("/top/whoami").json()["user"]
        assert portal_name.startswith("admin~")
        token = user_access_token(oidc_provider.issuer, "impostor", OTHER_APP, AUDIENCE)
        assert unverified_claims(token)["sub"] == "impostor"
        with running.client() as client:
            whoami = client.get("/top/whoami", headers=bearer(token))
            assert whoami.status_code == 200
            assert whoami.json()["user"] == portal_name and whoami.json()["level"] == "admin"
        running.run_db(lambda db: store.set_active(db, portal_name, False))

        def disabled() -> bool:
            runtime = running.portal.runtime
            state = runtime.directory.user(portal_name) if runtime else None
            return state is not None and not state.active

        running.wait_until(disabled)
        with running.client() as client:
            assert client.get("/stable/whoami", headers=bearer(token)).status_code == 401


def test_provider_access_token_opens_websockets_up_to_its_level(
    oidc_provider: Provider, tmp_path: Path
) -> None:
    # Provider Bearer tokens on every mount, WebSocket handshakes included.
    mounts = '[[mount]]\npath = "/echo"\napp = "products.echo.app:app"\nlevel = "ea"\n'
    with serve(tmp_path, auth=oidc_settings(oidc_provider), mounts=mounts) as running:
        url = running.ws_url + "/echo/ws"
        token = access_token(oidc_provider, scope="access:stable access:ea")
        with connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
            hello = json.loads(ws.recv(timeout=5))
            assert hello["user"] == "machine" and hello["level"] == "ea"
            assert "access:ea" in hello["scopes"]
        low = access_token(oidc_provider, scope="access:stable")
        with (
            pytest.raises(InvalidStatus) as caught,
            connect(url, additional_headers={"Authorization": f"Bearer {low}"}),
        ):
            pass
        assert caught.value.response.status_code == 403
