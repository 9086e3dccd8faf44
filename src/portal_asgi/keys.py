"""The portal's signing key: an EC P-256 key in a PEM file, created on first start, never committed."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

ALGORITHM = "ES256"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    private_pem: str
    public_pem: str
    public_jwk: dict[str, Any]
    secret: bytes  # derived symmetric secret for itsdangerous (CSRF tokens, login transactions)

    def __repr__(self) -> str:
        return f"SigningKey(kid={self.kid!r})"

    @property
    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.public_jwk]}


def _from_private(key: ec.EllipticCurvePrivateKey) -> SigningKey:
    numbers = key.public_key().public_numbers()
    x = _b64(numbers.x.to_bytes(32, "big"))
    y = _b64(numbers.y.to_bytes(32, "big"))
    # RFC 7638 thumbprint: the required members in lexicographic order, no whitespace.
    thumbprint = json.dumps({"crv": "P-256", "kty": "EC", "x": x, "y": y}, separators=(",", ":"))
    kid = _b64(hashlib.sha256(thumbprint.encode()).digest())
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    jwk = {"kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": kid, "alg": ALGORITHM, "use": "sig"}
    secret = hashlib.sha256(b"portal-asgi secret\0" + private_pem).digest()
    return SigningKey(kid, private_pem.decode(), public_pem.decode(), jwk, secret)


def generate_key() -> SigningKey:
    return _from_private(ec.generate_private_key(ec.SECP256R1()))


def _read_complete(file: Path, wait: float = 5.0) -> bytes:
    """The key file's bytes, once whole: a worker that lost the O_EXCL race may find the winner
    still writing it. Bounded, and only ever on the first start of a fresh machine."""
    deadline = time.monotonic() + wait
    while True:
        data = file.read_bytes()
        if b"-----END" in data or time.monotonic() > deadline:
            return data
        time.sleep(0.05)


def load_or_create_key(path: str | os.PathLike[str]) -> SigningKey:
    """Load the key at `path`, creating it (mode 0600) when it does not exist yet."""
    file = Path(path)
    if not file.exists():
        file.parent.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        try:
            # O_EXCL: when several workers start at once, exactly one writes the key.
            fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "wb") as stream:
                stream.write(pem)
            return _from_private(key)
    loaded = serialization.load_pem_private_key(_read_complete(file), password=None)
    if not isinstance(loaded, ec.EllipticCurvePrivateKey) or loaded.curve.name != "secp256r1":
        raise ValueError(f"{file}: expected an EC P-256 private key")
    return _from_private(loaded)
