"""The JOSE helpers the portal's own tokens and the provider's share (jose_utils.py): one strict
base64url, one unverified header reader, used by both token paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from portal_asgi import jose_utils
from portal_asgi.exceptions import TokenError
from portal_asgi.jose_utils import (
    b64url_decode,
    b64url_encode,
    unverified_claims,
    unverified_header,
)


def _token(header: object, claims: object = None) -> str:
    parts = [json.dumps(header).encode(), json.dumps(claims or {"sub": "u"}).encode()]
    return ".".join([*(b64url_encode(part) for part in parts), "c2ln"])


def test_base64url_round_trips_without_padding() -> None:
    for data in (b"", b"f", b"fo", b"foo", b"\xfb\xff\xfe", bytes(range(256))):
        encoded = b64url_encode(data)
        assert "=" not in encoded and "+" not in encoded and "/" not in encoded
        assert b64url_decode(encoded) == data


@pytest.mark.parametrize("segment", ["ab=c", "a+b/", "ab c", "abc\n", "a", "ab.c"])
def test_base64url_decoding_is_strict(segment: str) -> None:
    # The standard decoder skips stray characters: two strings could decode to the same bytes.
    with pytest.raises(ValueError, match="not base64url"):
        b64url_decode(segment)


def test_unverified_header_and_claims() -> None:
    token = _token({"alg": "RS256", "kid": "k1"}, {"sub": "alice"})
    assert unverified_header(token) == {"alg": "RS256", "kid": "k1"}
    assert unverified_claims(token) == {"sub": "alice"}


@pytest.mark.parametrize(
    ("token", "problem"),
    [
        ("a.b", "expected three parts"),
        ("a.b.c.d", "expected three parts"),
        ("e30=.e30.c2ln", "not base64url JSON"),  # padded
        ("!!!!.e30.c2ln", "not base64url JSON"),
        (b64url_encode(b"not json") + ".e30.c2ln", "not base64url JSON"),
        (_token(["alg", "RS256"]), "not a JSON object"),
    ],
)
def test_malformed_headers_are_token_errors(token: str, problem: str) -> None:
    with pytest.raises(TokenError, match=problem):
        unverified_header(token)


def test_no_second_copy_of_the_base64url_helpers() -> None:
    # a second copy of a helper is a bug waiting for its twin to be fixed
    package = Path(jose_utils.__file__).parent
    copies = sorted(
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if path.name != "jose_utils.py" and "urlsafe_b64" in path.read_text()
    )
    assert copies == []
