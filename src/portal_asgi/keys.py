"""The portal's signing keys: EC P-256 keys in PEM, and the ring one worker signs and verifies
with. Where the keys come from (a file, the environment, the database) and how the ring is kept
current is `signing.py`'s business; docs/keys.md tells the whole story."""

from __future__ import annotations

import hashlib
import json
import os
import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .exceptions import KeyUnusable
from .jose_utils import b64url_encode as _b64

ALGORITHM = "ES256"


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


def key_from_pem(pem: str | bytes, *, where: str, passphrase: str | None = None) -> SigningKey:
    """The key in `pem` (PKCS#8 or SEC1, encrypted with `passphrase` or not); KeyUnusable,
    naming `where` it came from, when it is not an EC P-256 private key we can open."""
    data = pem.encode() if isinstance(pem, str) else pem
    encrypted = b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in data
    if encrypted and not passphrase:
        raise KeyUnusable(
            f"{where}: the private key is encrypted and no passphrase is set "
            "([portal] key_passphrase)"
        )
    try:
        loaded = serialization.load_pem_private_key(
            data, password=passphrase.encode() if encrypted and passphrase else None
        )
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        problem = "wrong passphrase" if encrypted else f"not a PEM private key ({exc})"
        raise KeyUnusable(f"{where}: {problem}") from None
    if not isinstance(loaded, ec.EllipticCurvePrivateKey) or loaded.curve.name != "secp256r1":
        raise KeyUnusable(f"{where}: expected an EC P-256 private key")
    return _from_private(loaded)


def sealed_pem(key: SigningKey, passphrase: str | None) -> str:
    """The private key as it is stored away from this process: encrypted (PKCS#8, the
    strongest scheme `cryptography` offers) when there is a passphrase, else as it is."""
    if not passphrase:
        return key.private_pem
    loaded = serialization.load_pem_private_key(key.private_pem.encode(), password=None)
    return loaded.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase.encode()),
    ).decode()


def _read_complete(file: Path, wait: float = 5.0) -> bytes:
    """The key file's bytes, once whole: a worker that lost the O_EXCL race may find the winner
    still writing it. Bounded, and only ever on the first start of a fresh machine."""
    deadline = time.monotonic() + wait
    while True:
        data = file.read_bytes()
        if b"-----END" in data or time.monotonic() > deadline:
            return data
        time.sleep(0.05)


def read_key(path: str | os.PathLike[str]) -> SigningKey:
    """The key at `path`, which must exist: a key the operator provides (a mounted secret) is
    never created or written here."""
    file = Path(path)
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        raise KeyUnusable(
            f"{file}: no such key file (a pinned key is never created: provide it)"
        ) from None
    except OSError as exc:
        raise KeyUnusable(f"{file}: cannot be read ({exc.strerror})") from None
    return key_from_pem(data, where=str(file))


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
    return key_from_pem(_read_complete(file), where=str(file))


class SecretHolder(Protocol):
    """An itsdangerous serializer: it signs with the last of `secret_keys` and accepts any."""

    secret_keys: list[bytes]


@dataclass(frozen=True, slots=True)
class _Keys:
    current: SigningKey
    by_kid: dict[str, SigningKey]
    jwks: dict[str, Any]
    secrets: tuple[bytes, ...]


def _keys(current: SigningKey, others: Iterable[SigningKey]) -> _Keys:
    rest = {key.kid: key for key in others if key.kid != current.kid}
    by_kid = {**rest, current.kid: current}
    jwks = {"keys": [current.public_jwk, *(key.public_jwk for key in rest.values())]}
    return _Keys(current, by_kid, jwks, (*(key.secret for key in rest.values()), current.secret))


class KeyRing:
    """The keys one worker holds: `current` signs; it and the `others` (retired keys whose tokens
    may still be valid, the next key published before it signs) verify and are in the JWKS.
    Replaced as a whole, so a request sees one consistent set whatever a reload does meanwhile.

    The symmetric secrets derived from the keys (CSRF tokens, OIDC login cookies) follow the same
    rule through the itsdangerous serializers given to `track`: they sign with the current key's
    secret and accept those of every key in the ring."""

    def __init__(self, current: SigningKey, others: Iterable[SigningKey] = ()) -> None:
        self._keys = _keys(current, others)
        # weak: pages rebuilt by a settings reload track new serializers, the old ones go
        self._holders: weakref.WeakSet[SecretHolder] = weakref.WeakSet()

    def replace(self, current: SigningKey, others: Iterable[SigningKey] = ()) -> bool:
        """Hold these keys from now on; True when that changed anything."""
        keys = _keys(current, others)
        changed = keys.current.kid != self._keys.current.kid or keys.by_kid != self._keys.by_kid
        self._keys = keys
        for holder in self._holders:
            holder.secret_keys = list(keys.secrets)
        return changed

    def track(self, *holders: SecretHolder) -> None:
        for holder in holders:
            holder.secret_keys = list(self._keys.secrets)
            self._holders.add(holder)

    @property
    def current(self) -> SigningKey:
        return self._keys.current

    def get(self, kid: object) -> SigningKey | None:
        return self._keys.by_kid.get(kid) if isinstance(kid, str) else None

    @property
    def kids(self) -> tuple[str, ...]:
        """The current key's id first."""
        return tuple(jwk["kid"] for jwk in self._keys.jwks["keys"])

    @property
    def jwks(self) -> dict[str, Any]:
        return self._keys.jwks

    @property
    def secrets(self) -> tuple[bytes, ...]:
        """Oldest first, the current key's last (itsdangerous's order)."""
        return self._keys.secrets

    def __repr__(self) -> str:
        return f"KeyRing(current={self.current.kid!r}, kids={list(self.kids)!r})"
