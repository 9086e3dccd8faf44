"""Junk at the door: 10,000 fuzzed HTTP requests over raw sockets (so that no client library
tidies them up first) against `uvicorn --workers 2`: odd methods; paths with unicode,
percent-encodings, dot segments, NUL, great length, under every mount and portal prefix; many,
large, odd-named and duplicated headers, bogus cookies, malformed `Authorization` and JWT-looking
tokens, forwarding and `X-Portal-*` headers; WebSocket and h2c upgrades; random bodies whose
`Content-Length` or chunking lies. Valid credentials (a session cookie, user and admin API
tokens, a login form's CSRF pair) ride along often enough that the junk reaches the products,
their WebSockets (with broken frames behind good handshakes), the login form and the admin
paths, not only the front door.

The portal may refuse anything, but never with a 500 (or any 5xx but a login's 503 with
Retry-After, the bound on password hashing), never with a traceback in its log, and no worker
may die. Requests come from a seeded generator, one `random.Random` per request: a failure
names its seed and index, and `FUZZ_SEED=<seed>` replays the run (docs/operations.md)."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import random
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest

from portal_asgi.types import Message

from .asgi import started
from .cli_runner import mint_token, run_cli
from .processes import PortalProcess, portal_process
from .soak import workers_of
from .traffic import ADMIN, MOUNTS, USER, Visitor, deployed, session_cookie

REQUESTS = 10_000
CONCURRENCY = 32
SEED = int(os.environ.get("FUZZ_SEED", "20261202"))
TIMEOUT = 5.0  # a whole answer, on a loaded machine
SHORT_BODY_TIMEOUT = 1.0  # a body shorter than its Content-Length: the server waits for the rest

PREFIXES = (
    "/",
    "/public",
    "/stable",
    "/ea",
    "/devel",
    "/top",
    "/dashboard",
    "/disagg/v1",
    "/disagg/v2",
    "/echo",
    "/echo-asgi",
    "/api",
    "/ws-echo",
    "/chat",
    "/auth/login",
    "/auth/logout",
    "/auth/callback",
    "/admin",
    "/admin/api/users",
    "/admin/api/mounts",
    "/admin/api/audit",
    "/admin/api/reload",
    "/account",
    "/healthz",
    "/readyz",
    "/metrics",
    "/static/portal.css",
    "/.well-known/jwks.json",
)
PAGES = (
    "/ea/whoami",
    "/ea/echo",
    "/stable/",
    "/dashboard/me",
    "/disagg/v1/",
    "/echo/x",
    "/echo-asgi/x",
    "/api/x",
    "/ws-echo/ws",
    "/chat/",
    "/auth/login",
    "/auth/logout",
    "/",
)
SEGMENTS = (
    "whoami",
    "echo",
    "me",
    "ws",
    "x",
    "openapi.json",
    "users",
    "tokens",
    "password",
    "sign-out",
    ";jsessionid=1",
    "~",
    "*",
    "",
)
# Dot segments, encoded slashes and bytes that are no UTF-8: the portal refuses these (400)
# before routing, so they come now and then, and the rest of the junk reaches the products.
TRICKY_SEGMENTS = (
    "..",
    ".",
    "%2e%2e",
    "%2E",
    ".%2e",
    "%2f",
    "%2F",
    "%5c",
    "%00",
    "%",
    "%zz",
    "%c0%ae%c0%ae",
    "%ff%fe",
    "..;",
)
# Characters a client should percent-encode: mostly encoded (so the request reaches the portal),
# now and then raw (so the server's parser meets them too).
UNSAFE_SEGMENTS = ("é", "日本語", "\u202e", "\U0001f600", "\x00", "\x7f", "\\", " ")
METHODS = (
    *("GET",) * 8,
    *("POST",) * 5,
    "HEAD",
    "PUT",
    "PATCH",
    "DELETE",
    "OPTIONS",
    "TRACE",
    "CONNECT",
    "PROPFIND",
    "MKCOL",
)
BAD_METHODS = ("BREW", "get", "G ET", "GET\x00", "X" * 300, "")
LEVEL_WORDS = ("stable", "ea", "devel", "admin", "public", "root", "", "ADMIN", "é", "null")
NAMES = ("bob", "carol", "zed", "", "a" * 300, "../x", "é", "%00", "null")  # never USER/ADMIN
ODD_HEADER_NAMES = (
    "X Space",
    "X(y)",
    "\u00e9t\u00e9",
    "",
    "X-\x00",
    "Content-Length ",
    " Host",
    "x-portal-user",
    "X_Portal_User",
    "Transfer_Encoding",
    "a" * 5000,
)


@dataclass(frozen=True)
class Credentials:
    """Valid things the junk may carry, so that it gets past the front door."""

    visitor: Visitor
    admin_token: str
    form_cookie: str
    form_token: str


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt_like(rng: random.Random, creds: Credentials) -> str:
    """A JWT-looking string: hand-made headers (alg none, HS256, odd kid, jku), a real token
    bit-flipped, truncated or re-signed with junk, or plain garbage with dots."""
    choice = rng.randrange(6)
    if choice == 0:
        header = {
            "alg": rng.choice(["none", "None", "HS256", "RS256", "ES256", "EdDSA", "", 7]),
            "typ": "JWT",
        }
        if rng.random() < 0.5:
            header["kid"] = rng.choice(["../../etc/passwd", "", "x" * 2000, "' OR 1=1 --", 0])
        if rng.random() < 0.2:
            header["jku"] = "http://127.0.0.1:1/keys"
        claims = {
            "sub": rng.choice([USER, ADMIN, "", None, 1]),
            "lvl": rng.choice(LEVEL_WORDS),
            "scope": "access:admin",
            "exp": rng.choice([0, 2**63, -1, "soon", 9999999999]),
            "sid": rng.choice(["", "x", None]),
        }
        return ".".join(
            [
                b64(json.dumps(header).encode()),
                b64(json.dumps(claims).encode()),
                b64(rng.randbytes(rng.choice([0, 16, 64]))),
            ]
        )
    real = rng.choice([creds.visitor.token, creds.visitor.cookie, creds.admin_token])
    if choice == 1:
        at = rng.randrange(len(real))
        return real[:at] + rng.choice("ABCxyz019-_.=") + real[at + 1 :]
    if choice == 2:
        return real[: rng.randrange(len(real))]
    if choice == 3:
        head, _, rest = real.partition(".")
        return f"{head}.{rest.partition('.')[0]}.{b64(rng.randbytes(64))}"
    if choice == 4:
        return ".".join(b64(rng.randbytes(rng.randrange(1, 40))) for _ in range(rng.randrange(6)))
    return rng.choice(["", ".", "..", "....", "Bearer", "null", "undefined", "\x00", "é" * 10])


def percent_encoded(text: str) -> str:
    return "".join(f"%{byte:02X}" for byte in text.encode())


def fuzz_path(rng: random.Random) -> str:
    path = rng.choice(PREFIXES)
    if rng.random() < 0.3:  # a page that exists, so that the junk in the rest reaches it
        return rng.choice(PAGES) + rng.choice(["", "", "?next=//evil.example", "?%C3%A9=%00"])
    for _ in range(rng.choice([0, 1, 1, 2, 3, 6])):
        pick = rng.random()
        if pick < 0.1:
            segment = rng.choice(UNSAFE_SEGMENTS)
            if rng.random() < 0.85:
                segment = percent_encoded(segment)
        elif pick < 0.2:
            segment = rng.choice(TRICKY_SEGMENTS)
        else:
            segment = rng.choice(SEGMENTS)
            if rng.random() < 0.1:
                segment = percent_encoded(segment)
        path = path.rstrip("/") + "/" + segment if rng.random() < 0.9 else path + segment
    if rng.random() < 0.05:
        path += "/" + "a" * rng.choice([300, 5000, 70_000])
    if rng.random() < 0.05:
        path = path.replace("/", rng.choice(["//", "\\", "/./", "%2f"]), rng.randrange(1, 3))
    if rng.random() < 0.2:
        query = rng.choice(
            [
                "next=//evil.example",
                "next=/%2e%2e/admin",
                "path=/ea",
                "q=%",
                "a=1&a=2",
                "%C3%A9=%00",
            ]
        )
        path += "?" + query
    if rng.random() < 0.03:
        path += "#frag"
    if rng.random() < 0.03:
        path = rng.choice(["*", "http://evil.example" + path, "127.0.0.1:80", path.lstrip("/")])
    return path


def credentials(rng: random.Random, creds: Credentials) -> list[tuple[str, str]]:
    headers: list[tuple[str, str]] = []
    cookie = rng.random()
    if cookie < 0.3:
        headers.append(("Cookie", f"portal_session={creds.visitor.cookie}"))
    elif cookie < 0.45:
        headers.append(("Cookie", f"portal_session={jwt_like(rng, creds)}"))
    elif cookie < 0.5:
        headers.append(("Cookie", "; ".join(f"c{n}={'v' * n}" for n in range(rng.randrange(200)))))
    elif cookie < 0.55:
        headers.append(("Cookie", rng.choice(["=", ";;;", "portal_session", "a=\x01b", "é=é"])))
        headers.append(("Cookie", f"portal_session={creds.visitor.cookie}; portal_session=x"))
    elif cookie < 0.6:
        headers.append(("Cookie", creds.form_cookie))
    auth = rng.random()
    if auth < 0.2:
        headers.append(("Authorization", f"Bearer {creds.visitor.token}"))
    elif auth < 0.3:
        headers.append(("Authorization", f"Bearer {creds.admin_token}"))
    elif auth < 0.5:
        scheme = rng.choice(["Bearer", "bearer", "BEARER", "Basic", "Bearer  ", "Token", ""])
        headers.append(("Authorization", f"{scheme} {jwt_like(rng, creds)}"))
    elif auth < 0.55:
        headers.append(("Authorization", f"Bearer {creds.visitor.token}"))
        headers.append(("Authorization", f"Bearer {jwt_like(rng, creds)}"))
    elif auth < 0.6:
        headers.append(("Authorization", rng.choice(["Bearer", "Bearer a b c", "Basic Og==", ""])))
    return headers


def odd_headers(rng: random.Random) -> list[tuple[str, str]]:
    headers: list[tuple[str, str]] = []
    pool = [
        ("X-Forwarded-For", rng.choice(["10.0.0.1", "1.2.3.4, 5.6.7.8", "junk", "", "::1" * 50])),
        ("X-Forwarded-Proto", rng.choice(["https", "gopher", ""])),
        ("X-Forwarded-Host", rng.choice(["evil.example", "", "a" * 1000])),
        ("X-Forwarded-Prefix", rng.choice(["/admin", "//evil", "%2e%2e"])),
        ("Forwarded", rng.choice(["for=1.2.3.4;proto=https", "for=", ";;;"])),
        ("X-Real-IP", "10.9.8.7"),
        ("X-Portal-User", rng.choice([ADMIN, "admin", ""])),
        ("X-Portal-Level", rng.choice(LEVEL_WORDS)),
        ("X-Portal-Email", "root@example.org"),
        ("X-Portal-Assertion", "e30.e30."),
        ("Origin", rng.choice(["http://evil.example", "null", "", "http://127.0.0.1:1", "é"])),
        ("Sec-Fetch-Site", rng.choice(["cross-site", "same-origin", "none", "same-site", "?"])),
        ("Sec-Fetch-Mode", rng.choice(["navigate", "cors", "websocket"])),
        ("Accept", rng.choice(["text/html", "*/*", "application/json", "text/html;q=0", "é"])),
        ("Accept-Encoding", rng.choice(["gzip", "br", "*", "identity;q=0"])),
        ("Range", rng.choice(["bytes=0-1", "bytes=-1", "bytes=5-1", "lines=1"])),
        ("If-None-Match", '"x"'),
        ("Expect", rng.choice(["100-continue", "200-ok"])),
        ("User-Agent", rng.choice(["", "é" * 50, "Mozilla/5.0", "\x01"])),
        ("Referer", "http://evil.example/"),
    ]
    for _ in range(rng.choice([0, 1, 2, 4, 8])):
        headers.append(rng.choice(pool))
    if rng.random() < 0.05:
        headers += [(f"X-Many-{n}", "v") for n in range(rng.choice([50, 99, 101, 300]))]
    if rng.random() < 0.05:
        headers.append(("X-Large", "v" * rng.choice([4000, 16_000, 33_000, 100_000])))
    if rng.random() < 0.05:
        headers.append((rng.choice(ODD_HEADER_NAMES), rng.choice(["v", "", "\x00", "a\rb", "é"])))
    if rng.random() < 0.03:
        headers.append(("Host", rng.choice(["evil.example", "", "127.0.0.1:1"])))
    return headers


def fuzz_body(rng: random.Random, creds: Credentials) -> tuple[str, bytes]:
    """A content type and a body."""
    kind = rng.randrange(8)
    if kind == 0:
        return "", b""
    if kind == 1:
        return rng.choice(["application/octet-stream", "", "text/plain"]), rng.randbytes(
            rng.choice([1, 100, 5000])
        )
    if kind == 2:
        fields = {
            "username": rng.choice([USER, ADMIN, *NAMES]),
            "password": rng.choice(["", "wrong", "\x00", "é" * 100]),
            "csrf_token": rng.choice([creds.form_token, "", "x", creds.form_token[:-1]]),
            "next": rng.choice(["/", "//evil.example", "/\\evil", "http://evil", "/ea/", ""]),
        }
        picked = rng.sample(list(fields.items()), rng.randrange(len(fields) + 1))
        form = "&".join(f"{k}={v}" for k, v in picked)
        if rng.random() < 0.2:
            form += rng.choice(["&&&", "=", "%", "%zz", "&a", "&" + "k=v&" * 2000])
        return "application/x-www-form-urlencoded", form.encode()
    if kind == 3:
        boundary = rng.choice(["b0undary", "", "x" * 200, '"quoted"'])
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\nvalue\r\n'
            for name in rng.sample(["username", "password", "csrf_token", "next", "f"], 3)
        ]
        form = "".join(parts) + rng.choice([f"--{boundary}--\r\n", "", "--", "junk"])
        ctype = rng.choice([f"multipart/form-data; boundary={boundary}", "multipart/form-data"])
        return ctype, form.encode()
    if kind in (4, 5):
        value: object = rng.choice(
            [
                {"username": rng.choice(NAMES), "level": rng.choice(LEVEL_WORDS)},
                {"path": rng.choice(PREFIXES), "level": rng.choice([*LEVEL_WORDS, None, 3])},
                {"label": "x" * rng.choice([1, 5000]), "ttl": rng.choice(["1h", "-1s", 7, None])},
                {"level": [1, 2], "disabled": "yes", "email": {"a": 1}},
                [1, 2, 3],
                "string",
                None,
                1e308,
                {"a": {"b": {"c": {"d": [[[[[]]]]]}}}},
            ]
        )
        body = json.dumps(value).encode()
        if rng.random() < 0.2:
            body = body[: rng.randrange(len(body) + 1)] + rng.choice([b"", b"\xff", b"}}}"])
        return rng.choice(
            ["application/json", "application/json; charset=utf-7", "text/json"]
        ), body
    if kind == 6:
        return "text/plain; charset=" + rng.choice(["utf-8", "latin-1", "bogus"]), "é€".encode()
    return "application/x-www-form-urlencoded", b"a=" + b"b" * rng.choice([2_000_000, 70_000])


def frames(rng: random.Random) -> bytes:
    """What a WebSocket client sends once the handshake is through: a masked text frame, a
    close frame, frames that break the rules (unmasked, reserved bits, a length that lies,
    control frames too long), or noise."""
    payload = rng.choice([b"hello", b"", "é".encode(), b"\xff\xfe", b"x" * 200])
    mask = rng.randbytes(4)
    masked = bytes(byte ^ mask[n % 4] for n, byte in enumerate(payload))
    good = bytes([0x81, 0x80 | len(payload)]) + mask + masked if len(payload) < 126 else b""
    return rng.choice(
        [
            good,
            good + bytes([0x88, 0x82]) + mask + bytes([0x03 ^ mask[0], 0xE8 ^ mask[1]]),  # 1000
            bytes([0x81, len(payload)]) + payload if len(payload) < 126 else b"",  # unmasked
            bytes([0xF1, 0x85]) + mask + b"abcde",  # reserved bits
            bytes([0x81, 0xFF]) + b"\xff" * 8 + mask,  # 2**64 - 1 bytes announced
            bytes([0x89, 0xFE, 0x01, 0x00]) + mask + b"p" * 256,  # a ping longer than 125
            rng.randbytes(rng.choice([1, 7, 64, 3000])),
            b"",
        ]
    )


@dataclass(frozen=True)
class Fuzzed:
    data: bytes
    method: str
    short_body: bool  # the body is shorter than its Content-Length: the server may wait
    upgrade: bool  # a WebSocket handshake: once through, the socket stays open a moment


def fuzz_request(seed: int, index: int, creds: Credentials) -> Fuzzed:
    """Request number `index` of the run with `seed`, the same bytes every time."""
    rng = random.Random(seed * 1_000_003 + index)
    method = rng.choice(METHODS if rng.random() < 0.97 else BAD_METHODS)
    path = fuzz_path(rng)
    version = "HTTP/1.1"
    if rng.random() < 0.05:
        version = rng.choice(["HTTP/1.0", "HTTP/2.0", "HTTP/1.1 x", "HTTP/9", ""])
    headers: list[tuple[str, str]] = []
    if rng.random() < 0.97:
        headers.append(("Host", "127.0.0.1"))
    headers += credentials(rng, creds)
    headers += odd_headers(rng)
    ctype, body = fuzz_body(rng, creds) if rng.random() < 0.5 else ("", b"")
    if ctype:
        headers.append(("Content-Type", ctype))
    short_body = False
    framing = rng.random()
    upgrade = framing < 0.08
    if upgrade:  # a WebSocket handshake, often a good one, and frames right behind it
        if rng.random() < 0.7:
            method, path = "GET", rng.choice(["/ws-echo/ws"] * 3 + ["/chat/ws"] * 2 + [path])
        key = base64.b64encode(rng.randbytes(16)).decode() if rng.random() < 0.8 else "short"
        headers += [("Upgrade", rng.choice(["websocket"] * 6 + ["WebSocket", "h2c", "junk"]))]
        headers += [("Connection", rng.choice(["Upgrade"] * 4 + ["upgrade, keep-alive", "close"]))]
        headers += [("Sec-WebSocket-Key", key)]
        headers += [("Sec-WebSocket-Version", rng.choice(["13"] * 6 + ["8", "", "x"]))]
        body = frames(rng)
    elif framing < 0.12:  # chunked, well or badly
        headers.append(("Transfer-Encoding", rng.choice(["chunked", "gzip, chunked", "chunked "])))
        if rng.random() < 0.3:
            headers.append(("Content-Length", str(len(body))))  # smuggling's favourite pair
        chunks = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n" if body else b"0\r\n\r\n"
        body = chunks if rng.random() < 0.7 else rng.choice([b"zz\r\n", b"5\r\nab", b"-1\r\n"])
        short_body = True
    elif framing < 0.2:  # a Content-Length that lies
        lie = rng.choice(["-1", "abc", "99999999999999999999", "1, 2", " 3", "0x10", ""])
        short_body = True  # whatever the server makes of it, it may wait for more
        if rng.random() < 0.4:
            lie = str(len(body) + rng.choice([1, 100]))
        elif rng.random() < 0.3:
            lie = str(max(0, len(body) - 1))
            short_body = False
        headers.append(("Content-Length", lie))
        if rng.random() < 0.2:
            headers.append(("Content-Length", str(len(body))))
            short_body = True
    elif body or method in ("POST", "PUT", "PATCH"):
        headers.append(("Content-Length", str(len(body))))
    rng.shuffle(headers)
    if not upgrade:
        headers.append(("Connection", "close"))
    line_end = b"\n" if rng.random() < 0.02 else b"\r\n"
    head = f"{method} {path} {version}".encode("utf-8", "surrogateescape") + line_end
    for name, value in headers:
        head += f"{name}: {value}".encode() + line_end
    if rng.random() < 0.01:
        head += b" folded continuation" + line_end  # obsolete line folding
    return Fuzzed(head + line_end + body, method, short_body, upgrade)


def interim_removed(data: bytes) -> bytes:
    """The answer without the 100 Continue (or other 1xx but 101) heads before it."""
    while re.match(rb"HTTP/1\.[01] 1(?!01)\d\d ", data) and b"\r\n\r\n" in data:
        data = data.partition(b"\r\n\r\n")[2]
    return data


def complete(data: bytes, method: str) -> bool:
    """Whether `data` holds a whole answer (the server need not close to end it)."""
    head, found, body = interim_removed(data).partition(b"\r\n\r\n")
    if not found:
        return False
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) > 1 and parts[1] == b"101":
        return False  # a WebSocket: read what the server makes of the frames, until it closes
    if len(parts) < 2 or parts[1] in (b"204", b"304") or method == "HEAD":
        return True
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        fields[name.strip().lower()] = value.strip()
    if b"content-length" in fields:
        return len(body) >= int(fields[b"content-length"])
    if fields.get(b"transfer-encoding") == b"chunked":
        return body.endswith(b"0\r\n\r\n")
    return False


# What stands in for a status when there was none: closed without an answer, still silent at
# the deadline, or something that does not parse as an answer.
CLOSED, SILENT, GARBLED = 0, -1, -2


async def exchange(port: int, fuzzed: Fuzzed) -> tuple[int, bytes]:
    """Send the bytes, read the answer: its status (or CLOSED, SILENT, GARBLED) and its head."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    data = b""
    timed_out = False
    try:
        writer.write(fuzzed.data)
        async with asyncio.timeout(
            SHORT_BODY_TIMEOUT if fuzzed.short_body or fuzzed.upgrade else TIMEOUT
        ):
            await writer.drain()
            while not complete(data, fuzzed.method):
                chunk = await reader.read(65536)
                if not chunk:
                    break
                data += chunk
    except TimeoutError:
        timed_out = True
    except ConnectionError:
        pass  # reset by the server, often after a refusal it already sent: judged below
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except ConnectionError:
            pass
    head = interim_removed(data).partition(b"\r\n\r\n")[0]
    if not head:
        return (SILENT if timed_out else CLOSED), head
    status = head.split(b"\r\n")[0].split(b" ")
    return (int(status[1]) if len(status) > 1 and status[1].isdigit() else GARBLED), head


@dataclass(frozen=True)
class Answer:
    index: int
    status: int
    head: bytes
    fuzzed: Fuzzed


async def run(port: int, creds: Credentials) -> list[Answer]:
    answers: list[Answer] = []
    indices = iter(range(REQUESTS))

    async def worker() -> None:
        for index in indices:
            fuzzed = fuzz_request(SEED, index, creds)
            status, head = await exchange(port, fuzzed)
            answers.append(Answer(index, status, head, fuzzed))

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return answers


def acceptable(answer: Answer) -> bool:
    """Any refusal is fine, and so is a dropped connection; silence only when the body is
    shorter than announced (the server waits for the rest); a 5xx only as a login's 503 with
    Retry-After (password hashing is bounded)."""
    if answer.status == SILENT:
        return answer.fuzzed.short_body
    if answer.status < 500:
        return answer.status != GARBLED
    return (
        answer.status == 503
        and b"/auth/login" in answer.fuzzed.data.split(b"\n", 1)[0]
        and b"retry-after:" in answer.head.lower()
    )


def answered_by(answer: Answer) -> str:
    """Who answered: uvicorn itself (a request its parser refused), the portal (its pages and
    refusals carry its Content-Security-Policy), a product (the portal's defaults for product
    answers, nosniff alone), or nobody."""
    head = answer.head.lower()
    if answer.status <= 0:
        return "nobody"
    if b"content-security-policy:" in head:
        return "portal"
    if b"x-content-type-options:" in head:
        return "product"
    return "uvicorn"


@pytest.fixture
def fuzzed_portal(tmp_path: Path) -> Iterator[tuple[PortalProcess, Credentials]]:
    settings = tmp_path / "settings.toml"
    with portal_process(
        tmp_path, workers=2, users=[USER, ADMIN], mounts=MOUNTS, env=deployed(tmp_path)
    ) as running:
        done = run_cli(settings, "users", "set-level", ADMIN, "admin")
        assert done.returncode == 0, done.stderr
        form_cookie, form_token = running.form()
        creds = Credentials(
            Visitor(USER, session_cookie(running.url, USER), mint_token(settings, USER)),
            mint_token(settings, ADMIN),
            form_cookie,
            form_token,
        )
        yield running, creds


def test_10000_fuzzed_requests_get_no_500_and_no_traceback(
    fuzzed_portal: tuple[PortalProcess, Credentials],
) -> None:
    """CWE-248 (uncaught exception), OWASP WSTG-ERRH-01: malformed requests of every kind are
    answered with a 4xx (or dropped), never with a 500, a traceback or a dead worker."""
    portal, creds = fuzzed_portal
    port = int(portal.url.rpartition(":")[2])
    workers = workers_of(portal.pid)
    assert len(workers) == 2, workers
    print(f"fuzz seed: {SEED} (FUZZ_SEED={SEED} replays this run)")
    started = time.perf_counter()
    answers = asyncio.run(run(port, creds))
    seconds = time.perf_counter() - started
    statuses = Counter(answer.status for answer in answers)
    by = Counter(answered_by(answer) for answer in answers)
    print(f"fuzz: {len(answers)} requests in {seconds:.1f} s, by status {sorted(statuses.items())}")
    print(f"fuzz: answered by {sorted(by.items())}")
    assert len(answers) == REQUESTS
    # the junk must get past uvicorn's parser often enough to test the portal, not uvicorn
    assert by["portal"] + by["product"] >= REQUESTS // 2 and by["product"] >= REQUESTS // 20, by
    wrong = sorted((a for a in answers if not acceptable(a)), key=lambda a: a.index)
    assert wrong == [], "\n".join(
        f"seed {SEED} index {a.index}: {a.status} {a.head[:300]!r}\n  sent {a.fuzzed.data[:600]!r}"
        for a in wrong[:10]
    )
    # the portal still serves, on the same workers (uvicorn would quietly replace a dead one)
    assert httpx2.get(portal.url + "/healthz", timeout=30).status_code == 200
    assert workers_of(portal.pid) == workers
    log = portal.log.read_text()
    for sign in ("Traceback", "Exception in ASGI application"):
        assert sign not in log, log[log.index(sign) - 2000 : log.index(sign) + 3000]


@pytest.mark.parametrize("path", ["/echo/upload", "/auth/login", "/auth/logout"])
def test_a_client_leaving_mid_body_is_no_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, path: str
) -> None:
    """A client that leaves while a Starlette product or the portal's own form reads its body
    (`request.body()` or `request.form()` raises ClientDisconnect) is not an error: no
    traceback in the portal's log. It was, once per dropped request: anyone could fill the
    log. Found by the fuzz test above."""
    mounts = (
        '[[mount]]\npath = "/echo"\napp = "tests.security.echo_products:asgi"\nlevel = "public"\n'
    )

    async def scenario() -> None:
        async with started(tmp_path, mounts=mounts) as (portal, _):
            scope = {
                "type": "http",
                "asgi": {"version": "3.0"},
                "http_version": "1.1",
                "method": "POST",
                "scheme": "http",
                "path": path,
                "raw_path": path.encode(),
                "query_string": b"",
                "root_path": "",
                "headers": [
                    (b"host", b"127.0.0.1:8000"),
                    (b"content-type", b"application/x-www-form-urlencoded"),
                    (b"content-length", b"100"),
                ],
                "client": ("127.0.0.1", 50000),
                "server": ("127.0.0.1", 8000),
            }
            messages = iter(
                [{"type": "http.request", "body": b"username=a&pass", "more_body": True}]
                + [{"type": "http.disconnect"}] * 10
            )

            async def receive() -> Message:
                return next(messages)

            async def send(message: Message) -> None:
                pass  # the client is gone: what is sent goes nowhere

            with caplog.at_level(logging.DEBUG, logger="portal_asgi"):
                await portal(scope, receive, send)
            assert any("client left" in r.getMessage() for r in caplog.records)
            errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
            assert errors == [], [r.getMessage() for r in errors]

    asyncio.run(scenario())
