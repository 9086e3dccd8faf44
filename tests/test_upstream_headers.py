"""upstream/headers.py on its own: what goes to an upstream and what comes back, for the cases the
process tests (tests/test_upstream.py) do not reach cheaply."""

from __future__ import annotations

from typing import Any

import pytest

from portal_asgi.upstream.headers import Rewrite, Target, from_upstream, to_upstream
from portal_asgi.user import PortalUser

TARGET = Target.parse("http://10.0.0.7:9000/app")


def scope(headers: list[tuple[bytes, bytes]], **extra: Any) -> dict[str, Any]:
    return {
        "type": "http",
        "scheme": "https",
        "path": "/hazard/x",
        "raw_path": b"/hazard/x",
        "query_string": b"",
        "root_path": "/hazard",
        "client": ("198.51.100.4", 5000),
        "headers": headers,
        "portal": {"mount": "/hazard"},
        **extra,
    }


def names(headers: list[tuple[bytes, bytes]]) -> list[bytes]:
    return [name for name, _ in headers]


def test_hop_by_hop_and_connection_named_headers_are_not_forwarded() -> None:
    sent = to_upstream(
        scope(
            [
                (b"host", b"portal.example.org"),
                (b"connection", b"keep-alive, x-secret-hop"),
                (b"keep-alive", b"timeout=5"),
                (b"te", b"trailers"),
                (b"x-secret-hop", b"1"),
                (b"upgrade", b"h2c"),
                (b"expect", b"100-continue"),
                (b"accept", b"*/*"),
            ]
        ),
        TARGET,
        assertion=None,
    )
    assert names(sent) == [
        b"accept",
        b"host",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-forwarded-prefix",
    ]
    assert dict(sent)[b"host"] == b"10.0.0.7:9000"
    assert dict(sent)[b"x-forwarded-proto"] == b"https"
    assert dict(sent)[b"x-forwarded-host"] == b"portal.example.org"


def test_a_trusted_proxys_host_is_the_forwarded_host() -> None:
    headers = [(b"host", b"10.1.1.1:8000"), (b"x-forwarded-host", b"portal.example.org")]
    sent = dict(to_upstream(scope(headers), TARGET, assertion=b"a.b.c"))
    assert sent[b"x-forwarded-host"] == b"portal.example.org"
    assert sent[b"x-portal-assertion"] == b"a.b.c"


def test_portal_cookies_and_its_bearer_token_stay_with_the_portal() -> None:
    headers = [
        (b"cookie", b"portal_session=s; theirs=1; __Host-portal_csrf=c; portal_oidc_login=o"),
        (b"authorization", b"Bearer portal-api-token"),
    ]
    user = PortalUser(username="alice", level="ea", via="token")
    sent = dict(to_upstream(scope(headers, user=user), TARGET, assertion=None))
    assert sent[b"cookie"] == b"theirs=1"
    assert b"authorization" not in sent
    only_portal = [(b"cookie", b"portal_session=s")]
    assert b"cookie" not in dict(to_upstream(scope(only_portal), TARGET, assertion=None))


def test_an_authorization_the_portal_did_not_use_goes_on() -> None:
    """Basic credentials, or a Bearer token the portal did not take (a public mount, a caller
    signed in by cookie), are the upstream's business."""
    headers = [(b"authorization", b"Basic dXNlcjpwdw==")]
    user = PortalUser(username="alice", level="ea", via="session")
    sent = dict(to_upstream(scope(headers, user=user), TARGET, assertion=None))
    assert sent[b"authorization"] == b"Basic dXNlcjpwdw=="


def test_websocket_handshake_headers_are_left_to_the_client_library() -> None:
    headers = [
        (b"host", b"portal.example.org"),
        (b"sec-websocket-key", b"k"),
        (b"sec-websocket-version", b"13"),
        (b"sec-websocket-protocol", b"chat"),
        (b"sec-websocket-extensions", b"permessage-deflate"),
        (b"origin", b"https://portal.example.org"),
    ]
    sent = to_upstream(scope(headers, type="websocket"), TARGET, assertion=None, websocket=True)
    assert not [n for n in names(sent) if n.startswith(b"sec-websocket") or n == b"host"]
    assert dict(sent)[b"origin"] == b"https://portal.example.org"


@pytest.mark.parametrize(
    ("path", "raw", "query", "expected"),
    [
        ("/hazard/x y", b"/hazard/x%20y", b"", "/app/x%20y"),
        ("/hazard/a/", b"/hazard/a/", b"q=1&r=%2F", "/app/a/?q=1&r=%2F"),
        # the mount's own letters percent-encoded: the decoded path, encoded again
        ("/hazard/é", b"/h%61zard/%C3%A9", b"", "/app/%C3%A9"),
        ("/hazard/", None, b"", "/app/"),
    ],
)
def test_upstream_path(path: str, raw: bytes | None, query: bytes, expected: str) -> None:
    request = scope([], path=path, raw_path=raw, query_string=query)
    assert TARGET.path(request) == expected
    assert TARGET.url(request) == "http://10.0.0.7:9000" + expected
    assert Target.parse("https://h:1").websocket_url(request).startswith("wss://h:1/")


REWRITE = Rewrite(TARGET, "/hazard")


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("/app/next", "/hazard/next"),
        ("/app", "/hazard/"),
        ("/app?x=1", "/hazard/?x=1"),
        ("http://10.0.0.7:9000/app/deep?x=1", "/hazard/deep?x=1"),
        ("HTTP://10.0.0.7:9000/app/deep", "/hazard/deep"),
        ("/application", "/application"),  # not under the prefix: a segment boundary
        ("/other", "/other"),
        ("//evil.example/app/x", "//evil.example/app/x"),
        ("http://10.0.0.7:90000/app/x", "http://10.0.0.7:90000/app/x"),
        ("https://elsewhere.example/app/x", "https://elsewhere.example/app/x"),
        ("next", "next"),
    ],
)
def test_rewritten_location(location: str, expected: str) -> None:
    assert REWRITE.location(location) == expected


@pytest.mark.parametrize(
    ("cookie", "expected"),
    [
        ("a=1; Path=/app/x; HttpOnly", "a=1; Path=/hazard/x; HttpOnly"),
        ("a=1; path=/app; Secure", "a=1; Path=/hazard; Secure"),
        ("a=1; Path=/app/; Domain=10.0.0.7", "a=1; Path=/hazard"),
        ("a=1; Path=/", "a=1; Path=/"),  # outside the prefix: left alone
        ("a=1", "a=1"),
    ],
)
def test_rewritten_cookie(cookie: str, expected: str) -> None:
    assert REWRITE.cookie(cookie) == expected


def test_answer_headers_lose_hop_by_hop_server_date_and_portal_cookies() -> None:
    answer = from_upstream(
        [
            (b"Content-Type", b"text/plain"),
            (b"Transfer-Encoding", b"chunked"),
            (b"Connection", b"close, x-hop"),
            (b"X-Hop", b"1"),
            (b"Server", b"gunicorn"),
            (b"Date", b"Tue, 01 Dec 2026 10:00:00 GMT"),
            (b"Set-Cookie", b"portal_session=forged; Path=/"),
            (b"Set-Cookie", b"__Host-portal_session=forged; Path=/; Secure"),
            (b"Set-Cookie", b"theirs=1; Path=/app"),
            (b"Location", b"/app/x"),
        ],
        mount="/hazard",
        rewrite=None,
    )
    assert answer == [
        (b"content-type", b"text/plain"),
        (b"set-cookie", b"theirs=1; Path=/app"),
        (b"location", b"/app/x"),
    ]
