"""Forged and replayed tokens, after jwt_tool's attack modes: each must leave the caller
anonymous (401 on a stable product) whether it rides in the session cookie or as a Bearer token,
and the product must never hear of it."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from portal_asgi.jose_utils import b64url_encode
from portal_asgi.keys import generate_key

from ..servers import RunningPortal
from .helpers import b64json, forge, runtime_of, session_claims, sign_es256, sign_hs256

Forger = Callable[[RunningPortal], str]


def _key(portal: RunningPortal) -> Any:
    assert portal.portal.runtime is not None
    return runtime_of(portal).key


def _header(portal: RunningPortal, **extra: Any) -> dict[str, Any]:
    return {"alg": "ES256", "typ": "JWT", "kid": _key(portal).kid, **extra}


def _valid(portal: RunningPortal, **changes: Any) -> str:
    return sign_es256(
        _header(portal), session_claims(portal, "user-stable", **changes), _key(portal).private_pem
    )


def _valid_api(portal: RunningPortal, **changes: Any) -> str:
    """As `_valid`, an API token: what the Bearer branch of `assert_refused` must refuse for the
    reason under test, not because a session token is never a Bearer token."""
    return _valid(portal, **({"typ": "api", "sxp": None} | changes))


def assert_refused(portal: RunningPortal, token: str, bearer_token: str | None = None) -> None:
    """`token` refused in the session cookie, and `bearer_token` (else `token`) as a Bearer."""
    cookie_name = runtime_of(portal).cookie.name
    for how in ("cookie", "bearer"):
        with portal.client() as client:
            headers = {"accept": "application/json"}
            if how == "bearer":
                headers["authorization"] = f"Bearer {bearer_token or token}"
            else:
                client.cookies.set(cookie_name, token)
            response = client.get("/stable/whoami", headers=headers)
        assert response.status_code == 401, (how, response.status_code, response.text)
        assert "user-" not in response.text, how  # nothing from the product leaked
        # a forged token never gets re-issued as a fresh cookie
        assert cookie_name not in response.headers.get("set-cookie", "")


def test_a_valid_forgery_is_accepted_so_the_corpus_means_something(
    secure_portal: RunningPortal,
) -> None:
    """The control: the same construction with the real key gets in (else every test below
    would pass for the wrong reason), a session token in the cookie, an API token as Bearer."""
    cookie_name = runtime_of(secure_portal).cookie.name
    with secure_portal.client() as client:
        response = client.get(
            "/stable/whoami",
            headers={
                "authorization": f"Bearer {_valid_api(secure_portal)}",
                "accept": "application/json",
            },
        )
        assert response.status_code == 200
        assert response.json()["user"] == "user-stable"
    with secure_portal.client() as client:
        client.cookies.set(cookie_name, _valid(secure_portal))
        response = client.get("/stable/whoami", headers={"accept": "application/json"})
        assert response.status_code == 200
        assert response.json()["user"] == "user-stable"


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_rejects_alg_none_in_every_casing(secure_portal: RunningPortal, alg: str) -> None:
    """RFC 8725 section 3.1: the algorithm is the verifier's, never the token's."""
    claims = session_claims(secure_portal, "user-stable")
    assert_refused(secure_portal, forge(_header(secure_portal, alg=alg), claims, ""))
    assert_refused(secure_portal, forge(_header(secure_portal, alg=alg), claims, b"\0"))


def test_rejects_hs256_signed_with_public_key(secure_portal: RunningPortal) -> None:
    """RFC 8725 section 2.1 (key confusion): the public key used as an HMAC secret."""
    claims = session_claims(secure_portal, "user-stable")
    key = _key(secure_portal)
    for secret in (key.public_pem.encode(), json.dumps(key.public_jwk).encode()):
        assert_refused(
            secure_portal, sign_hs256(_header(secure_portal, alg="HS256"), claims, secret)
        )


def test_rejects_null_and_stripped_signatures(secure_portal: RunningPortal) -> None:
    """RFC 8725 section 3.1: an unsigned token is not a token."""
    valid = _valid(secure_portal)
    head, body, _ = valid.split(".")
    for token in (
        f"{head}.{body}.",
        f"{head}.{body}",
        f"{head}.{body}.AAAA",
        f"{head}.{body}.null",
    ):
        assert_refused(secure_portal, token)


def test_rejects_ecdsa_zero_signature(secure_portal: RunningPortal) -> None:
    """CVE-2022-21449 ("psychic signatures"): r = s = 0 must never verify."""
    claims = session_claims(secure_portal, "user-admin")
    assert_refused(secure_portal, forge(_header(secure_portal), claims, bytes(64)))
    # the same in DER form, as some libraries accept
    assert_refused(
        secure_portal, forge(_header(secure_portal), claims, b"\x30\x06\x02\x01\x00\x02\x01\x00")
    )


@pytest.mark.parametrize(
    "kid",
    [
        "../../../../../../dev/null",
        "/dev/null",
        "../../../../../../proc/self/environ",
        "x' UNION SELECT 'secret' -- ",
        "' OR '1'='1",
        "key.pem|cat /etc/passwd",
    ],
)
def test_rejects_kid_path_traversal_and_sql_injection(
    secure_portal: RunningPortal, kid: str
) -> None:
    """RFC 8725 section 3.10: `kid` names a key; it is never a path or a query."""
    claims = session_claims(secure_portal, "user-admin")
    for secret in (b"", b"secret", b"\0"):
        assert_refused(secure_portal, sign_hs256({"alg": "HS256", "kid": kid}, claims, secret))
    assert_refused(
        secure_portal, sign_es256({"alg": "ES256", "kid": kid}, claims, generate_key().private_pem)
    )


@pytest.mark.parametrize("pointer", ["jku", "x5u"])
def test_rejects_jku_and_x5u_pointing_elsewhere(secure_portal: RunningPortal, pointer: str) -> None:
    """RFC 8725 section 3.10: keys come from our configuration, never from a URL in the token."""
    attacker = generate_key()
    header = _header(secure_portal, **{pointer: "http://127.0.0.1:9/attacker/jwks.json"})
    header["kid"] = attacker.kid
    claims = session_claims(secure_portal, "user-admin")
    assert_refused(secure_portal, sign_es256(header, claims, attacker.private_pem))
    header["kid"] = _key(secure_portal).kid  # and with our kid, for good measure
    assert_refused(secure_portal, sign_es256(header, claims, attacker.private_pem))


def test_rejects_embedded_jwk(secure_portal: RunningPortal) -> None:
    """CVE-2018-0114: a key carried in the token's own header is not trusted."""
    attacker = generate_key()
    for kid in (attacker.kid, _key(secure_portal).kid):
        header = _header(secure_portal, jwk=attacker.public_jwk)
        header["kid"] = kid
        claims = session_claims(secure_portal, "user-admin")
        assert_refused(secure_portal, sign_es256(header, claims, attacker.private_pem))


def test_rejects_embedded_x5c(secure_portal: RunningPortal) -> None:
    """RFC 8725 section 3.10: neither a certificate chain in the header."""
    attacker = generate_key()
    header = _header(secure_portal, x5c=["MIIBszCCAVmgAwIBAgIUattacker"])
    assert_refused(
        secure_portal,
        sign_es256(header, session_claims(secure_portal, "user-admin"), attacker.private_pem),
    )


def test_rejects_token_from_another_portals_key(secure_portal: RunningPortal) -> None:
    """RFC 8725 section 3.4: a signature by another key, under its kid or under ours."""
    other = generate_key()
    claims = session_claims(secure_portal, "user-stable")
    assert_refused(
        secure_portal, sign_es256({"alg": "ES256", "kid": other.kid}, claims, other.private_pem)
    )
    assert_refused(secure_portal, sign_es256(_header(secure_portal), claims, other.private_pem))


def test_rejects_expired_token(secure_portal: RunningPortal) -> None:
    """RFC 7519 section 4.1.4: `exp` is enforced."""
    past = int(time.time()) - 60
    changes = {"iat": past - 600, "exp": past}
    assert_refused(
        secure_portal, _valid(secure_portal, **changes), _valid_api(secure_portal, **changes)
    )


def test_rejects_token_not_yet_valid(secure_portal: RunningPortal) -> None:
    """RFC 7519 section 4.1.5: `nbf` in the future."""
    future = int(time.time()) + 3600
    assert_refused(
        secure_portal, _valid(secure_portal, nbf=future), _valid_api(secure_portal, nbf=future)
    )


@pytest.mark.parametrize("claim", ["iss", "aud"])
def test_rejects_wrong_issuer_and_audience(secure_portal: RunningPortal, claim: str) -> None:
    """RFC 8725 sections 3.8 and 3.9: issuer and audience are checked."""
    for value in ("https://other-portal.example", None):
        assert_refused(
            secure_portal,
            _valid(secure_portal, **{claim: value}),
            _valid_api(secure_portal, **{claim: value}),
        )


@pytest.mark.parametrize("claim", ["exp", "sub", "uid", "sid", "iat"])
def test_rejects_token_missing_a_required_claim(secure_portal: RunningPortal, claim: str) -> None:
    """RFC 8725 section 3.7 (required claims): no `exp` is no token, not an eternal one; no
    `uid` is a token minted before users had one, refused as cleanly (401, never 500)."""
    assert_refused(
        secure_portal,
        _valid(secure_portal, **{claim: None}),
        _valid_api(secure_portal, **{claim: None}),
    )


def test_rejects_claims_tampered_after_signing(secure_portal: RunningPortal) -> None:
    """RFC 7515 section 5.2: the signature covers the claims."""
    head, _, signature = _valid(secure_portal).split(".")
    tampered = session_claims(secure_portal, "user-admin", lvl="admin")
    assert_refused(secure_portal, f"{head}.{b64json(tampered)}.{signature}")
    # and only the header changed (e.g. the kid), signature kept
    _, body, signature = _valid(secure_portal).split(".")
    assert_refused(
        secure_portal, f"{b64json(_header(secure_portal, cty='JWT'))}.{body}.{signature}"
    )


def test_rejects_revoked_session_after_logout(secure_portal: RunningPortal) -> None:
    """ASVS 3.3.1: logout ends the session server-side; the old cookie is dead."""
    cookie_name = runtime_of(secure_portal).cookie.name
    with secure_portal.logged_in("user-stable") as client:
        token = client.cookies.get(cookie_name)
        assert token
        assert client.get("/stable/whoami").status_code == 200
        csrf = secure_portal.csrf_token(client)
        assert client.post("/auth/logout", data={"csrf_token": csrf}).status_code == 303
    assert_refused(secure_portal, token)


def test_rejects_session_cookie_used_after_user_disabled(secure_portal: RunningPortal) -> None:
    """ASVS 3.3.1 (and 2.x): disabling a user revokes what they hold."""
    from portal_asgi.db import store

    secure_portal.add_user("doomed", "devel")
    secure_portal.wait_until(lambda: runtime_of(secure_portal).directory.user("doomed") is not None)
    cookie_name = runtime_of(secure_portal).cookie.name
    with secure_portal.logged_in("doomed") as client:
        token = client.cookies.get(cookie_name)
    assert token
    secure_portal.run_db(lambda db: store.set_active(db, "doomed", False))
    secure_portal.wait_until(
        lambda: getattr(runtime_of(secure_portal).directory.user("doomed"), "active", True) is False
    )
    assert_refused(secure_portal, token)


def test_raising_the_level_claim_by_hand_gains_nothing(secure_portal: RunningPortal) -> None:
    """ASVS 4.1.2: the level comes from the portal's directory, not from the token. A token
    validly signed (the worst case: a leaked key) for user-stable that claims admin still opens
    only what user-stable may open."""
    token = _valid_api(
        secure_portal,
        lvl="admin",
        scope="access:stable access:ea access:devel access:admin",
        permissions=["access:admin"],
    )
    headers = {"authorization": f"Bearer {token}", "accept": "application/json"}
    with secure_portal.client() as client:
        mine = client.get("/stable/whoami", headers=headers)
        assert mine.status_code == 200
        assert mine.json()["level"] == "stable"
        for above in ("/ea/whoami", "/devel/whoami", "/top/whoami", "/dashboard/me"):
            response = client.get(above, headers=headers)
            assert response.status_code == 403, above
            assert "whoami" not in response.text and "scopes" not in response.text


def test_api_token_in_the_session_cookie_is_refused(secure_portal: RunningPortal) -> None:
    """RFC 8725 section 3.11 (explicit typing): an API token is not a session."""
    assert_refused_as_cookie_only = _valid(secure_portal, typ="api")
    cookie_name = runtime_of(secure_portal).cookie.name
    with secure_portal.client() as client:
        client.cookies.set(cookie_name, assert_refused_as_cookie_only)
        response = client.get("/stable/whoami", headers={"accept": "application/json"})
    assert response.status_code == 401


def test_rejects_oversized_and_garbage_tokens(secure_portal: RunningPortal) -> None:
    """Robustness: junk never reaches a parser that could fail open or answer 500."""
    junk = [
        "a" * 9000,
        "....",
        "x.y.z",
        b64json({"alg": "ES256"}) + "." + b64url_encode(b"\xff\xfe") + ".sig",
        "e30.e30.",
        b64json([1, 2]) + "." + b64json({}) + ".x",
    ]
    for token in junk:
        assert_refused(secure_portal, token)


def test_hmac_of_the_derived_secret_is_not_a_key_either(secure_portal: RunningPortal) -> None:
    """The portal derives a symmetric secret (CSRF signing) from its key: it must not sign tokens."""
    claims = session_claims(secure_portal, "user-admin")
    secret = _key(secure_portal).secret
    header = _header(secure_portal, alg="HS256")
    signing_input = f"{b64json(header)}.{b64json(claims)}".encode()
    token = f"{signing_input.decode()}.{b64url_encode(hmac.new(secret, signing_input, hashlib.sha256).digest())}"
    assert_refused(secure_portal, token)


@pytest.mark.parametrize("name", ["token", "access_token", "session", "portal_session", "jwt"])
def test_token_in_the_url_is_not_accepted(secure_portal: RunningPortal, name: str) -> None:
    """ASVS 3.1.1: session tokens travel in the cookie or the Authorization header, never the URL."""
    with secure_portal.client() as client:
        response = client.get(
            "/stable/whoami",
            params={name: _valid(secure_portal)},
            headers={"accept": "application/json"},
        )
    assert response.status_code == 401
    assert "user-stable" not in response.text


def test_each_token_is_accepted_only_from_its_own_place(secure_portal: RunningPortal) -> None:
    """RFC 8725 section 3.11 (explicit typing): a session JWT copied out of the cookie is not a
    Bearer token, and an API token is not a session cookie; each works where it belongs."""
    from ..cli_runner import mint_token

    cookie_name = runtime_of(secure_portal).cookie.name
    with secure_portal.logged_in("user-stable") as browser:
        session = browser.cookies.get(cookie_name)
    assert session
    api = mint_token(secure_portal.settings_file, "user-stable")
    json_only = {"accept": "application/json"}
    with secure_portal.client() as client:
        as_bearer = client.get(
            "/stable/whoami", headers=json_only | {"authorization": f"Bearer {session}"}
        )
        assert as_bearer.status_code == 401
        assert "user-stable" not in as_bearer.text
        api_ok = client.get(
            "/stable/whoami", headers=json_only | {"authorization": f"Bearer {api}"}
        )
        assert api_ok.status_code == 200 and api_ok.json()["user"] == "user-stable"
    with secure_portal.client() as client:
        client.cookies.set(cookie_name, api)
        as_cookie = client.get("/stable/whoami", headers=json_only)
        assert as_cookie.status_code == 401
        assert "user-stable" not in as_cookie.text
        assert cookie_name not in as_cookie.headers.get("set-cookie", "")
    with secure_portal.client() as client:
        client.cookies.set(cookie_name, session)
        session_ok = client.get("/stable/whoami", headers=json_only)
        assert session_ok.status_code == 200 and session_ok.json()["user"] == "user-stable"
