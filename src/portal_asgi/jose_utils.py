"""The few JOSE helpers the portal's own tokens (python-jose) and the provider's (joserfc) share:
base64url without padding (RFC 7515 section 2) and reading a compact JWS's header or payload
before its signature is checked (to pick the key and refuse bad algorithms early; never to trust).
One copy, so that the two token paths cannot parse the same bytes in two ways.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from .exceptions import TokenError

_ALPHABET = re.compile(r"[A-Za-z0-9_-]*")


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(segment: str) -> bytes:
    """Strict: only the base64url alphabet, no padding (the standard decoder would skip stray
    characters, so two different strings could decode to the same bytes)."""
    if not _ALPHABET.fullmatch(segment) or len(segment) % 4 == 1:
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _segment_json(token: str, index: int, what: str) -> dict[str, Any]:
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenError("not a signed JWT (expected three parts)")
    try:
        value = json.loads(b64url_decode(parts[index]))
    except (ValueError, UnicodeDecodeError):
        raise TokenError(f"JWT {what} is not base64url JSON") from None
    if not isinstance(value, dict):
        raise TokenError(f"JWT {what} is not a JSON object")
    return value


def unverified_header(token: str) -> dict[str, Any]:
    """The header of a compact JWS, not verified; TokenError when it is not one."""
    return _segment_json(token, 0, "header")


def unverified_claims(token: str) -> dict[str, Any]:
    """The payload of a compact JWS, not verified: for tools and tests that look, never to
    decide who someone is."""
    return _segment_json(token, 1, "payload")
