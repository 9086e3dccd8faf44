"""Traffic for the load, fuzz and soak tests (tests/test_load.py, tests/test_fuzz.py,
tests/soak.py): a portal in processes of its own (`uvicorn --workers 2`) with products of every
kind, a signed-in visitor's credentials, and a mix of requests that each have exactly one right
answer, so that any other status (and any 5xx) counts as an error."""

from __future__ import annotations

import json
import re
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from http.cookiejar import CookieJar, DefaultCookiePolicy
from pathlib import Path

import httpx2

from .cli_runner import mint_token
from .servers import password_for

# Besides the default mounts (the Flask test product at every level, the Starlette dashboard):
# products that take any method and body (Flask and ASGI), a WebSocket product, a mixed mount
# (Flask for HTTP, ASGI for WebSockets) and a mount opted out of cross-site blocking.
MOUNTS = """
[[mount]]
path = "/echo"
app = "tests.security.echo_products:wsgi"
level = "stable"

[[mount]]
path = "/echo-asgi"
app = "tests.security.echo_products:asgi"
level = "stable"

[[mount]]
path = "/api"
app = "tests.security.echo_products:asgi"
level = "stable"
csrf = false

[[mount]]
path = "/ws-echo"
app = "products.echo.app:app"
level = "ea"

[[mount]]
path = "/chat"
app = "products.chat.web:app"
websocket = "products.chat.ws:app"
level = "ea"
"""
# The signed-in visitor (level `ea`, made before the workers start) and the admin the fuzz
# test holds an API token of, so that fuzzed requests also reach the admin API.
USER = "alice"
ADMIN = "root"
COOKIE = "portal_session"  # the session cookie's default name


def deployed(tmp: Path) -> dict[str, str]:
    """The environment of a portal with several workers as `make run` and the deployment files
    start it: prometheus_client's multiprocess mode on an empty directory of its own."""
    metrics = tmp / "metrics"
    metrics.mkdir()
    return {"PROMETHEUS_MULTIPROC_DIR": str(metrics)}


def no_cookies() -> CookieJar:
    """A cookie jar that keeps nothing: every request carries exactly the cookie it names, so
    that an anonymous request can never pick up a session cookie an answer set. A bare
    CookieJar, since httpx copies an `httpx.Cookies` into a jar of its own, without the policy."""
    return CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))


def session_cookie(url: str, username: str) -> str:
    """Sign in through the real login form (CSRF token and all); the session cookie's value."""
    with httpx2.Client(base_url=url, timeout=30) as client:
        page = client.get("/auth/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token, page.text
        answer = client.post(
            "/auth/login",
            data={
                "username": username,
                "password": password_for(username),
                "csrf_token": token.group(1),
                "next": "/",
            },
        )
        assert answer.status_code == 303, answer.text
        return str(client.cookies[COOKIE])


@dataclass
class Visitor:
    """What a signed-in user holds: a session cookie from the login form (replaced by the one
    the portal re-issues as it nears its idle timeout, as a browser does), an API token from
    `portal-asgi token mint`."""

    username: str
    cookie: str
    token: str

    @classmethod
    def of(cls, url: str, settings: Path, username: str) -> Visitor:
        return cls(username, session_cookie(url, username), mint_token(settings, username))


@dataclass(frozen=True)
class Call:
    """One request and the only answer it may get: `status`, and `says` in the body."""

    name: str
    method: str
    path: str
    status: int
    credentials: str = ""  # "cookie", "token", "junk-token" or "" (anonymous)
    accept: str = "application/json"
    body: bytes = b""
    says: str = ""


# Signed-in pages of a Flask and a Starlette product by cookie and by API token, a post with a
# body, the catalogue, refusals of every kind, public pages and the login page.
MIX: tuple[Call, ...] = (
    Call("flask, cookie", "GET", "/ea/whoami", 200, "cookie", says=f'"user":"{USER}"'),
    Call("starlette, cookie", "GET", "/dashboard/me", 200, "cookie", says=f'"identity":"{USER}"'),
    Call("flask, token", "GET", "/ea/whoami", 200, "token", says=f'"user":"{USER}"'),
    Call("starlette, token", "GET", "/dashboard/me", 200, "token", says=f'"identity":"{USER}"'),
    Call("flask post, cookie", "POST", "/ea/echo", 200, "cookie", body=b"x" * 2000, says="xxxx"),
    Call("asgi post, token", "POST", "/echo-asgi/p", 200, "token", body=b"y" * 500, says="yyyy"),
    Call("catalogue", "GET", "/", 200, "cookie", accept="text/html", says="/dashboard"),
    Call("level too low", "GET", "/devel/whoami", 403, "cookie"),
    Call("level too low, token", "GET", "/devel/whoami", 403, "token"),
    Call("anonymous, api", "GET", "/ea/whoami", 401),
    Call("anonymous, browser", "GET", "/dashboard/", 303, accept="text/html"),
    Call("forged token", "GET", "/dashboard/me", 401, "junk-token"),
    Call("public page", "GET", "/public/", 200, says="visitor"),
    Call("login page", "GET", "/auth/login", 200, accept="text/html", says="csrf_token"),
    Call("health", "GET", "/healthz", 200, says='"status"'),
    Call("keys", "GET", "/.well-known/jwks.json", 200, says='"keys"'),
    Call("metrics", "GET", "/metrics", 200, accept="text/plain", says="# TYPE"),
    Call("no such page", "GET", "/nowhere", 404, "cookie"),
)
JUNK_TOKEN = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9."


def headers_for(call: Call, visitor: Visitor) -> dict[str, str]:
    headers = {"accept": call.accept}
    if call.credentials == "cookie":
        headers["cookie"] = f"{COOKIE}={visitor.cookie}"
    elif call.credentials == "token":
        headers["authorization"] = f"Bearer {visitor.token}"
    elif call.credentials == "junk-token":
        headers["authorization"] = f"Bearer {JUNK_TOKEN}"
    return headers


@dataclass
class Tally:
    """Answers by call and status, latencies, and every wrong answer or connection error."""

    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return sum(self.statuses.values())

    def by_status(self) -> Counter[int]:
        found: Counter[int] = Counter()
        for (_, status), n in self.statuses.items():
            found[status] += n
        return found

    def percentiles(self) -> dict[str, float]:
        """p50, p90, p99 and the maximum, in milliseconds."""
        cuts = statistics.quantiles(self.latencies, n=100, method="inclusive")
        return {
            "p50": cuts[49] * 1000,
            "p90": cuts[89] * 1000,
            "p99": cuts[98] * 1000,
            "max": max(self.latencies) * 1000,
        }


async def send(client: httpx2.AsyncClient, call: Call, visitor: Visitor, tally: Tally) -> None:
    """Send `call`; tally its status and latency, and any wrong answer or connection error."""
    started = time.perf_counter()
    try:
        answer = await client.request(
            call.method, call.path, headers=headers_for(call, visitor), content=call.body or None
        )
    except httpx2.HTTPError as exc:  # a refused, reset or timed-out connection: always an error
        tally.errors.append(f"{call.name}: {type(exc).__name__}: {exc}")
        tally.statuses[(call.name, 0)] += 1
        return
    tally.latencies.append(time.perf_counter() - started)
    tally.statuses[(call.name, answer.status_code)] += 1
    renewed = answer.cookies.get(COOKIE) if call.credentials == "cookie" else None
    if renewed:
        visitor.cookie = renewed
    if answer.status_code != call.status or call.says not in answer.text:
        tally.errors.append(f"{call.name}: {answer.status_code} {answer.text[:200]!r}")


def summary(tally: Tally, seconds: float) -> dict[str, object]:
    """What the load test reports: counts, throughput, latency percentiles."""
    return {
        "requests": tally.count,
        "seconds": round(seconds, 2),
        "requests_per_second": round(tally.count / seconds, 1),
        "latency_ms": {k: round(v, 1) for k, v in tally.percentiles().items()},
        "statuses": dict(sorted(tally.by_status().items())),
        "errors": len(tally.errors),
    }


def report(title: str, figures: object) -> str:
    return f"{title}: {json.dumps(figures, sort_keys=True)}"
