"""Path tricks against the running portal, sent as exact request lines over a raw socket (an HTTP
client would normalise some of them), and unit tests of `portal_asgi.middleware.paths.is_ambiguous`.

Whatever the trick, a user below `devel` never sees the devel product: ambiguous paths answer 400
before routing (docs/architecture.md), other spellings 404, or a redirect to the canonical path."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from portal_asgi.middleware.paths import is_ambiguous

from .servers import RunningPortal

# What only the devel product's answers contain: its hello page, and its /whoami JSON.
DEVEL_MARKERS = (b"<code>/devel</code>", b'"root":"/devel"')


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    raw: bytes

    def shows_devel(self) -> bool:
        return any(marker in self.raw for marker in DEVEL_MARKERS)


def raw_request(
    portal: RunningPortal, target: bytes, headers: dict[str, str] | None = None
) -> RawResponse:
    """Send `GET <target> HTTP/1.1` exactly as given and read the whole answer."""
    host, port = portal.url.removeprefix("http://").split(":")
    lines = [b"GET " + target + b" HTTP/1.1", f"Host: {host}:{port}".encode()]
    lines += [f"{name}: {value}".encode("latin-1") for name, value in (headers or {}).items()]
    lines.append(b"Connection: close")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        parsed[name.strip().lower()] = value.strip()
    return RawResponse(int(status_line.split()[1]), parsed, body, raw)


@pytest.fixture(scope="module")
def sessions(portal: RunningPortal) -> Iterator[dict[str, dict[str, str]]]:
    """Request headers carrying the session of the stable and the devel user."""
    found = {}
    for level in ("stable", "devel"):
        with portal.logged_in(f"user-{level}") as client:
            found[level] = {"Cookie": f"portal_session={client.cookies['portal_session']}"}
    yield found


JSON = {"Accept": "application/json"}
HTML = {"Accept": "text/html"}

AMBIGUOUS = [
    b"/devel/../ea/",
    b"/ea/../devel/",
    b"/ea/../devel/whoami",
    b"/stable/../devel/whoami",
    b"/ea/./whoami",
    b"/devel/.",
    b"/devel/..",
    b"/%2e%2e/",
    b"/%2e%2e/devel/whoami",
    b"/ea/%2e%2e/devel/whoami",
    b"/ea/%2E%2E/devel/whoami",
    b"/ea/.%2e/devel/whoami",
    b"/%2e/devel/whoami",
    b"/ea%2Fdevel",
    b"/ea%2fdevel/whoami",
    b"/ea/..%2Fdevel/whoami",
    b"/ea%5Cdevel",
    b"/ea%5c..%5cdevel/whoami",
    b"/devel%5C",
    b"/ea/..\\devel/whoami",
    b"/devel\\whoami",
    b"/ea/%00",
    b"/devel%00/",
    b"/devel/whoami%00",
    b"/ea/%2e%2e%2fdevel/whoami",
    b"/devel%09/whoami",
    b"/devel/%0d%0awhoami",
    b"/devel/%7f",
]


@pytest.mark.parametrize("target", AMBIGUOUS, ids=lambda t: t.decode("latin-1"))
@pytest.mark.parametrize("level", ["stable", "devel"])
def test_ambiguous_paths_answer_400(
    portal: RunningPortal, sessions: dict[str, dict[str, str]], target: bytes, level: str
) -> None:
    """400 for everyone, the devel user included: the path itself is refused, before routing."""
    for accept in (JSON, HTML):
        response = raw_request(portal, target, {**sessions[level], **accept})
        assert response.status == 400, response.raw
        assert not response.shows_devel()
        assert b"Traceback" not in response.raw


def test_ambiguous_path_answer_forms(portal: RunningPortal) -> None:
    response = raw_request(portal, b"/devel/../ea/", JSON)
    assert response.headers["content-type"].startswith("application/json")
    assert response.body == b'{"error": "bad_request"}'
    page = raw_request(portal, b"/devel/../ea/", HTML)
    assert page.headers["content-type"].startswith("text/html")
    assert b"Bad request" in page.body


def test_anonymous_ambiguous_path_is_400_not_a_login_redirect(portal: RunningPortal) -> None:
    assert raw_request(portal, b"/devel/../ea/", HTML).status == 400


@pytest.mark.parametrize(
    "target",
    [
        b"//devel/",
        b"//devel/whoami",
        b"///devel/whoami",
        b"/DEVEL/",
        b"/Devel/whoami",
        b"/dEVEL/whoami",
        b"/devel;/whoami",
        b"/devel;x/whoami",
        b"/devel%20/whoami",
        b"/%64evel/whoami",  # %64 is "d": decodes to /devel/whoami, so the guard judges it
        b"/devel%2e/whoami",
        b"/devel.json",
        b"/develx/whoami",
    ],
    ids=lambda t: t.decode("latin-1"),
)
def test_other_spellings_never_reach_devel_for_stable(
    portal: RunningPortal, sessions: dict[str, dict[str, str]], target: bytes
) -> None:
    response = raw_request(portal, target, {**sessions["stable"], **JSON})
    # no mount has any of these paths (404), but `/%64evel/` is `/devel/` itself: stable may not
    expected = 403 if target == b"/%64evel/whoami" else 404
    assert response.status == expected, response.raw
    assert not response.shows_devel()


def test_percent_encoded_letters_are_judged_as_the_decoded_path(
    portal: RunningPortal, sessions: dict[str, dict[str, str]]
) -> None:
    """`/%64evel/` is `/devel/` to the router, and to the guard: 403 for stable, 200 for devel."""
    assert raw_request(portal, b"/%64evel/whoami", {**sessions["stable"], **JSON}).status == 403
    allowed = raw_request(portal, b"/%64evel/whoami", {**sessions["devel"], **JSON})
    assert allowed.status == 200
    assert allowed.shows_devel()


def test_double_slash_and_case_are_not_found(
    portal: RunningPortal, sessions: dict[str, dict[str, str]]
) -> None:
    for target in (b"//devel/", b"/DEVEL/"):
        response = raw_request(portal, target, {**sessions["devel"], **JSON})
        assert response.status == 404, target
        assert response.body == b'{"error": "not_found"}'


@pytest.mark.parametrize("level", ["stable", "devel"])
def test_mount_without_trailing_slash_redirects(
    portal: RunningPortal, sessions: dict[str, dict[str, str]], level: str
) -> None:
    response = raw_request(portal, b"/devel", {**sessions[level], **HTML})
    assert response.status == 307, response.raw  # routes.py: a bare mount path, to its slash form
    assert not response.shows_devel()
    assert response.headers["location"] == "/devel/"
    followed = raw_request(portal, b"/devel/", {**sessions[level], **HTML})
    assert followed.status == (200 if level == "devel" else 403)
    assert followed.shows_devel() == (level == "devel")


@pytest.mark.parametrize("target", [b"/devel/", b"/devel//", b"/devel/whoami", b"/devel//whoami"])
def test_trailing_and_doubled_slashes_inside_the_mount(
    portal: RunningPortal, sessions: dict[str, dict[str, str]], target: bytes
) -> None:
    stable = raw_request(portal, target, {**sessions["stable"], **JSON})
    assert stable.status == 403
    assert not stable.shows_devel()
    devel = raw_request(portal, target, {**sessions["devel"], **JSON})
    assert devel.status == 200  # inside the mount, the product answers its own paths


def test_absolute_form_target_is_judged_by_its_path(
    portal: RunningPortal, sessions: dict[str, dict[str, str]]
) -> None:
    target = f"{portal.url}/devel/whoami".encode()
    response = raw_request(portal, target, {**sessions["stable"], **JSON})
    assert response.status == 403
    assert not response.shows_devel()
    assert raw_request(portal, target, {**sessions["devel"], **JSON}).status == 200


def test_query_string_is_not_part_of_the_path(
    portal: RunningPortal, sessions: dict[str, dict[str, str]]
) -> None:
    """Dots and encoded slashes in the query are fine; they do not move the request."""
    response = raw_request(portal, b"/ea/whoami?next=/../devel/%2F", {**sessions["devel"], **JSON})
    assert response.status == 200
    response = raw_request(
        portal, b"/stable/whoami?x=/../devel/whoami", {**sessions["stable"], **JSON}
    )
    assert response.status == 200
    assert not response.shows_devel()


def test_very_long_path_is_refused(
    portal: RunningPortal, sessions: dict[str, dict[str, str]]
) -> None:
    response = raw_request(portal, b"/devel/" + b"a/" * 3000, {**sessions["devel"], **JSON})
    assert response.status == 400  # paths over 4 KiB (middleware/paths.py), before routing


def test_control_byte_in_the_request_line_is_refused(
    portal: RunningPortal, sessions: dict[str, dict[str, str]]
) -> None:
    """A raw NUL never gets as far as the portal: the server refuses the request line."""
    response = raw_request(portal, b"/devel/\x00whoami", {**sessions["stable"], **JSON})
    assert response.status == 400
    assert not response.shows_devel()


# --- unit tests of is_ambiguous --------------------------------------------------------------


def scope(path: str, raw_path: bytes | None = None, **extra: Any) -> dict[str, Any]:
    made: dict[str, Any] = {"type": "http", "path": path, **extra}
    if raw_path is not None:
        made["raw_path"] = raw_path
    return made


@pytest.mark.parametrize(
    ("path", "raw_path"),
    [
        ("/devel/../ea/", b"/devel/../ea/"),
        ("/../", b"/%2e%2e/"),
        ("/./devel/", b"/%2E/devel/"),
        ("/ea/.", None),
        ("/ea/..", None),
        ("..", None),
        ("/ea/devel", b"/ea%2Fdevel"),
        ("/ea/devel", b"/ea%2fdevel"),
        ("/ea\\devel", b"/ea%5Cdevel"),
        ("/ea\\devel", b"/ea%5cdevel"),
        ("/ea\\devel", None),
        ("/ea\x00", b"/ea%00"),
        ("/ea\x00", None),
        ("/ea\tx", None),
        ("/ea\nx", None),
        ("/ea\x7f", None),
        ("/a" * 2049, None),
    ],
)
def test_is_ambiguous_true(path: str, raw_path: bytes | None) -> None:
    assert is_ambiguous(scope(path, raw_path))


@pytest.mark.parametrize(
    ("path", "raw_path"),
    [
        ("/", b"/"),
        ("/devel/", b"/devel/"),
        ("/devel", None),
        ("/ea/whoami", b"/ea/whoami"),
        ("//devel/", b"//devel/"),
        ("/devel//x", None),
        ("/file.txt", None),
        ("/.well-known/jwks.json", None),
        ("/a..b/", None),
        ("/...", None),
        ("/.hidden/x", None),
        ("/devel/", b"/%64evel/"),
        ("/caf\u00e9/", b"/caf%C3%A9/"),
        ("/a%2Fb", b"/a%252Fb"),  # a literal "%2F" in the decoded path: one meaning only
        ("", None),
    ],
)
def test_is_ambiguous_false(path: str, raw_path: bytes | None) -> None:
    assert not is_ambiguous(scope(path, raw_path))


def test_is_ambiguous_reads_raw_path_for_encoded_slashes() -> None:
    """The decoded path of `/ea%2Fdevel` is `/ea/devel`, which looks harmless: only the raw
    path shows that a slash was encoded."""
    assert not is_ambiguous(scope("/ea/devel", b"/ea/devel"))
    assert is_ambiguous(scope("/ea/devel", b"/ea%2Fdevel"))


def test_is_ambiguous_for_websocket_scopes() -> None:
    assert is_ambiguous(scope("/devel/../ea/ws", b"/devel/../ea/ws", type="websocket"))
    assert not is_ambiguous(scope("/ea/ws", b"/ea/ws", type="websocket"))


def test_is_ambiguous_agrees_with_its_rule_for_every_character() -> None:
    """`is_ambiguous` skips its patterns for a path holding none of the characters they look
    for: whatever character a path holds, the answer is the rule's (a control character or a
    backslash is ambiguous; anything else, `%` and `.` included, is not by itself)."""
    for code in range(0x3000):
        if 0xD800 <= code < 0xE000:  # surrogates: not in a decoded path
            continue
        char = chr(code)
        path = f"/a{char}b/"
        expected = code < 0x20 or code == 0x7F or char == "\\"
        assert is_ambiguous(scope(path)) == expected, repr(char)
        assert is_ambiguous(scope(path, path.encode("utf-8"))) == expected, repr(char)
