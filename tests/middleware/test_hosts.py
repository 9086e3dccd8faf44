"""A browser at another name for the portal than `[portal] base_url`'s (middleware/hosts.py):
its page requests are sent to base_url's, built from base_url and the path alone; everything
else (scripts, forms, proxies, a browser sent round once already) is answered where it is. On a
real portal over real HTTP, with the `Host` header a browser at that name would send."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from portal_asgi.middleware.hosts import normal_host

from ..helpers import HTML, JSON
from ..security.helpers import raw_request
from ..servers import RunningPortal, serve

MARKER = "portal_moved"


def host_of(portal: RunningPortal) -> str:
    return urlsplit(portal.url).netloc


def other_name(portal: RunningPortal) -> str:
    """`localhost:<port>`: the same server by another name."""
    return f"localhost:{urlsplit(portal.url).port}"


def test_a_browser_at_localhost_is_sent_to_base_urls_host(portal: RunningPortal) -> None:
    with portal.client() as client:
        answer = client.get("/", headers={**HTML, "host": other_name(portal)})
    assert answer.status_code == 307
    assert answer.headers["location"] == f"{portal.url}/"
    assert answer.headers["set-cookie"] == f"{MARKER}=1; Path=/; HttpOnly; SameSite=Lax; Max-Age=30"
    assert answer.headers["content-security-policy"].startswith("default-src 'self'")


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_the_path_and_query_go_along(portal: RunningPortal, method: str) -> None:
    with portal.client() as client:
        answer = client.request(
            method,
            "/auth/login?next=/ea/a%20b&x=%C3%A9",
            headers={**HTML, "host": other_name(portal)},
        )
    assert answer.status_code == 307
    assert answer.headers["location"] == f"{portal.url}/auth/login?next=/ea/a%20b&x=%C3%A9"


def test_a_forged_host_never_appears_in_the_answer(portal: RunningPortal) -> None:
    """Host header injection: the Location is base_url's, whatever the client claims."""
    forged = "evil.example"
    with portal.client() as client:
        answer = client.get("/ea/x?next=//other.example/", headers={**HTML, "host": forged})
    assert answer.status_code == 307
    location = answer.headers["location"]
    assert location == f"{portal.url}/ea/x?next=//other.example/"
    assert urlsplit(location).netloc == host_of(portal)
    assert forged not in answer.text
    assert all(forged not in v for k, v in answer.headers.items() if k != "location")


def test_a_path_starting_with_two_slashes_stays_a_path(portal: RunningPortal) -> None:
    """`//evil.example/x` after base_url is a path on the portal, not another host (raw HTTP:
    httpx would read the target as an address)."""
    request = (
        b"GET //evil.example/x?a=1 HTTP/1.1\r\nHost: "
        + other_name(portal).encode()
        + b"\r\nAccept: text/html\r\nConnection: close\r\n\r\n"
    )
    answer = raw_request(portal.url, request)
    assert answer.status == 307
    assert answer.headers["location"] == f"{portal.url}//evil.example/x?a=1"
    assert urlsplit(answer.headers["location"]).netloc == host_of(portal)


def test_the_portals_own_name_is_served(portal: RunningPortal) -> None:
    with portal.client() as client:
        answer = client.get("/", headers={**HTML, "host": host_of(portal).upper()})
    assert answer.status_code == 303  # to sign in, as usual
    assert answer.headers["location"] == "/auth/login?next=/"


@pytest.mark.parametrize(
    ("method", "headers"),
    [
        ("GET", JSON),  # a script
        ("GET", {"accept": "*/*"}),  # not a browser (docs/architecture.md)
        ("POST", HTML),  # a form: never sent elsewhere with its body
        ("GET", {**HTML, "x-forwarded-for": "203.0.113.9"}),  # came through a proxy
        ("GET", {**HTML, "cookie": f"{MARKER}=1"}),  # sent here once already
    ],
)
def test_what_is_answered_at_any_name(
    portal: RunningPortal, method: str, headers: dict[str, str]
) -> None:
    with portal.client() as client:
        answer = client.request(method, "/", headers={**headers, "host": other_name(portal)})
    assert answer.status_code != 307
    assert "location" not in answer.headers or answer.headers["location"].startswith("/")
    assert MARKER not in answer.headers.get("set-cookie", "")


def test_a_browser_sent_back_by_a_proxy_is_served_and_logged_once(
    fresh_portal: RunningPortal, caplog: pytest.LogCaptureFixture
) -> None:
    """A proxy that does not pass `Host` on would send the browser round in circles: the marker
    cookie breaks the circle at the second turn."""
    with fresh_portal.client() as client:
        first = client.get("/", headers={**HTML, "host": "backend:8000"})
        assert first.status_code == 307
        assert str(client.cookies[MARKER]) == "1"
        with caplog.at_level("WARNING", logger="portal_asgi.hosts"):
            second = client.get("/", headers={**HTML, "host": "backend:8000"})
            client.get("/", headers={**HTML, "host": "backend:8000"})
    assert second.status_code == 303  # served: to sign in, as usual
    warnings = [r.getMessage() for r in caplog.records if r.name == "portal_asgi.hosts"]
    assert len(warnings) == 1  # once per worker, not once per page
    assert "Host 'backend:8000'" in warnings[0] and "proxy_set_header Host $host" in warnings[0]


@pytest.fixture
def behind_proxy(tmp_path: Path) -> Iterator[RunningPortal]:
    """A portal whose trusted proxy is loopback, where the tests' requests come from."""
    with serve(tmp_path, mounts='[security]\ntrusted_proxies = ["127.0.0.1/32"]\n') as running:
        yield running


def test_a_trusted_proxy_speaks_for_the_address_the_browser_used(
    behind_proxy: RunningPortal,
) -> None:
    with behind_proxy.client() as client:
        answer = client.get("/", headers={**HTML, "host": "portal.example.org"})
    assert answer.status_code == 303
    assert answer.headers["location"] == "/auth/login?next=/"


@pytest.mark.parametrize(
    ("host", "scheme", "normal"),
    [
        ("Example.ORG:443", "https", "example.org"),
        ("example.org:443", "http", "example.org:443"),
        ("127.0.0.1:80", "http", "127.0.0.1"),
        ("[::1]:8000", "http", "[::1]:8000"),
        ("[::1]", "http", "[::1]"),
        ("[::1]:80", "http", "[::1]"),
    ],
)
def test_normal_host(host: str, scheme: str, normal: str) -> None:
    assert normal_host(host, scheme) == normal
