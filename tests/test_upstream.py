"""Upstream mounts (docs/remote-products.md), all real processes on loopback: the portal on
uvicorn, a Starlette product on its own uvicorn, a Flask product on gunicorn, a dead port, and a
server that does not speak HTTP. What the upstream receives (identity, assertion, forwarding
headers, never the client's X-Portal-* or the portal's credentials), 200 MB each way through the
portal within 100 MB of its idle memory, 502 and 504 that are logged and counted, rewritten
redirects and cookies, WebSockets both ways and closed by revocation on both sides, and the
shipped verifier inside the upstream refusing forged, expired, misdirected and unsigned
assertions."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol

from portal_asgi import claims
from portal_asgi.jose_utils import b64url_encode, unverified_claims, unverified_header
from portal_asgi.keys import generate_key, read_key
from portal_asgi.levels import Levels
from portal_asgi.tokens import TokenCodec
from portal_asgi.user import PortalUser

from .cli_runner import mint_token, run_cli
from .helpers import csrf_token
from .processes import PortalProcess, portal_process, uvicorn_process
from .servers import ROOT, free_port, password_for

BIN = Path(sys.executable).parent
MB = 1024 * 1024
BIG = 200 * MB
HEADROOM = 100 * MB  # the portal's resident memory may grow this much over idle, no more
JSON = {"accept": "application/json"}
HTML = {"accept": "text/html"}
LEVELS = Levels(("stable", "ea", "devel", "admin"))

MOUNTS = """
[[mount]]
path = "/up"
upstream = "http://127.0.0.1:{uvicorn}"
level = "ea"

[[mount]]
path = "/pub"
upstream = "http://127.0.0.1:{uvicorn}"
level = "public"

[[mount]]
path = "/rw"
upstream = "http://127.0.0.1:{uvicorn}/base/"
level = "ea"
rewrite = true

[[mount]]
path = "/slowly"
upstream = "http://127.0.0.1:{uvicorn}"
level = "public"
timeout = "1s"

[[mount]]
path = "/flask"
upstream = "http://127.0.0.1:{gunicorn}"
level = "ea"

[[mount]]
path = "/dead"
upstream = "http://127.0.0.1:{dead}"
level = "public"

[[mount]]
path = "/broken"
upstream = "http://127.0.0.1:{broken}"
level = "public"
"""


@dataclass(frozen=True)
class Rig:
    portal: PortalProcess
    settings: Path
    key: Path  # the portal's first signing key (the one it signs with: no rotation here)
    starlette: str  # the upstreams' own addresses, for calls that bypass the portal
    flask: str
    cookie: str  # alice's session cookie (level ea)

    def client(self, *, cookie: bool = True, **kwargs: Any) -> httpx2.Client:
        cookies = {"portal_session": self.cookie} if cookie else {}
        return httpx2.Client(base_url=self.portal.url, cookies=cookies, timeout=60, **kwargs)

    def socket(self, path: str, subprotocols: list[Subprotocol] | None = None) -> ClientConnection:
        url = self.portal.url.replace("http://", "ws://") + path
        headers = {"Cookie": f"portal_session={self.cookie}"}
        return connect(url, additional_headers=headers, subprotocols=subprotocols, open_timeout=20)


@contextmanager
def not_http(port: int) -> Iterator[None]:
    """A server on `port` that answers anything but HTTP: `/short` gets a Content-Length of 1000
    and 10 bytes, anything else a line that is not a status line."""
    server = socket.create_server(("127.0.0.1", port))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                data = b""
                while b"\r\n\r\n" not in data:
                    piece = conn.recv(4096)
                    if not piece:
                        break
                    data += piece
                if b" /short " in data.split(b"\r\n", 1)[0]:
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"y" * 10)
                else:
                    conn.sendall(b"this is not HTTP\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
        server.close()


def sign_in(url: str, username: str) -> str:
    with httpx2.Client(base_url=url, timeout=30) as client:
        token = csrf_token(client.get("/auth/login").text)
        form = {"username": username, "password": password_for(username)}
        answer = client.post("/auth/login", data={**form, "csrf_token": token, "next": "/"})
        assert answer.status_code == 303, answer.text
        return str(client.cookies["portal_session"])


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    tmp = tmp_path_factory.mktemp("upstream")
    ports = {name: free_port() for name in ("uvicorn", "gunicorn", "dead", "broken")}
    with ExitStack() as stack:
        stack.enter_context(not_http(ports["broken"]))
        portal = stack.enter_context(
            portal_process(tmp, users=["alice", "bob"], mounts=MOUNTS.format(**ports))
        )
        base = {**os.environ, "PORTAL_URL": portal.url}
        starlette = f"http://127.0.0.1:{ports['uvicorn']}"
        command = [str(BIN / "uvicorn"), "tests.upstream_products:starlette"]
        command += ["--host=127.0.0.1", f"--port={ports['uvicorn']}", "--log-level=warning"]
        stack.enter_context(
            uvicorn_process(
                command,
                ready=starlette + "/healthz",
                cwd=ROOT,
                env={**base, "UPSTREAM_MOUNT": "/up"},
                log=tmp / "starlette.log",
            )
        )
        flask = f"http://127.0.0.1:{ports['gunicorn']}"
        command = [str(BIN / "gunicorn"), "-w1", "--threads=4", f"-b127.0.0.1:{ports['gunicorn']}"]
        command += ["--log-level=warning", "tests.upstream_products:wsgi"]
        stack.enter_context(
            uvicorn_process(
                command,
                ready=flask + "/healthz",
                cwd=ROOT,
                env={**base, "UPSTREAM_MOUNT": "/flask"},
                log=tmp / "gunicorn.log",
            )
        )
        cookie = sign_in(portal.url, "alice")
        yield Rig(portal, tmp / "settings.toml", tmp / "key.pem", starlette, flask, cookie)
    # nothing the portal did may have left a traceback (a 500, an unhandled error)
    assert "Traceback" not in portal.log.read_text(), portal.log.read_text()


def received(answer: httpx2.Response) -> dict[str, list[str]]:
    """The headers the Starlette upstream reported, by name (lower case)."""
    assert answer.status_code == 200, answer.text
    found: dict[str, list[str]] = {}
    for name, value in answer.json()["headers"]:
        found.setdefault(name, []).append(value)
    return found


# -- what the upstream receives ----------------------------------------------------------------


def test_upstream_receives_identity_assertion_and_forwarding_headers(rig: Rig) -> None:
    with rig.client() as client:
        answer = client.get("/up/headers/a%20b", params={"q": "1 2"}, headers={"cookie-test": "x"})
    headers = received(answer)
    assert headers["x-portal-user"] == ["alice"]
    assert headers["x-portal-level"] == ["ea"]
    assert headers["x-forwarded-for"] == ["127.0.0.1"]
    assert headers["x-forwarded-proto"] == ["http"]
    assert headers["x-forwarded-host"] == [rig.portal.url.removeprefix("http://")]
    assert headers["x-forwarded-prefix"] == ["/up"]
    assert headers["host"] == [rig.starlette.removeprefix("http://")]
    assert answer.json()["raw_path"] == "/headers/a%20b"  # as the client encoded it
    assert answer.json()["query"] == "q=1+2"
    (assertion,) = headers["x-portal-assertion"]
    found = unverified_claims(assertion)
    assert found["aud"] == "/up" and found["sub"] == "alice" and found["lvl"] == "ea"
    assert found["scope"] == "access:stable access:ea" and found["typ"] == "assertion"
    assert found["iss"] == rig.portal.url
    assert 50 <= found["exp"] - found["iat"] <= 70 and "sid" not in found


def test_client_x_portal_headers_never_reach_the_upstream(rig: Rig) -> None:
    """DESIGN 5: any X-Portal-* a client sends is removed, in any spelling; the upstream sees
    the portal's own, once."""
    forged = {
        "X-Portal-User": "admin",
        "X-Portal-Level": "admin",
        "X-Portal-Assertion": "forged.by.client",
        "X_Portal_Email": "root@example.org",
        "X-Forwarded-For": "203.0.113.9",
        "X-Forwarded-Prefix": "/elsewhere",
    }
    with rig.client() as client:
        signed_in = received(client.get("/up/headers", headers=forged))
    assert signed_in["x-portal-user"] == ["alice"] and signed_in["x-portal-level"] == ["ea"]
    assert signed_in["x-portal-assertion"] != ["forged.by.client"]
    assert signed_in["x-forwarded-for"] == ["127.0.0.1"]
    assert signed_in["x-forwarded-prefix"] == ["/up"]
    assert "x_portal_email" not in signed_in
    with rig.client(cookie=False) as client:
        anonymous = received(client.get("/pub/headers", headers=forged))
    assert not [name for name in anonymous if name.replace("_", "-").startswith("x-portal-")]
    assert anonymous["x-forwarded-prefix"] == ["/pub"]


def test_portal_credentials_are_not_handed_to_the_upstream(rig: Rig) -> None:
    """The session cookie and the API token are credentials for the portal: an upstream that
    saw them could replay them against the portal. Its own cookies still reach it."""
    with rig.client() as client:
        client.cookies.set("theirs", "kept")
        client.cookies.set("portal_csrf", "not-for-them")
        by_cookie = received(client.get("/up/headers"))
    assert by_cookie["cookie"] == ["theirs=kept"]
    token = mint_token(rig.settings, "alice")
    with rig.client(cookie=False) as client:
        by_token = received(client.get("/up/headers", headers={"authorization": f"Bearer {token}"}))
    assert "authorization" not in by_token and "cookie" not in by_token
    assert by_token["x-portal-user"] == ["alice"]
    assert token not in json.dumps(by_token) and rig.cookie not in json.dumps(by_cookie)


def test_flask_upstream_on_gunicorn_gets_the_identity(rig: Rig) -> None:
    with rig.client() as client:
        environ = client.get("/flask/headers", headers={"X-Portal-User": "admin"}).json()["environ"]
        decorated = client.get("/flask/decorated/me")
        checked = client.get("/flask/checked/me")
    assert environ["HTTP_X_PORTAL_USER"] == "alice"
    assert environ["HTTP_X_FORWARDED_PREFIX"] == "/flask"
    expected = {"username": "alice", "level": "ea", "email": "", "x-portal-user": "alice"}
    assert decorated.status_code == 200 and decorated.json() == expected
    assert checked.status_code == 200 and checked.json() == expected


def test_shipped_verifier_inside_the_upstream_accepts_the_portals_assertion(rig: Rig) -> None:
    with rig.client() as client:
        answer = client.get("/up/checked/me")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "username": "alice",
        "name": "alice",
        "email": "",
        "level": "ea",
        "scopes": ["authenticated", "access:stable", "access:ea"],
        "portal": {"mount": "/up"},
        "x-portal-user": "alice",
    }


# -- the verifier inside the upstream refuses what did not come through the portal -------------


def _assertion(rig: Rig, **changes: Any) -> str:
    """An assertion for /up signed with the portal's key, with `changes` to its claims."""
    now = int(time.time())
    user = PortalUser(username="mallory", level="admin", uid="u-1")
    body = claims.assertion(LEVELS, "mallory", user, audience="/up", now=now)
    body.update(changes)
    return TokenCodec(read_key(rig.key), issuer=rig.portal.url).sign_assertion(body)


def _resigned(token: str, alg: str, secret: bytes | None) -> str:
    """`token` with `alg` in its header, signed with HMAC-SHA256 and `secret`, or unsigned."""
    _, payload, _ = token.split(".")
    head = b64url_encode(json.dumps({**unverified_header(token), "alg": alg}).encode())
    if secret is None:
        return f"{head}.{payload}."
    mac = hmac.new(secret, f"{head}.{payload}".encode(), hashlib.sha256).digest()
    return f"{head}.{payload}.{b64url_encode(mac)}"


def _direct(rig: Rig, base: str, path: str, token: str | None) -> httpx2.Response:
    headers = {} if token is None else {"X-Portal-Assertion": token}
    return httpx2.get(base + path, headers=headers, timeout=30)


@pytest.mark.parametrize("where", ["starlette", "flask-middleware", "flask-decorator"])
def test_upstream_refuses_assertions_that_did_not_come_from_the_portal(
    rig: Rig, where: str
) -> None:
    """An upstream reachable by other routes refuses what the portal did not sign for it (as
    IAP's signed header lets a backend do): no assertion, a forged signature, an expired one,
    one for another mount, one without signature (`alg: none`, RFC 8725 section 3.1), and one
    "signed" with HS256 using the public key as the secret (RFC 8725 section 3.1)."""
    base, path = {
        "starlette": (rig.starlette, "/checked/me"),
        "flask-middleware": (rig.flask, "/checked/me"),
        "flask-decorator": (rig.flask, "/decorated/me"),
    }[where]
    audience = "/up" if where == "starlette" else "/flask"
    good = _assertion(rig, aud=audience)
    # the control: the portal's key, the right audience, in time
    accepted = _direct(rig, base, path, good)
    assert accepted.status_code == 200 and accepted.json()["username"] == "mallory"
    # signed by another key, under the header (and `kid`) of the portal's
    other = TokenCodec(generate_key(), issuer=rig.portal.url)
    signature = other.sign_assertion(unverified_claims(good)).split(".")[2]
    forged = good.rsplit(".", 1)[0] + "." + signature
    now = int(time.time())
    public_pem = read_key(rig.key).public_pem.encode()
    refused = {
        "none": None,
        "garbage": "not.a.jwt",
        "forged": forged,
        "expired": _assertion(rig, aud=audience, iat=now - 600, exp=now - 300),
        "other mount": _assertion(rig, aud="/pub"),
        "alg none": _resigned(good, "none", None),
        "hs256 with the public key": _resigned(good, "HS256", public_pem),
    }
    for what, token in refused.items():
        answer = _direct(rig, base, path, token)
        assert answer.status_code == 401, (what, answer.status_code, answer.text)
        assert "mallory" not in answer.text, what  # nothing of the claimed user leaked
        assert answer.json() == {"error": "portal_assertion_required"}, what


# -- 200 MB each way, in bounded memory ----------------------------------------------------------


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


class Peak:
    """The highest resident memory of `pid` while the `with` block runs, sampled."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.highest = rss(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.highest = max(self.highest, rss(self.pid))

    def __enter__(self) -> Peak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.highest = max(self.highest, rss(self.pid))


@pytest.mark.parametrize("mount", ["/up", "/flask"], ids=["uvicorn", "gunicorn"])
def test_200_mb_each_way_stream_through_in_bounded_memory(rig: Rig, mount: str) -> None:
    """Neither body sits whole in the portal: 200 MB down and 200 MB up while the portal's
    resident memory stays within 100 MB of what it held idle."""
    with rig.client() as client:
        for _ in range(3):  # warm: the pool, the assertion, the code paths
            assert client.get(f"{mount}/big", params={"size": MB}).status_code == 200
            assert client.post(f"{mount}/upload", content=b"x" * MB).json() == {"size": MB}
        idle = rss(rig.portal.pid)
        with Peak(rig.portal.pid) as down:
            total = 0
            with client.stream("GET", f"{mount}/big", params={"size": BIG}) as answer:
                assert answer.status_code == 200
                assert answer.headers["content-length"] == str(BIG)
                for piece in answer.iter_raw():
                    total += len(piece)
        assert total == BIG

        def body() -> Iterator[bytes]:
            piece = b"u" * MB
            for _ in range(BIG // MB):
                yield piece

        with Peak(rig.portal.pid) as up:
            answer = client.post(
                f"{mount}/upload", content=body(), headers={"content-length": str(BIG)}
            )
        assert answer.status_code == 200 and answer.json() == {"size": BIG}
    assert down.highest - idle < HEADROOM, (idle, down.highest)
    assert up.highest - idle < HEADROOM, (idle, up.highest)


def test_chunked_upload_reaches_the_upstream_whole(rig: Rig) -> None:
    def body() -> Iterator[bytes]:
        for size in (1, 1000, 65536, 3 * MB):
            yield b"c" * size

    for mount in ("/up", "/flask"):
        with rig.client() as client:
            answer = client.post(f"{mount}/upload", content=body())  # Transfer-Encoding: chunked
        assert answer.json() == {"size": 1 + 1000 + 65536 + 3 * MB}, mount


# -- failures: 502 and 504, never a 500 or a hang ------------------------------------------------


def errors_counted(rig: Rig, mount: str, reason: str) -> float:
    text = httpx2.get(rig.portal.url + "/metrics", timeout=30).text
    line = f'portal_upstream_errors_total{{mount="{mount}",reason="{reason}"}}'
    found = [row for row in text.splitlines() if row.startswith(line)]
    return float(found[0].split()[-1]) if found else 0.0


def wait_for(condition: Any, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "not within the deadline"
        time.sleep(0.05)


def test_dead_upstream_answers_502_logged_and_counted(rig: Rig) -> None:
    before = errors_counted(rig, "/dead", "refused")
    with rig.client(cookie=False) as client:
        started = time.monotonic()
        as_json = client.get("/dead/anything", headers=JSON)
        as_page = client.get("/dead/anything", headers=HTML)
        assert time.monotonic() - started < 20
    assert as_json.status_code == 502 and as_json.json() == {"error": "bad_gateway"}
    assert as_page.status_code == 502 and "did not answer" in as_page.text
    wait_for(lambda: errors_counted(rig, "/dead", "refused") >= before + 2)
    assert "upstream http://127.0.0.1:" in rig.portal.log.read_text()


def test_slow_upstream_answers_504_at_the_mounts_timeout(rig: Rig) -> None:
    before = errors_counted(rig, "/slowly", "timeout")
    with rig.client(cookie=False) as client:
        started = time.monotonic()
        answer = client.get("/slowly/slow", params={"seconds": "30"}, headers=JSON)
        took = time.monotonic() - started
        fast = client.get("/slowly/slow", params={"seconds": "0"}, headers=JSON)
    assert answer.status_code == 504 and answer.json() == {"error": "gateway_timeout"}
    assert 0.9 <= took < 15, took  # timeout = "1s", with room for a loaded machine
    assert fast.status_code == 200 and fast.text == "late"
    wait_for(lambda: errors_counted(rig, "/slowly", "timeout") >= before + 1)


def test_upstream_that_breaks_http_answers_502(rig: Rig) -> None:
    before = errors_counted(rig, "/broken", "broken")
    with rig.client(cookie=False) as client:
        answer = client.get("/broken/anything", headers=JSON)
    assert answer.status_code == 502 and answer.json() == {"error": "bad_gateway"}
    wait_for(lambda: errors_counted(rig, "/broken", "broken") >= before + 1)


def test_answer_cut_short_is_not_passed_off_as_complete(rig: Rig) -> None:
    """The upstream announced 1000 bytes and sent 10: the client must see a broken answer, not
    a short one it would take for whole."""
    before = errors_counted(rig, "/broken", "broken")
    with rig.client(cookie=False) as client, pytest.raises(httpx2.RemoteProtocolError):
        client.get("/broken/short", headers=JSON)
    wait_for(lambda: errors_counted(rig, "/broken", "broken") >= before + 1)


# -- rewrite --------------------------------------------------------------------------------------


def test_rewrite_puts_redirects_and_cookie_paths_under_the_mount(rig: Rig) -> None:
    with rig.client(follow_redirects=False) as client:
        moved = {
            to: client.get("/rw/redirect", params={"to": to}).headers["location"]
            for to in (
                "/base/landing?x=1",
                f"{rig.starlette}/base/deep/page",
                "https://elsewhere.example/base/x",
                "relative/path",
                "/outside",
            )
        }
        cookies = client.get("/rw/cookies").headers.get_list("set-cookie")
        plain = client.get("/up/redirect", params={"to": "/base/landing"}).headers["location"]
    assert moved == {
        "/base/landing?x=1": "/rw/landing?x=1",
        f"{rig.starlette}/base/deep/page": "/rw/deep/page",
        "https://elsewhere.example/base/x": "https://elsewhere.example/base/x",
        "relative/path": "relative/path",
        "/outside": "/outside",
    }
    assert "own=1; Path=/rw/area; HttpOnly" in cookies
    assert "root=2; Path=/" in cookies
    assert not [c for c in cookies if c.startswith("portal_session=")]  # never the portal's
    assert plain == "/base/landing"  # rewrite is off on /up


# -- WebSockets -----------------------------------------------------------------------------------


def closed_code(ws: ClientConnection, within: float = 10.0) -> int:
    deadline = time.monotonic() + within
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, "socket still open"
        try:
            ws.recv(timeout=remaining)
        except ConnectionClosed as exc:
            assert exc.rcvd is not None, "dropped without a close frame"
            return exc.rcvd.code
        except TimeoutError:
            continue


def upstream_close(rig: Rig, tag: str) -> int | None:
    code = httpx2.get(f"{rig.starlette}/closes", params={"tag": tag}, timeout=10).json()["code"]
    return int(code) if code is not None else None


def test_websocket_relayed_both_ways_with_subprotocol_and_close_codes(rig: Rig) -> None:
    offered = [Subprotocol("chat.v2"), Subprotocol("chat.v1")]
    tag = uuid.uuid4().hex
    with rig.socket(f"/up/ws?tag={tag}", subprotocols=offered) as ws:
        assert ws.subprotocol == "chat.v2"
        ws.send("hello")
        assert ws.recv(timeout=10) == "hello"
        ws.send(b"\x00\xff" * 1000)
        assert ws.recv(timeout=10) == b"\x00\xff" * 1000
        ws.close(4000, "client done")
    wait_for(lambda: upstream_close(rig, tag) == 4000)
    with rig.socket("/up/ws?tag=x") as ws:
        ws.send("close:4321")
        assert closed_code(ws) == 4321  # the upstream's own close code reaches the client


def test_revocation_closes_the_client_and_the_upstream_socket(rig: Rig) -> None:
    """The live re-check ends both sides at once: the client gets 4401 and the upstream's socket
    is closed with the same code (DESIGN 4, sockets.py)."""
    cookie = sign_in(rig.portal.url, "bob")
    tag = uuid.uuid4().hex
    url = rig.portal.url.replace("http://", "ws://") + f"/up/ws?tag={tag}"
    with connect(
        url, additional_headers={"Cookie": f"portal_session={cookie}"}, open_timeout=20
    ) as ws:
        ws.send("before")
        assert ws.recv(timeout=10) == "before"
        signed_out = run_cli(rig.settings, "users", "sign-out", "bob")
        assert signed_out.returncode == 0, signed_out.stderr
        assert closed_code(ws) == 4401
    wait_for(lambda: upstream_close(rig, tag) == 4401)


def test_websocket_to_a_dead_upstream_is_refused_502(rig: Rig) -> None:
    url = rig.portal.url.replace("http://", "ws://") + "/dead/ws"
    with pytest.raises(InvalidStatus) as refused, connect(url, open_timeout=20):
        pass
    assert refused.value.response.status_code == 502


def test_websocket_refused_by_the_upstream_keeps_its_status(rig: Rig) -> None:
    with pytest.raises(InvalidStatus) as refused, rig.socket("/up/no-such-socket"):
        pass
    assert refused.value.response.status_code == 403  # Starlette's answer to an unknown route
