"""The corpus over WebSocket handshakes: forged tokens, path tricks, planted identity headers and
cross-site handshakes (docs/websockets.md). The WebSocket helper's own suite
(tests/test_websockets.py) covers sockets that outlive their session or level."""

from __future__ import annotations

import json

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from ..servers import RunningPortal
from .helpers import forge, runtime_of, session_claims, sign_es256


def handshake_status(
    portal: RunningPortal, path: str, headers: dict[str, str]
) -> int | dict[str, object]:
    """The refusal status, or the echo product's greeting when the socket was accepted."""
    try:
        with connect(portal.ws_url + path, additional_headers=headers, open_timeout=10) as socket:
            greeting = json.loads(socket.recv(timeout=10))
            assert isinstance(greeting, dict)
            return greeting
    except InvalidStatus as exc:
        return exc.response.status_code


def cookie_header(portal: RunningPortal, token: str) -> dict[str, str]:
    return {"Cookie": f"{runtime_of(portal).cookie.name}={token}"}


def test_websocket_control_ea_user_is_greeted(secure_portal: RunningPortal) -> None:
    """The control: a real session of the right level opens the socket."""
    with secure_portal.logged_in("user-ea") as client:
        token = client.cookies.get(runtime_of(secure_portal).cookie.name)
    assert token
    greeting = handshake_status(secure_portal, "/ws-echo/ws", cookie_header(secure_portal, token))
    assert isinstance(greeting, dict) and greeting["user"] == "user-ea"


@pytest.mark.parametrize("alg", ["none", "NONE", "HS256"])
def test_websocket_rejects_forged_tokens(secure_portal: RunningPortal, alg: str) -> None:
    """RFC 8725 section 3.1, on the handshake: no identity, refused with 401."""
    claims = session_claims(secure_portal, "user-admin")
    token = forge({"alg": alg, "kid": runtime_of(secure_portal).key.kid}, claims, b"")
    for headers in (cookie_header(secure_portal, token), {"Authorization": f"Bearer {token}"}):
        assert handshake_status(secure_portal, "/ws-echo/ws", headers) == 401


def test_websocket_level_claim_raised_by_hand_gains_nothing(secure_portal: RunningPortal) -> None:
    """ASVS 4.1.2: a stable user's token claiming admin is still a stable user: 403 on an ea socket."""
    runtime = runtime_of(secure_portal)
    claims = session_claims(secure_portal, "user-stable", lvl="admin", scope="access:admin")
    token = sign_es256({"alg": "ES256", "kid": runtime.key.kid}, claims, runtime.key.private_pem)
    # a session token speaks only from the cookie (as a Bearer token it is no identity at all)
    assert (
        handshake_status(secure_portal, "/ws-echo/ws", cookie_header(secure_portal, token)) == 403
    )
    api = sign_es256(
        {"alg": "ES256", "kid": runtime.key.kid}, {**claims, "typ": "api"}, runtime.key.private_pem
    )
    assert handshake_status(secure_portal, "/ws-echo/ws", {"Authorization": f"Bearer {api}"}) == 403


# Dot segments and encoded slashes are ambiguous (400, before routing); other spellings are
# paths no mount has (404).
PATH_TRICKS = {
    "/stable/../ws-echo/ws": 400,
    "/stable/%2e%2e/ws-echo/ws": 400,
    "/ws-echo%2fws": 400,
    "/WS-ECHO/ws": 404,
    "//ws-echo/ws": 404,
}


@pytest.mark.parametrize("path", list(PATH_TRICKS))
def test_websocket_path_tricks_never_reach_a_mount_above_level(
    secure_portal: RunningPortal, path: str
) -> None:
    """ASVS 4.1.3: the same path rules for sockets as for requests."""
    with secure_portal.logged_in("user-stable") as client:
        token = client.cookies.get(runtime_of(secure_portal).cookie.name)
    assert token
    result = handshake_status(secure_portal, path, cookie_header(secure_portal, token))
    assert result == PATH_TRICKS[path], result


def test_websocket_cross_site_handshake_with_a_valid_cookie_is_refused(
    secure_portal: RunningPortal,
) -> None:
    """Cross-site WebSocket hijacking: the browser attaches the cookie; the Origin gives it away."""
    with secure_portal.logged_in("user-ea") as client:
        token = client.cookies.get(runtime_of(secure_portal).cookie.name)
    assert token
    headers = cookie_header(secure_portal, token) | {"Origin": "https://evil.example"}
    assert handshake_status(secure_portal, "/ws-echo/ws", headers) == 403


def test_websocket_planted_identity_headers_change_nothing(secure_portal: RunningPortal) -> None:
    """ASVS 4.1.2: X-Portal-* on a handshake neither authenticates nor reaches the product."""
    forged = {
        "X-Portal-User": "user-admin",
        "X-Portal-Level": "admin",
        "X_Portal_User": "user-admin",
    }
    assert handshake_status(secure_portal, "/ws-echo/ws", forged) == 401
