"""Tools for the attack corpus: raw HTTP (httpx normalises paths, so attacks go through a plain
socket), and JWTs forged by hand, byte by byte, the way jwt_tool builds them."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from portal_asgi.jose_utils import b64url_encode
from portal_asgi.runtime import Runtime

from .. import servers


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def raw_request(url: str, request: bytes, timeout: float = 10) -> RawResponse:
    """Send `request` as it is; read the answer until the server closes (Connection: close).
    A connection the server closes without answering reads as status 0."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    data = b"".join(chunks)
    if not data:
        return RawResponse(0, {}, b"")
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") == "chunked":
        body = _unchunk(body)
    return RawResponse(status, headers, body)


def _unchunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out, body = out + body[:size], body[size + 2 :]
    return out


def get(
    url: str, target: bytes, *, method: bytes = b"GET", headers: dict[str, str] | None = None
) -> RawResponse:
    host = urlsplit(url).netloc.encode()
    lines = [method + b" " + target + b" HTTP/1.1", b"Host: " + host, b"Connection: close"]
    lines += [f"{k}: {v}".encode("latin-1") for k, v in (headers or {}).items()]
    return raw_request(url, b"\r\n".join(lines) + b"\r\n\r\n")


def b64json(value: Any) -> str:
    return b64url_encode(json.dumps(value, separators=(",", ":")).encode())


def es256_sign(private_pem: str | bytes, signing_input: bytes) -> bytes:
    key = load_pem_private_key(
        private_pem.encode() if isinstance(private_pem, str) else private_pem, password=None
    )
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def forge(header: dict[str, Any], claims: dict[str, Any], signature: bytes | str) -> str:
    signing_input = f"{b64json(header)}.{b64json(claims)}"
    sig = signature if isinstance(signature, str) else b64url_encode(signature)
    return f"{signing_input}.{sig}"


def sign_es256(header: dict[str, Any], claims: dict[str, Any], private_pem: str | bytes) -> str:
    signing_input = f"{b64json(header)}.{b64json(claims)}".encode()
    return f"{signing_input.decode()}.{b64url_encode(es256_sign(private_pem, signing_input))}"


def sign_hs256(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    signing_input = f"{b64json(header)}.{b64json(claims)}".encode()
    digest = hmac.new(secret, signing_input, hashlib.sha256).digest()
    return f"{signing_input.decode()}.{b64url_encode(digest)}"


def session_claims(portal: servers.RunningPortal, username: str, **changes: Any) -> dict[str, Any]:
    """Claims the portal itself would put in `username`'s session cookie, with `changes`."""
    runtime = portal.portal.runtime
    assert runtime is not None
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": runtime.codec.issuer,
        "aud": runtime.codec.issuer,
        "typ": "session",
        "sub": username,
        "uid": runtime.directory.user(username).uid,  # type: ignore[union-attr]
        "lvl": runtime.directory.user(username).level,  # type: ignore[union-attr]
        "sid": "forged-" + username,
        "iat": now,
        "exp": now + 600,
        "sxp": now + 1200,
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def runtime_of(portal: servers.RunningPortal) -> Runtime:
    runtime = portal.portal.runtime
    assert runtime is not None, "the portal has not started"
    return runtime
