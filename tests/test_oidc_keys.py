"""The discovery and key caches and the JWT checks on their own, with a provider faked in-process
(httpx2 MockTransport) so time, rotation and outages can be set exactly."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey, RSAKey

from portal_asgi.exceptions import ProviderUnavailable, SettingsError, TokenError
from portal_asgi.jose_utils import b64url_encode
from portal_asgi.oidc import OIDCProvider
from portal_asgi.oidc.discovery import Discovery
from portal_asgi.oidc.jwt import check_id_token, verify_jwt
from portal_asgi.oidc.keys import KeyCache
from portal_asgi.settings import load_settings

ISSUER = "https://idp.example"
AUDIENCE = "https://api.example"
ALGS = ("RS256", "ES256")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeIdP:
    """Discovery and JWKS endpoints whose keys, availability and hit counts the test controls."""

    def __init__(self) -> None:
        self.keys: list[RSAKey | ECKey] = [RSAKey.generate_key(2048, parameters={"kid": "k1"})]
        self.extra_jwks: list[dict[str, Any]] = []
        self.up = True
        self.jwks_hits = 0
        self.discovery_hits = 0
        self.issuer = ISSUER

    def handler(self, request: httpx2.Request) -> httpx2.Response:
        if not self.up:
            raise httpx2.ConnectError("connection refused", request=request)
        if request.url.path == "/.well-known/openid-configuration":
            self.discovery_hits += 1
            return httpx2.Response(
                200,
                json={
                    "issuer": self.issuer,
                    "authorization_endpoint": ISSUER + "/auth",
                    "token_endpoint": ISSUER + "/token",
                    "jwks_uri": ISSUER + "/jwks",
                },
            )
        if request.url.path == "/jwks":
            self.jwks_hits += 1
            keys = [key.as_dict(private=False) for key in self.keys]
            return httpx2.Response(200, json={"keys": keys + self.extra_jwks})
        return httpx2.Response(404)

    def sign(self, key: RSAKey | ECKey | None = None, **claims: Any) -> str:
        key = key or self.keys[0]
        now = int(time.time())
        body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "u1", "iat": now, "exp": now + 300}
        alg = "ES256" if isinstance(key, ECKey) else "RS256"
        return jwt.encode({"alg": alg, "kid": key.kid}, body | claims, key)


def _parts(idp: FakeIdP, clock: Clock) -> tuple[Discovery, KeyCache]:
    transport = httpx2.MockTransport(idp.handler)
    discovery = Discovery(ISSUER, timeout=5, transport=transport, clock=clock)
    return discovery, KeyCache(discovery, transport=transport, clock=clock)


def run(coro_factory: Callable[[], Any]) -> Any:
    return asyncio.run(coro_factory())


def verify(keys: KeyCache, token: str, audience: str = AUDIENCE) -> dict[str, Any]:
    result: dict[str, Any] = run(
        lambda: verify_jwt(token, keys, algorithms=ALGS, issuer=ISSUER, audience=audience)
    )
    return result


def test_verifies_a_token_and_caches_the_keys() -> None:
    idp, clock = FakeIdP(), Clock()
    _, keys = _parts(idp, clock)
    assert verify(keys, idp.sign())["sub"] == "u1"
    assert verify(keys, idp.sign(sub="u2"))["sub"] == "u2"
    assert idp.jwks_hits == 1


def test_unknown_kid_refetches_at_most_once_a_minute() -> None:
    # A flood of made-up kids must not become a flood of requests to the provider.
    idp, clock = FakeIdP(), Clock()
    _, keys = _parts(idp, clock)
    verify(keys, idp.sign())
    stranger = RSAKey.generate_key(2048, parameters={"kid": "made-up"})
    with pytest.raises(TokenError):
        verify(keys, idp.sign(stranger))
    assert idp.jwks_hits == 1  # the keys were fetched less than a minute ago
    clock.now += 61
    for _ in range(20):
        with pytest.raises(TokenError):
            verify(keys, idp.sign(stranger))
        clock.now += 1
    assert idp.jwks_hits == 2  # the first load, then one refetch for the unknown kid
    # the provider rotates its key: after the minute, the new kid is fetched and accepted
    rotated = RSAKey.generate_key(2048, parameters={"kid": "k2"})
    idp.keys.append(rotated)
    clock.now += 60
    assert verify(keys, idp.sign(rotated))["sub"] == "u1"
    assert idp.jwks_hits == 3


def test_cached_keys_serve_while_the_provider_is_unreachable() -> None:
    idp, clock = FakeIdP(), Clock()
    _, keys = _parts(idp, clock)
    verify(keys, idp.sign())
    idp.up = False
    clock.now += 7200  # discovery and keys both stale
    assert verify(keys, idp.sign())["sub"] == "u1"
    with pytest.raises(TokenError):
        verify(keys, idp.sign(RSAKey.generate_key(2048, parameters={"kid": "new"})))


def test_es256_tokens_verify_and_key_types_must_match_the_algorithm() -> None:
    idp, clock = FakeIdP(), Clock()
    ec = ECKey.generate_key("P-256", parameters={"kid": "e1"})
    idp.keys.append(ec)
    _, keys = _parts(idp, clock)
    assert verify(keys, idp.sign(ec))["sub"] == "u1"
    # an ES256 header naming the RSA key's kid finds no key of the right type
    token = jwt.encode({"alg": "ES256", "kid": "k1"}, {"iss": ISSUER}, ec)
    with pytest.raises(TokenError):
        verify(keys, token)


@pytest.mark.parametrize(
    ("claims", "problem"),
    [
        ({"exp": int(time.time()) - 3600}, "expired"),
        ({"exp": None}, "no expiry"),
        ({"nbf": int(time.time()) + 3600}, "not valid yet"),
        ({"iat": int(time.time()) + 3600}, "issued in the future"),
        ({"iss": "https://evil.example"}, "issuer"),
        ({"aud": "https://other.example"}, "audience"),
        ({"aud": ["https://other.example", "x"]}, "audience"),
        ({"sub": ""}, "subject"),
        ({"exp": "tomorrow"}, "not a number"),
    ],
)
def test_rejects_tokens_whose_registered_claims_do_not_hold(
    claims: dict[str, Any], problem: str
) -> None:
    # RFC 8725 sections 3.8 and 3.9, RFC 7519 section 4.1: iss, aud, exp, nbf are checked.
    idp, clock = FakeIdP(), Clock()
    _, keys = _parts(idp, clock)
    token = idp.sign(**{k: v for k, v in claims.items() if v is not None})
    if claims.get("exp", 0) is None:
        key = idp.keys[0]
        token = jwt.encode(
            {"alg": "RS256", "kid": "k1"}, {"iss": ISSUER, "aud": AUDIENCE, "sub": "u"}, key
        )
    with pytest.raises(TokenError, match=problem):
        verify(keys, token)


def test_rejects_hs256_even_when_the_jwks_publishes_a_symmetric_key() -> None:
    # RFC 8725 section 3.1: only the allow-listed asymmetric algorithms, only public keys.
    idp, clock = FakeIdP(), Clock()
    secret = OctKey.generate_key(256, parameters={"kid": "oct"})
    idp.extra_jwks.append(secret.as_dict(private=True))
    _, keys = _parts(idp, clock)
    token = jwt.encode({"alg": "HS256", "kid": "oct"}, {"iss": ISSUER, "aud": AUDIENCE}, secret)
    with pytest.raises(TokenError, match="not allowed"):
        verify(keys, token)
    with pytest.raises(TokenError):
        run(
            lambda: verify_jwt(token, keys, algorithms=("HS256",), issuer=ISSUER, audience=AUDIENCE)
        )


def test_rejects_critical_header_extensions() -> None:
    # RFC 7515 section 4.1.11: a `crit` the portal does not understand voids the token.
    idp, clock = FakeIdP(), Clock()
    _, keys = _parts(idp, clock)
    signed = idp.sign()
    header = {"alg": "RS256", "kid": "k1", "crit": ["exp"], "exp": 1}
    # joserfc will not sign an unknown `crit`; the header is swapped in (the check comes first)
    encoded = b64url_encode(json.dumps(header).encode())
    token = encoded + signed[signed.index(".") :]
    with pytest.raises(TokenError, match="critical"):
        verify(keys, token)


def test_id_token_checks_nonce_azp_and_at_hash() -> None:
    base = {"iat": 1, "nonce": "n1", "aud": "portal"}
    check_id_token(dict(base), client_id="portal", nonce="n1", access_token=None)
    with pytest.raises(TokenError, match="nonce"):
        check_id_token(dict(base), client_id="portal", nonce="other", access_token=None)
    with pytest.raises(TokenError, match="azp"):
        check_id_token(
            base | {"aud": ["portal", "other"]}, client_id="portal", nonce="n1", access_token=None
        )
    with pytest.raises(TokenError, match="at_hash"):
        check_id_token(base | {"at_hash": "AAAA"}, client_id="portal", nonce="n1", access_token="t")


def test_discovery_must_name_the_configured_issuer() -> None:
    # OpenID Connect Discovery 1.0 section 4.3.
    idp, clock = FakeIdP(), Clock()
    idp.issuer = "https://evil.example"
    discovery, _ = _parts(idp, clock)
    with pytest.raises(ProviderUnavailable, match="names issuer"):
        run(lambda: discovery.metadata())


def test_failed_discovery_is_remembered_briefly_not_retried_per_request() -> None:
    idp, clock = FakeIdP(), Clock()
    idp.up = False
    discovery, _ = _parts(idp, clock)
    for _ in range(3):
        with pytest.raises(ProviderUnavailable):
            run(lambda: discovery.metadata(max_age=5, stale_ok=False))
    idp.up = True
    with pytest.raises(ProviderUnavailable):
        run(lambda: discovery.metadata(max_age=5, stale_ok=False))
    clock.now += 6
    assert run(lambda: discovery.metadata(max_age=5, stale_ok=False))["issuer"] == ISSUER
    assert idp.discovery_hits == 1


def _settings(tmp_path: Path, oidc: str) -> Path:
    file = tmp_path / "settings.toml"
    file.write_text(
        '[portal]\nbase_url = "https://portal.example"\n\n[auth]\nprovider = "oidc"\n\n'
        '[auth.oidc]\nissuer = "https://idp.example"\nclient_id = "c"\nclient_secret = "env:S"\n'
        + oidc
    )
    return file


def test_oidc_settings_defaults_and_new_keys(tmp_path: Path) -> None:
    settings = load_settings(_settings(tmp_path, ""), environ={"S": "s3cret"})
    oidc = settings.auth.oidc
    assert oidc is not None
    assert oidc.algorithms == ("RS256", "ES256")
    assert oidc.redirect_uri == "" and oidc.post_logout_redirect_uri == ""
    assert "s3cret" not in repr(oidc)
    custom = load_settings(
        _settings(
            tmp_path,
            'redirect_uri = "https://portal.example/auth/callback"\nalgorithms = ["ES256"]\n'
            'username_claim = "email"\npost_logout_redirect_uri = "https://portal.example/bye"\n',
        ),
        environ={"S": "s"},
    ).auth.oidc
    assert custom is not None
    assert custom.algorithms == ("ES256",) and custom.username_claim == "email"


@pytest.mark.parametrize("algorithms", ['["HS256"]', '["none"]', "[]", '["RS256", "HS512"]'])
def test_oidc_settings_refuse_symmetric_or_no_algorithms(tmp_path: Path, algorithms: str) -> None:
    # RFC 8725 section 3.1: an allow-list of asymmetric algorithms only.
    with pytest.raises(SettingsError, match=r"auth\.oidc\.algorithms"):
        load_settings(_settings(tmp_path, f"algorithms = {algorithms}\n"), environ={"S": "s"})


def test_redirect_uris_default_to_the_portals_base_url(tmp_path: Path) -> None:
    settings = load_settings(_settings(tmp_path, ""), environ={"S": "s"})
    assert settings.auth.oidc is not None
    provider = OIDCProvider(settings.auth.oidc, base_url=settings.portal.base_url)
    assert provider.redirect_uri == "https://portal.example/auth/callback"
    assert provider.post_logout_redirect_uri == "https://portal.example/"
    custom = load_settings(
        _settings(
            tmp_path,
            'redirect_uri = "https://sso.portal.example/auth/callback"\n'
            'post_logout_redirect_uri = "https://portal.example/bye"\n',
        ),
        environ={"S": "s"},
    )
    assert custom.auth.oidc is not None
    moved = OIDCProvider(custom.auth.oidc, base_url=custom.portal.base_url)
    assert moved.redirect_uri == "https://sso.portal.example/auth/callback"
    assert moved.post_logout_redirect_uri == "https://portal.example/bye"
