"""Path tricks sent as raw request lines (httpx would normalise them): a caller at `stable`
never reaches a mount above `stable`, and no answer is a 500."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portal_asgi.levels import Levels

from ..servers import LEVELS, RunningPortal
from .helpers import RawResponse, get, runtime_of

# every mount of the test portal (tests/security/conftest.py) and its level
MOUNT_LEVELS = {
    "/public": "public",
    "/open-echo": "public",
    "/stable": "stable",
    "/disagg/v1": "stable",
    "/echo": "stable",
    "/echo-asgi": "stable",
    "/api": "stable",
    "/api/strict": "stable",
    "/ea": "ea",
    "/dashboard": "ea",
    "/disagg/v2": "ea",
    "/ws-echo": "ea",
    "/devel": "devel",
    "/top": "admin",
}
ABOVE_STABLE = tuple(m for m, level in MOUNT_LEVELS.items() if level not in ("public", "stable"))


@pytest.fixture(scope="module")
def stable_cookie(secure_portal: RunningPortal) -> Iterator[str]:
    name = runtime_of(secure_portal).cookie.name
    with secure_portal.logged_in("user-stable") as client:
        yield f"{name}={client.cookies.get(name)}"


def devel_cookie(portal: RunningPortal) -> str:
    name = runtime_of(portal).cookie.name
    with portal.logged_in("user-devel") as client:
        return f"{name}={client.cookies.get(name)}"


def answered_by(response: RawResponse) -> str | None:
    """Which mount answered, judged by what the products say about themselves."""
    text = response.text
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict):
        portal = body.get("portal")
        for said in (body.get("root"), portal.get("mount") if isinstance(portal, dict) else None):
            if said in MOUNT_LEVELS:
                return str(said)
        if body.get("product") == "disagg":
            return f"/disagg/{body.get('version')}"
    for mount in MOUNT_LEVELS:
        if f"<code>{mount}</code>" in text:
            return mount
    if "<h1>Dashboard</h1>" in text:
        return "/dashboard"
    return None


def reached_above(response: RawResponse, held: str | None) -> str | None:
    """The mount that answered when the caller's level (None: anonymous) does not open it."""
    mount = answered_by(response)
    if mount is None or Levels(LEVELS).allows(held, MOUNT_LEVELS[mount]):
        return None
    return mount


def reached_above_stable(response: RawResponse) -> str | None:
    return reached_above(response, "stable")


def check(portal: RunningPortal, target: bytes, cookie: str, method: bytes = b"GET") -> RawResponse:
    response = get(
        portal.url, target, method=method, headers={"Cookie": cookie, "Accept": "application/json"}
    )
    assert response.status != 500, (target, response.text[:300])
    assert "Traceback" not in response.text
    assert reached_above_stable(response) is None, (target, response.status, response.text[:300])
    return response


ATTACKS = [
    b"/stable/../devel/whoami",
    b"/stable/./../top/whoami",
    b"/stable/%2e%2e/devel/whoami",
    b"/stable/%2E%2E/top/whoami",
    b"/stable/.%2e/devel/whoami",
    b"/stable/%252e%252e/devel/whoami",
    b"/stable%2f..%2fdevel/whoami",
    b"/stable%2F..%2Fdevel/whoami",
    b"/stable/..%2fdevel/whoami",
    b"/stable/..%5cdevel/whoami",
    b"/stable\\..\\devel/whoami",
    b"/stable%5c..%5cdevel/whoami",
    b"/stable/%25%32%65%25%32%65/devel/whoami",
    b"/devel;/whoami",
    b"/devel;jsessionid=x/whoami",
    b"/stable/..;/devel/whoami",
    b"/stable/%c0%ae%c0%ae/devel/whoami",
    b"/stable/%c0%af../devel/whoami",
    b"/stable/%e0%80%ae%e0%80%ae/devel/whoami",
    b"/stable/%00/../devel/whoami",
    b"/devel%00/whoami",
    b"/devel%00.stable/whoami",
    b"/devel./whoami",
    b"/devel../whoami",
    b"/devel%20/whoami",
    b"/DEVEL/whoami",
    b"/Devel/whoami",
    b"/TOP/whoami",
    b"//devel/whoami",
    b"///top/whoami",
    b"/stable//../devel/whoami",
    b"/./devel/whoami",
    b"/%2e/devel/whoami",
    b"/%2fdevel/whoami",
    b"/dashboard%2f/me",
    b"/disagg/v1/../v2/",
    b"/disagg/v1/%2e%2e/v2/",
    b"/disagg%2fv2/",
    b"http://127.0.0.1/devel/whoami",
    b"http://evil.example/top/whoami",
    b"/devel/whoami#",
    b"/devel\t/whoami",
    b"/stable/" + b"a" * 9000,
    b"/" + b"../" * 200 + b"devel/whoami",
    b"*",
]


@pytest.mark.parametrize("target", ATTACKS, ids=[a[:40].decode("latin-1") for a in ATTACKS])
def test_path_tricks_never_reach_a_mount_above_the_users_level(
    secure_portal: RunningPortal, stable_cookie: str, target: bytes
) -> None:
    """ASVS 4.1.3 and 12.3.1 (path traversal): the router's reading is the only reading."""
    check(secure_portal, target, stable_cookie)


def test_the_control_request_does_reach_a_mount(
    secure_portal: RunningPortal, stable_cookie: str
) -> None:
    """Without the tricks the probes see the mounts: the detector above is not blind."""
    json_accept = {"Accept": "application/json"}
    refused = get(
        secure_portal.url, b"/devel/whoami", headers={"Cookie": stable_cookie} | json_accept
    )
    assert refused.status == 403 and answered_by(refused) is None
    devel = {"Cookie": devel_cookie(secure_portal)}
    probes = {
        b"/devel/whoami": "/devel",
        b"/top/whoami": None,  # admin: above devel, refused
        b"/dashboard/me": "/dashboard",
        b"/disagg/v2/": "/disagg/v2",
        b"/echo-asgi/x": "/echo-asgi",
        b"/echo/x": "/echo",
    }
    for path, mount in probes.items():
        assert answered_by(get(secure_portal.url, path, headers=devel)) == mount, path
    seen = get(secure_portal.url, b"/devel/whoami", headers=devel)
    assert reached_above(seen, "stable") == "/devel" and reached_above(seen, "devel") is None


@pytest.mark.parametrize(
    "target", [b"/stable/../devel/whoami", b"/stable%2f..%2fdevel/", b"/devel%00/"]
)
def test_ambiguous_paths_answer_400(
    secure_portal: RunningPortal, stable_cookie: str, target: bytes
) -> None:
    """Dot segments, encoded slashes and NUL are refused before routing (docs/architecture.md)."""
    assert check(secure_portal, target, stable_cookie).status == 400


_METHODS = st.sampled_from(
    [
        b"GET",
        b"HEAD",
        b"POST",
        b"PUT",
        b"DELETE",
        b"PATCH",
        b"OPTIONS",
        b"TRACE",
        b"PROPFIND",
        b"FOO",
    ]
)
_SEGMENTS = st.sampled_from(
    [
        "stable",
        "ea",
        "devel",
        "top",
        "dashboard",
        "disagg",
        "v1",
        "v2",
        "whoami",
        "me",
        "echo",
        "..",
        ".",
        "%2e%2e",
        "%2f",
        "%5c",
        "%00",
        "%252e",
        ";",
        "auth",
        "login",
        "admin",
        "static",
        "",
        "%c0%ae",
        "DEVEL",
        "\\",
    ]
)
_HEADERS = st.dictionaries(
    st.sampled_from(
        [
            "X-Portal-User",
            "X-Portal-Level",
            "X_Portal_Level",
            "X-Forwarded-For",
            "Origin",
            "Sec-Fetch-Site",
            "Authorization",
            "Accept",
            "Content-Type",
            "X-Original-URL",
            "X-Rewrite-URL",
            "Host-Override",
            "Content-Length",
        ]
    ),
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40),
    max_size=5,
)


@settings(
    max_examples=150,
    deadline=None,
    database=None,  # nothing written to the work tree; failures print their example
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    method=_METHODS,
    segments=st.lists(_SEGMENTS, min_size=1, max_size=6),
    headers=_HEADERS,
    with_cookie=st.booleans(),
    junk_cookie=st.text(alphabet="abcdefghij.=-_;", max_size=30),
)
def test_property_random_requests_never_500_and_never_above_level(
    secure_portal: RunningPortal,
    stable_cookie: str,
    method: bytes,
    segments: list[str],
    headers: dict[str, str],
    with_cookie: bool,
    junk_cookie: str,
) -> None:
    """ASVS 4.1.3 (and no 500 anywhere): whatever a client throws, the answer is a deliberate one."""
    target = ("/" + "/".join(segments)).encode("latin-1")
    headers = {k: v for k, v in headers.items() if k != "Content-Length"} | {"Content-Length": "0"}
    headers["Cookie"] = stable_cookie if with_cookie else junk_cookie
    headers.setdefault("Accept", "application/json")
    # the cookie speaks for the caller unless a Bearer token does (identity.py)
    bearer = headers.get("Authorization", "").partition(" ")[0].lower() == "bearer"
    held = "stable" if with_cookie and not bearer else None
    response = get(secure_portal.url, target, method=method, headers=headers)
    assert response.status != 500, (method, target, headers, response.text[:300])
    assert "Traceback" not in response.text
    if method != b"HEAD":
        assert reached_above(response, held) is None, (method, target, headers)
