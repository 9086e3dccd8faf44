"""The original stack, for bench/request_bench.py: Flask products behind werkzeug's
DispatcherMiddleware, with the session cookie of every request verified by python-jose (ES256, no
cache) before dispatch, as the system portal-asgi replaces did. Served by gunicorn:
`ORIGINAL_STACK_KEY=public.pem gunicorn -w1 --threads 4 --pythonpath bench 'original:create_app()'`.
The Flask hello of bench/hello.py is mounted at `/f` and needs level `ea`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hello import flask
from jose import JWTError, jwt
from werkzeug.exceptions import NotFound
from werkzeug.http import parse_cookie
from werkzeug.middleware.dispatcher import DispatcherMiddleware

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

KEY_ENV = "ORIGINAL_STACK_KEY"  # the file holding the public key (PEM)
COOKIE = "session"
LEVEL_SCOPE = "access:ea"
REFUSED = b'{"error": "authentication_required"}'


class JWTCheck:
    """Verifies the session cookie's signature and expiry on every request, then dispatches."""

    def __init__(self, app: WSGIApplication, public_key: str) -> None:
        self.app = app
        self.public_key = public_key

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        token = parse_cookie(environ.get("HTTP_COOKIE", "")).get(COOKIE)
        try:
            claims = jwt.decode(token, self.public_key, algorithms=["ES256"]) if token else None
        except JWTError:
            claims = None
        if claims is None or LEVEL_SCOPE not in str(claims.get("scope", "")).split():
            headers = [("Content-Type", "application/json"), ("WWW-Authenticate", "Bearer")]
            start_response("401 Unauthorized", headers)
            return [REFUSED]
        environ["REMOTE_USER"] = claims["sub"]
        return self.app(environ, start_response)


def create_app() -> WSGIApplication:
    public_key = Path(os.environ[KEY_ENV]).read_text()
    return JWTCheck(DispatcherMiddleware(NotFound(), {"/f": flask}), public_key)


def new_key(folder: Path) -> tuple[str, Path]:
    """A fresh P-256 key: its private PEM, and the file in `folder` holding its public PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    file = folder / "original-public.pem"
    file.write_bytes(public)
    return private, file


def session_cookie(private_key: str, username: str, ttl: int = 3600) -> str:
    """A session token such as the original login issued: ES256, cumulative level scopes."""
    now = int(time.time())
    claims = {
        "sub": username,
        "scope": f"access:stable {LEVEL_SCOPE}",
        "iat": now,
        "exp": now + ttl,
    }
    return str(jwt.encode(claims, private_key, algorithm="ES256"))
