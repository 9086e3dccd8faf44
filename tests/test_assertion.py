"""portal_asgi.assertion, the verifier products served elsewhere use, on its own: the portal's
keys from a real JWKS endpoint on loopback (fetched once, fetched again for a new `kid` and never
more often than allowed), the checks (RFC 8725: the algorithm allow-list, `aud`, `exp`, `iss`),
and its ASGI and WSGI middleware and Flask decorator. Its use inside real upstreams behind a
real portal is in tests/test_upstream.py."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from flask import Flask, jsonify
from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from portal_asgi import claims
from portal_asgi.assertion import (
    AssertionMiddleware,
    InvalidAssertion,
    KeysUnavailable,
    Verifier,
    WSGIAssertionMiddleware,
    assertion_required,
)
from portal_asgi.flask import current_user
from portal_asgi.jose_utils import b64url_encode
from portal_asgi.keys import SigningKey, generate_key
from portal_asgi.levels import Levels
from portal_asgi.tokens import TokenCodec
from portal_asgi.user import PortalUser

from .servers import free_port

ISSUER = "https://portal.example.org"
LEVELS = Levels(("stable", "ea", "devel", "admin"))
NOW = 1_900_000_000


def mint(key: SigningKey, *, audience: str = "/hazard", now: int = NOW, **changes: Any) -> str:
    user = PortalUser(
        username="alice", level="devel", email="a@example.org", name="Alice", uid="u1"
    )
    body = claims.assertion(LEVELS, "alice", user, audience=audience, now=now)
    return TokenCodec(key, issuer=ISSUER).sign_assertion({**body, **changes})


class Keys:
    """A JWKS on loopback, as the portal publishes it, counting its fetches."""

    def __init__(self, *keys: SigningKey) -> None:
        self.jwks: dict[str, Any] = {"keys": [key.public_jwk for key in keys]}
        self.fetches = 0
        self.url = ""


@contextmanager
def serving(keys: Keys) -> Iterator[Keys]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            keys.fetches += 1
            body = json.dumps(keys.jwks).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    keys.url = f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield keys
    finally:
        server.shutdown()
        server.server_close()


def verifier(keys: Keys, **options: Any) -> Verifier:
    options = {"audience": "/hazard", "issuer": ISSUER, "clock": lambda: NOW + 5, **options}
    return Verifier(keys.url, **options)


# -- keys ----------------------------------------------------------------------------------------


def test_keys_are_fetched_once_and_cached() -> None:
    key = generate_key()
    with serving(Keys(key)) as keys:
        check = verifier(keys)
        for second in range(5):
            assert check.verify(mint(key, now=NOW + second)).user.username == "alice"
        assert keys.fetches == 1


def test_a_new_kid_fetches_the_keys_again() -> None:
    """A rotation publishes the new key before it signs (docs/keys.md): an unknown `kid` makes
    the product fetch the JWKS again."""
    old, new = generate_key(), generate_key()
    with serving(Keys(old)) as keys:
        check = verifier(keys, refetch_interval=0)
        check.verify(mint(old))
        keys.jwks["keys"].append(new.public_jwk)
        assert check.verify(mint(new)).user.username == "alice"
        assert keys.fetches == 2


def test_made_up_kids_do_not_make_it_fetch_more_often_than_allowed() -> None:
    """A flood of made-up `kid`s cannot turn the product into a flood aimed at the portal."""
    key, made_up = generate_key(), generate_key()
    with serving(Keys(key)) as keys:
        check = verifier(keys, refetch_interval=3600)
        check.verify(mint(key))
        for _ in range(20):
            with pytest.raises(InvalidAssertion, match="no ES256 key"):
                check.verify(mint(made_up))
        assert keys.fetches == 1
        eager = verifier(keys, refetch_interval=0)  # the same flood, without the limit
        eager.verify(mint(key))
        for _ in range(3):
            with pytest.raises(InvalidAssertion):
                eager.verify(mint(made_up))
        assert keys.fetches == 1 + 4


def test_keys_older_than_max_age_are_fetched_again_and_retired_keys_dropped() -> None:
    old, new = generate_key(), generate_key()
    with serving(Keys(old, new)) as keys:
        check = verifier(keys, max_age=0, refetch_interval=0)
        check.verify(mint(old))
        keys.jwks = {"keys": [new.public_jwk]}  # the old key retired from the JWKS
        with pytest.raises(InvalidAssertion):
            check.verify(mint(old, now=NOW + 1))
        assert check.verify(mint(new)).user.username == "alice"


@pytest.mark.anyio
async def test_the_async_path_fetches_and_checks_alike() -> None:
    key = generate_key()
    with serving(Keys(key)) as keys:
        check = verifier(keys)
        verified = await check.verify_async(mint(key))
        assert verified.user.level == "devel" and keys.fetches == 1
        with pytest.raises(InvalidAssertion):
            await check.verify_async(mint(key, audience="/other"))


def test_keys_that_cannot_be_had_refuse_with_keys_unavailable() -> None:
    check = Verifier(f"http://127.0.0.1:{free_port()}/jwks", audience="/hazard", timeout=2)
    with pytest.raises(KeysUnavailable):
        check.verify(mint(generate_key()))


# -- the checks ----------------------------------------------------------------------------------


def test_a_good_assertion_gives_the_same_user_as_a_mounted_product_gets() -> None:
    key = generate_key()
    verified = Verifier(jwks=key.jwks, audience="/hazard", clock=lambda: NOW).verify(mint(key))
    assert verified.user == PortalUser(
        username="alice",
        level="devel",
        email="a@example.org",
        name="Alice",
        uid="u1",
        via="assertion",
        expires=float(NOW + claims.ASSERTION_LIFETIME),
    )
    assert verified.auth.scopes == ["authenticated", "access:stable", "access:ea", "access:devel"]
    assert verified.mount == "/hazard"


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"aud": "/other"}, "for '/other'"),
        ({"aud": ["/hazard", "/other"]}, "for"),
        ({"iss": "https://evil.example"}, "issued by"),
        ({"exp": NOW - 60}, "expired"),
        ({"iat": NOW + 600, "exp": NOW + 660}, "future"),
        ({"typ": "session"}, "not an assertion"),
        ({"lvl": 3}, "strings"),
        ({"exp": "never"}, "numbers"),
    ],
)
def test_refuses_claims_that_do_not_hold(changes: dict[str, Any], reason: str) -> None:
    key = generate_key()
    check = Verifier(jwks=key.jwks, audience="/hazard", issuer=ISSUER, clock=lambda: NOW)
    with pytest.raises(InvalidAssertion, match=reason):
        check.verify(mint(key, **changes))


def test_rejects_alg_none_and_hs256_signed_with_the_public_key() -> None:
    """RFC 8725 section 3.1: the algorithm is never the token's to choose."""
    key = generate_key()
    good = mint(key)
    check = Verifier(jwks=key.jwks, audience="/hazard", clock=lambda: NOW)
    _, payload, _ = good.split(".")

    def header(alg: str) -> str:
        return b64url_encode(json.dumps({"alg": alg, "kid": key.kid}).encode())

    def hmac_sha256(secret: bytes, signing_input: str) -> str:
        return b64url_encode(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())

    hs256 = f"{header('HS256')}.{payload}"
    forged = {
        "alg none": f"{header('none')}.{payload}.",
        "alg None": f"{header('None')}.{payload}.",
        "hs256 with the public key": f"{hs256}.{hmac_sha256(key.public_pem.encode(), hs256)}",
        "es256 without signature": f"{header('ES256')}.{payload}.",
    }
    for what, token in forged.items():
        with pytest.raises(InvalidAssertion):
            check.verify(token)
            pytest.fail(what)
    assert check.verify(good).user.username == "alice"  # the control


def test_rs256_is_accepted_only_when_allowed() -> None:
    rsa = RSAKey.generate_key(2048, parameters={"kid": "rsa-1", "use": "sig"})
    body = claims.assertion(LEVELS, "alice", PortalUser("alice", "ea"), audience="/hazard", now=NOW)
    token = jwt.encode({"alg": "RS256", "kid": "rsa-1"}, {**body, "iss": ISSUER}, rsa)
    jwks = {"keys": [rsa.as_dict(private=False)]}
    assert (
        Verifier(jwks=jwks, audience="/hazard", clock=lambda: NOW).verify(token).user.level == "ea"
    )
    only_es256 = Verifier(jwks=jwks, audience="/hazard", algorithms=["ES256"], clock=lambda: NOW)
    with pytest.raises(InvalidAssertion, match="not allowed"):
        only_es256.verify(token)


@pytest.mark.parametrize(
    "options",
    [
        {"algorithms": ["HS256"]},
        {"algorithms": ["none"]},
        {"algorithms": []},
        {"audience": "hazard"},
        {"jwks": {"keys": []}, "jwks_url": "http://x"},
        {"jwks_url": None},
    ],
)
def test_verifier_refuses_unsafe_or_incomplete_options(options: dict[str, Any]) -> None:
    arguments: dict[str, Any] = {"jwks_url": "http://x/jwks", "audience": "/hazard", **options}
    url = arguments.pop("jwks_url")
    with pytest.raises(ValueError):
        Verifier(url, **arguments)


def test_a_checked_assertion_is_remembered_until_it_expires() -> None:
    key = generate_key()
    now = [float(NOW)]
    check = Verifier(jwks=key.jwks, audience="/hazard", clock=lambda: now[0])
    token = mint(key)
    assert check.verify(token) is check.verify(token)
    now[0] = NOW + claims.ASSERTION_LIFETIME + 31  # past exp and the leeway
    with pytest.raises(InvalidAssertion, match="expired"):
        check.verify(token)


# -- what a product puts in front of itself ------------------------------------------------------


async def whoami(request: Request) -> JSONResponse:
    user = request.user
    return JSONResponse(
        {
            "user": user.identity if user.is_authenticated else None,
            "scopes": list(request.auth.scopes),
            "x-portal-user": request.headers.get("x-portal-user"),
            "portal": request.scope.get("portal"),
        }
    )


def starlette_client(check: Verifier, **options: Any) -> TestClient:
    app = AssertionMiddleware(Starlette(routes=[Route("/", whoami)]), check, **options)
    return TestClient(app)


def test_asgi_middleware_sets_the_user_and_the_identity_headers_from_the_assertion() -> None:
    key = generate_key()
    check = Verifier(jwks=key.jwks, audience="/hazard", clock=lambda: NOW)
    with starlette_client(check) as client:
        answer = client.get("/", headers={"X-Portal-Assertion": mint(key), "X-Portal-User": "eve"})
        refused = client.get("/", headers={"X-Portal-User": "eve"})
    assert answer.json() == {
        "user": "alice",
        "scopes": ["authenticated", "access:stable", "access:ea", "access:devel"],
        "x-portal-user": "alice",
        "portal": {"mount": "/hazard"},
    }
    assert refused.status_code == 401 and refused.json() == {"error": "portal_assertion_required"}
    assert "eve" not in refused.text


def test_asgi_middleware_lets_anonymous_callers_through_only_when_told_without_their_headers() -> (
    None
):
    key = generate_key()
    check = Verifier(jwks=key.jwks, audience="/hazard", clock=lambda: NOW)
    with starlette_client(check, allow_anonymous=True) as client:
        anonymous = client.get("/", headers={"X-Portal-User": "eve"})
        bad = client.get("/", headers={"X-Portal-Assertion": "not.a.token"})
    assert anonymous.json() == {"user": None, "scopes": [], "x-portal-user": None, "portal": None}
    assert bad.status_code == 401  # a bad assertion is never taken for none


def test_asgi_middleware_answers_503_while_the_keys_cannot_be_had() -> None:
    check = Verifier(f"http://127.0.0.1:{free_port()}/jwks", audience="/hazard", timeout=2)
    with starlette_client(check) as client:
        answer = client.get("/", headers={"X-Portal-Assertion": mint(generate_key())})
    assert answer.status_code == 503 and answer.json() == {"error": "portal_keys_unavailable"}


def flask_app(check: Verifier) -> Flask:
    app = Flask("remote")

    def me() -> Any:
        from flask import request

        user = current_user()
        return jsonify(
            {
                "user": user.username if user else None,
                "x-portal-user": request.headers.get("X-Portal-User"),
            }
        )

    app.add_url_rule("/me", "me", me)
    app.add_url_rule("/decorated", "decorated", assertion_required(check)(me))
    return app


def test_wsgi_middleware_and_flask_decorator() -> None:
    key = generate_key()
    check = Verifier(jwks=key.jwks, audience="/hazard", clock=lambda: NOW)
    undecorated = flask_app(check)
    client = undecorated.test_client()
    good = {"X-Portal-Assertion": mint(key), "X-Portal-User": "eve"}
    assert client.get("/decorated", headers=good).json == {
        "user": "alice",
        "x-portal-user": "alice",
    }
    refused = client.get("/decorated", headers={"X-Portal-User": "eve"})
    assert refused.status_code == 401 and b"eve" not in refused.data
    assert client.get("/me").json == {"user": None, "x-portal-user": None}  # not decorated

    wrapped = flask_app(check)
    wrapped.wsgi_app = WSGIAssertionMiddleware(wrapped.wsgi_app, check)  # type: ignore[method-assign]
    client = wrapped.test_client()
    assert client.get("/me", headers=good).json == {"user": "alice", "x-portal-user": "alice"}
    assert client.get("/me", headers={"X-Portal-User": "eve"}).status_code == 401

    lenient = flask_app(check)
    lenient.wsgi_app = WSGIAssertionMiddleware(lenient.wsgi_app, check, allow_anonymous=True)  # type: ignore[method-assign]
    client = lenient.test_client()
    assert client.get("/me", headers={"X-Portal-User": "eve"}).json == {
        "user": None,
        "x-portal-user": None,
    }


def test_importing_the_verifier_loads_nothing_of_the_portal() -> None:
    """A product imports it without the portal's app, runtime, database or HTTP client."""
    code = (
        "import sys, portal_asgi.assertion; "
        "print([m for m in ('portal_asgi.app', 'portal_asgi.runtime', 'portal_asgi.settings', "
        "'sqlalchemy', 'httpx2', 'joserfc', 'jose', 'authlib') if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
