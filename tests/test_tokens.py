"""The portal's JWT wrapper (portal_asgi.tokens): what it signs, what it accepts, what it caches."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import jose.backends
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jose import jwt

from portal_asgi.exceptions import TokenError
from portal_asgi.jose_utils import b64url_decode, b64url_encode
from portal_asgi.keys import ALGORITHM, SigningKey, generate_key, load_or_create_key
from portal_asgi.tokens import TokenCodec, assert_cryptography_backend

ISSUER = "http://127.0.0.1:8000"


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return generate_key()


@pytest.fixture
def codec(key: SigningKey) -> TokenCodec:
    return TokenCodec(key, issuer=ISSUER)


def claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    made: dict[str, Any] = {
        "typ": "session",
        "sub": "alice",
        "uid": "uid-alice",
        "sid": "sid-123",
        "lvl": "ea",
        "scope": "access:stable access:ea",
        "iat": now,
        "exp": now + 600,
    }
    made.update(changes)
    return {name: value for name, value in made.items() if value is not None}


def raw_token(header: dict[str, Any], body: dict[str, Any], signature: bytes = b"") -> str:
    return f"{b64url_encode(json.dumps(header).encode())}.{b64url_encode(json.dumps(body).encode())}.{b64url_encode(signature)}"


def encode(body: dict[str, Any], key: SigningKey, **headers: Any) -> str:
    """Sign with python-jose directly, with whatever headers a forger would choose."""
    full = {"iss": ISSUER, "aud": ISSUER, **body}
    token: str = jwt.encode(full, key.private_pem, algorithm=ALGORITHM, headers=headers)
    return token


def refused(codec: TokenCodec, token: str, reason: str = "") -> None:
    with pytest.raises(TokenError) as caught:
        codec.verify(token)
    assert reason in str(caught.value)
    assert token not in codec._cache  # a refused token is never cached


# --- signing and verifying -------------------------------------------------------------------


def test_sign_and_verify(codec: TokenCodec, key: SigningKey) -> None:
    token = codec.sign(claims())
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "ES256"
    assert header["kid"] == key.kid
    verified = codec.verify(token)
    assert verified["sub"] == "alice"
    assert verified["sid"] == "sid-123"
    assert verified["iss"] == ISSUER
    assert verified["aud"] == ISSUER
    assert verified["scope"] == "access:stable access:ea"


def test_another_codec_with_the_same_key_verifies(codec: TokenCodec, key: SigningKey) -> None:
    """Every worker loads the same key file: a token signed by one verifies in all."""
    assert TokenCodec(key, issuer=ISSUER).verify(codec.sign(claims()))["sub"] == "alice"


def test_key_file_round_trip(tmp_path: Any) -> None:
    first = load_or_create_key(tmp_path / "var" / "key.pem")
    again = load_or_create_key(tmp_path / "var" / "key.pem")
    assert first.kid == again.kid
    assert (tmp_path / "var" / "key.pem").stat().st_mode & 0o777 == 0o600
    token = TokenCodec(first, issuer=ISSUER).sign(claims())
    assert TokenCodec(again, issuer=ISSUER).verify(token)["sub"] == "alice"
    assert "PRIVATE" not in repr(first)


def test_jwks_holds_the_public_key_only(key: SigningKey) -> None:
    (jwk,) = key.jwks["keys"]
    assert jwk["kid"] == key.kid
    assert jwk["alg"] == "ES256"
    assert jwk["kty"] == "EC" and jwk["crv"] == "P-256"
    assert "d" not in jwk


@pytest.mark.parametrize("missing", ["sub", "uid", "sid", "exp", "iat"])
def test_sign_refuses_incomplete_claims(codec: TokenCodec, missing: str) -> None:
    with pytest.raises(ValueError, match=missing):
        codec.sign(claims(**{missing: None}))


# --- the cache -------------------------------------------------------------------------------


def test_cache_returns_the_same_claims_without_verifying_again(
    codec: TokenCodec, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = codec.sign(claims())
    first = codec.verify(token)
    calls: list[str] = []

    def no_more_checks(*args: Any, **kwargs: Any) -> Any:
        calls.append("decode")
        raise AssertionError("the signature was checked again")

    monkeypatch.setattr(jwt, "decode", no_more_checks)
    monkeypatch.setattr(jwt, "get_unverified_header", no_more_checks)
    assert codec.verify(token) is first
    assert codec.verify(token) is first
    assert calls == []


def test_cached_token_still_expires(codec: TokenCodec) -> None:
    token = codec.sign(claims())
    exp = codec.verify(token)["exp"]
    assert codec.verify(token, now=exp - 1)["sub"] == "alice"
    with pytest.raises(TokenError, match="expired"):
        codec.verify(token, now=exp)
    assert token not in codec._cache


def test_cache_is_bounded(key: SigningKey) -> None:
    codec = TokenCodec(key, issuer=ISSUER, cache_size=3)
    minted = [codec.sign(claims(sid=f"sid-{n}")) for n in range(5)]
    for token in minted:
        codec.verify(token)
    assert len(codec._cache) == 3
    assert list(codec._cache) == minted[2:]
    assert codec.verify(minted[0])["sid"] == "sid-0"  # evicted, verified again: still fine


# --- what is refused -------------------------------------------------------------------------


def test_expired(codec: TokenCodec) -> None:
    now = int(time.time())
    refused(codec, codec.sign(claims(iat=now - 100, exp=now - 1)), "expired")


def test_not_yet_valid(codec: TokenCodec) -> None:
    refused(codec, codec.sign(claims(nbf=int(time.time()) + 600)))


def test_wrong_issuer(key: SigningKey) -> None:
    other = TokenCodec(key, issuer="https://other.example")
    refused(TokenCodec(key, issuer=ISSUER), other.sign(claims()))


def test_wrong_issuer_right_audience(codec: TokenCodec) -> None:
    refused(codec, codec.sign(claims(iss="https://other.example")))


def test_wrong_audience(codec: TokenCodec) -> None:
    refused(codec, codec.sign(claims(aud="https://other.example")))
    refused(codec, codec.sign(claims(aud=["https://other.example"])))


@pytest.mark.parametrize("missing", ["exp", "iat", "iss", "aud", "sub", "uid", "sid"])
def test_missing_required_claim(codec: TokenCodec, key: SigningKey, missing: str) -> None:
    body = {"iss": ISSUER, "aud": ISSUER, **claims()}
    del body[missing]
    token: str = jwt.encode(body, key.private_pem, algorithm=ALGORITHM, headers={"kid": key.kid})
    refused(codec, token)


@pytest.mark.parametrize(
    "change", [{"sid": 123}, {"exp": "tomorrow"}, {"sub": 5}, {"uid": 7}, {"uid": ["u"]}]
)
def test_claims_of_the_wrong_type(
    codec: TokenCodec, key: SigningKey, change: dict[str, Any]
) -> None:
    refused(codec, encode(claims(**change), key, kid=key.kid))


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none(codec: TokenCodec, key: SigningKey, alg: str) -> None:
    body = {"iss": ISSUER, "aud": ISSUER, **claims()}
    refused(codec, raw_token({"alg": alg, "typ": "JWT", "kid": key.kid}, body), "not allowed")


def test_no_alg(codec: TokenCodec, key: SigningKey) -> None:
    body = {"iss": ISSUER, "aud": ISSUER, **claims()}
    refused(codec, raw_token({"typ": "JWT", "kid": key.kid}, body), "not allowed")


@pytest.mark.parametrize("secret", ["public_pem", "public_jwk"])
def test_hs256_signed_with_the_public_key(codec: TokenCodec, key: SigningKey, secret: str) -> None:
    """The classic key-confusion attack: HMAC keyed with the (public) verification key."""
    material = key.public_pem if secret == "public_pem" else json.dumps(key.public_jwk)
    header = {"alg": "HS256", "typ": "JWT", "kid": key.kid}
    body = {"iss": ISSUER, "aud": ISSUER, **claims()}
    signing_input = (
        f"{b64url_encode(json.dumps(header).encode())}.{b64url_encode(json.dumps(body).encode())}"
    )
    signature = hmac.new(material.encode(), signing_input.encode(), hashlib.sha256).digest()
    refused(codec, f"{signing_input}.{b64url_encode(signature)}", "not allowed")


def test_other_asymmetric_algorithm(codec: TokenCodec, key: SigningKey) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = rsa_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    body = {"iss": ISSUER, "aud": ISSUER, **claims()}
    token = jwt.encode(body, pem.decode(), algorithm="RS256", headers={"kid": key.kid})
    refused(codec, token, "not allowed")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("jku", "https://evil.example/jwks.json"),
        ("x5u", "https://evil.example/cert.pem"),
        ("jwk", "ATTACKER"),
        ("x5c", ["MIIB..."]),
        ("crit", ["exp"]),
    ],
)
def test_headers_pointing_at_other_keys(
    codec: TokenCodec, key: SigningKey, name: str, value: Any
) -> None:
    """Refused even when the token is otherwise perfect (signed by our key, our kid)."""
    if value == "ATTACKER":
        value = generate_key().public_jwk
    refused(codec, encode(claims(), key, kid=key.kid, **{name: value}), "another key")


def test_jwk_header_with_the_attackers_own_key(codec: TokenCodec, key: SigningKey) -> None:
    attacker = generate_key()
    token = encode(claims(), attacker, kid=key.kid, jwk=attacker.public_jwk)
    refused(codec, token)


def test_unknown_kid(codec: TokenCodec, key: SigningKey) -> None:
    refused(codec, encode(claims(), key, kid="someone-else"), "unknown key")


def test_no_kid(codec: TokenCodec, key: SigningKey) -> None:
    refused(codec, encode(claims(), key), "unknown key")


def test_signed_by_another_key(codec: TokenCodec) -> None:
    other = generate_key()
    refused(codec, TokenCodec(other, issuer=ISSUER).sign(claims()), "unknown key")


def test_signed_by_another_key_claiming_our_kid(codec: TokenCodec, key: SigningKey) -> None:
    refused(codec, encode(claims(), generate_key(), kid=key.kid))


@pytest.mark.parametrize("change", [{"sub": "admin"}, {"lvl": "admin"}, {"exp": 4102444800}])
def test_tampered_payload(codec: TokenCodec, change: dict[str, Any]) -> None:
    header, payload, signature = codec.sign(claims()).split(".")
    body = json.loads(b64url_decode(payload))
    body.update(change)
    refused(codec, f"{header}.{b64url_encode(json.dumps(body).encode())}.{signature}")


def test_tampered_header(codec: TokenCodec, key: SigningKey) -> None:
    header, payload, signature = codec.sign(claims()).split(".")
    forged = {**json.loads(b64url_decode(header)), "typ": "XYZ"}
    refused(codec, f"{b64url_encode(json.dumps(forged).encode())}.{payload}.{signature}")


def test_signature_of_another_token(codec: TokenCodec) -> None:
    first = codec.sign(claims(sub="alice"))
    second = codec.sign(claims(sub="admin"))
    refused(codec, ".".join([*second.split(".")[:2], first.split(".")[2]]))


@pytest.mark.parametrize(
    "token", ["", "abc", "a.b", "a.b.c", "...", "e30.e30.", "x" * 9000, "eyJhbGciOiJFUzI1NiJ9.."]
)
def test_malformed(codec: TokenCodec, token: str) -> None:
    refused(codec, token)


def test_too_long(codec: TokenCodec, key: SigningKey) -> None:
    refused(codec, codec.sign(claims(padding="x" * 9000)), "too long")


# --- the backend -----------------------------------------------------------------------------


def test_assert_cryptography_backend_passes() -> None:
    assert_cryptography_backend()


def test_assert_cryptography_backend_refuses_a_fallback(
    monkeypatch: pytest.MonkeyPatch, key: SigningKey
) -> None:
    monkeypatch.setattr(jose.backends, "ECKey", object)
    with pytest.raises(RuntimeError, match="cryptography"):
        assert_cryptography_backend()
    with pytest.raises(RuntimeError):
        TokenCodec(key, issuer=ISSUER)


def test_forget_drops_revoked_and_expired_tokens_only(codec: TokenCodec) -> None:
    """What a change of the directory gives back: the verified tokens of revoked sessions and
    expired ones; the others stay cached."""
    now = int(time.time())
    kept, revoked, expired = (
        codec.sign(claims(sid="kept")),
        codec.sign(claims(sid="revoked")),
        codec.sign(claims(sid="expired", exp=now + 2)),
    )
    for token in (kept, revoked, expired):
        codec.verify(token)
    assert codec.forget(lambda sid: sid == "revoked", now=now + 5) == 2
    assert list(codec._cache) == [kept]
