"""`/metrics`: Prometheus text that adds up every worker of a real `uvicorn --workers 2` portal
(prometheus_client's multiprocess mode), exact counts after known traffic, the allow list, the
listener of its own, and the database errors of a portal whose database went away."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx2
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url
from websockets.sync.client import connect

from portal_asgi.exceptions import SettingsError
from portal_asgi.metrics import BUCKETS, _Histogram
from portal_asgi.settings import parse_settings

from .conftest import MARIADB_URL
from .processes import PortalProcess, portal_process
from .servers import MariaDB, free_port, password_for, serve
from .test_database_down import CuttableLink, _through

JSON = {"accept": "application/json"}
DEADLINE = 30.0  # seconds: every worker hands its counts over once a second


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a scrape, by name and labels."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(text: str, name: str, **labels: str) -> float:
    """The sample `name` with exactly `labels` (0 when absent)."""
    return samples(text).get((name, frozenset(labels.items())), 0.0)


def scrape(url: str, **kwargs: object) -> str:
    answer = httpx2.get(url, timeout=10, **kwargs)  # type: ignore[arg-type]
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=")
    return answer.text


def until(url: str, condition: Callable[[str], bool]) -> str:
    """Scrape until `condition` holds (the other worker's counts arrive within a second)."""
    deadline = time.monotonic() + DEADLINE
    while True:
        text = scrape(url)
        if condition(text):
            return text
        assert time.monotonic() < deadline, f"not met within {DEADLINE:.0f} s:\n{text}"
        time.sleep(0.2)


def sign_in(portal: PortalProcess, username: str, password: str) -> int:
    """A sign-in through the login form, on a connection of its own; its status."""
    cookie, token = portal.form()
    form = {"username": username, "password": password, "csrf_token": token, "next": "/"}
    answer = httpx2.post(
        portal.url + "/auth/login", data=form, headers={"cookie": cookie}, timeout=30
    )
    return answer.status_code


METRICS_TABLES = """
[[mount]]
path = "/echo"
app = "products.echo.app:app"
level = "public"

[metrics]
allow = ["127.0.0.1/32"]
"""


@pytest.fixture
def two_workers(tmp_path: Path, database_url: str) -> Iterator[tuple[PortalProcess, Path]]:
    # a directory that does not exist yet: the portal creates it (emptying it is the launcher's)
    folder = tmp_path / "metrics"
    with portal_process(
        tmp_path,
        database_url=database_url,
        workers=2,
        users=("alice", "bob", "carol"),
        mounts=METRICS_TABLES,
        security="max_retries = 3",
        env={"PROMETHEUS_MULTIPROC_DIR": str(folder)},
    ) as portal:
        yield portal, folder


def test_counts_add_up_over_two_workers(two_workers: tuple[PortalProcess, Path]) -> None:
    portal, folder = two_workers
    metrics = portal.url + "/metrics"
    # Known traffic, each request on a connection of its own so that both workers answer some.
    for _ in range(30):
        assert httpx2.get(portal.url + "/public/whoami", timeout=10).status_code == 200
    for _ in range(4):  # anonymous on an ea mount: refused 401
        assert httpx2.get(portal.url + "/ea/whoami", headers=JSON, timeout=10).status_code == 401
    for _ in range(3):
        assert httpx2.get(portal.url + "/nowhere", timeout=10).status_code == 404
    assert sign_in(portal, "alice", password_for("alice")) == 303
    assert sign_in(portal, "bob", password_for("bob")) == 303
    outcomes = []
    while 429 not in outcomes:  # carol's wrong password until regulation bans
        outcomes.append(sign_in(portal, "carol", "wrong"))
        assert len(outcomes) <= 10, outcomes
    failed, banned = outcomes.count(401), outcomes.count(429)
    assert failed >= 1 and set(outcomes) == {401, 429}

    def arrived(text: str) -> bool:
        """Every worker has handed over everything (then the counts must be exact)."""
        expected = [
            ("portal_requests_total", {"mount": "/public", "method": "GET", "status": "200"}, 30),
            ("portal_requests_total", {"mount": "/ea", "method": "GET", "status": "401"}, 4),
            ("portal_requests_total", {"mount": "none", "method": "GET", "status": "404"}, 3),
            ("portal_refusals_total", {"reason": "401"}, 4 + failed),
            ("portal_refusals_total", {"reason": "429"}, banned),
            ("portal_logins_total", {"provider": "local", "outcome": "banned"}, banned),
            ("portal_sessions_active", {}, 2),
        ]
        return all(value(text, name, **labels) >= least for name, labels, least in expected)

    text = until(metrics, arrived)
    # both workers write to the shared directory, and one scrape added them up
    assert len(list(folder.glob("gauge_livemin_*.db"))) == 2, sorted(folder.iterdir())
    assert value(text, "portal_requests_total", mount="/public", method="GET", status="200") == 30
    assert value(text, "portal_request_duration_seconds_count", mount="/public") == 30
    assert value(text, "portal_request_duration_seconds_bucket", mount="/public", le="+Inf") == 30
    assert value(text, "portal_request_duration_seconds_sum", mount="/public") > 0
    assert value(text, "portal_requests_total", mount="/ea", method="GET", status="401") == 4
    assert value(text, "portal_requests_total", mount="none", method="GET", status="404") == 3
    # refusals: the guard's 401s and the failed sign-ins' (the login page's own 401)
    assert value(text, "portal_refusals_total", reason="401") == 4 + failed
    assert value(text, "portal_refusals_total", reason="404") == 3
    assert value(text, "portal_refusals_total", reason="429") == banned
    assert value(text, "portal_logins_total", provider="local", outcome="success") == 2
    assert value(text, "portal_logins_total", provider="local", outcome="failed") == failed
    assert value(text, "portal_logins_total", provider="local", outcome="banned") == banned
    assert value(text, "portal_sessions_active") == 2
    assert 0 <= value(text, "portal_feed_lag_seconds") < 15
    assert value(text, "portal_database_errors_total", where="feed") == 0

    # An open WebSocket counts on its mount while open, and as a request once closed.
    with connect(portal.url.replace("http", "ws") + "/echo/ws", open_timeout=10) as socket:
        socket.recv(timeout=10)
        until(metrics, lambda t: value(t, "portal_websockets_open", mount="/echo") == 1)
    text = until(metrics, lambda t: value(t, "portal_websockets_open", mount="/echo") == 0)
    text = until(
        metrics,
        lambda t: (
            value(t, "portal_requests_total", mount="/echo", method="WEBSOCKET", status="101") == 1
        ),
    )
    assert value(text, "portal_request_duration_seconds_count", mount="/echo") == 0


def test_other_addresses_find_no_metrics(tmp_path: Path) -> None:
    """`[metrics] allow = ["127.0.0.1/32"]`: from 127.0.0.2, /metrics is absent like any path."""
    with portal_process(tmp_path, mounts=METRICS_TABLES) as portal:
        _hidden_from_others(portal)


def _hidden_from_others(portal: PortalProcess) -> None:
    transport = httpx2.HTTPTransport(local_address="127.0.0.2")
    with httpx2.Client(base_url=portal.url, transport=transport, timeout=10) as other:
        hidden = other.get("/metrics", headers=JSON)
        absent = other.get("/metrics-nowhere", headers=JSON)
    assert hidden.status_code == 404 == absent.status_code
    assert hidden.text == absent.text
    assert "portal_requests_total" not in hidden.text
    # the allowed address reads them, and the refusal was counted as a 404 of the portal's
    text = until(
        portal.url + "/metrics", lambda t: value(t, "portal_refusals_total", reason="404") >= 1
    )
    assert value(text, "portal_requests_total", mount="portal", method="GET", status="404") == 1


def test_own_listener_with_two_workers(tmp_path: Path) -> None:
    """`[metrics] port`: one worker binds it and answers for both; never on the public one."""
    port = free_port()
    with portal_process(
        tmp_path,
        workers=2,
        mounts=f"\n[metrics]\nport = {port}\n",
        env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")},
    ) as portal:
        assert httpx2.get(portal.url + "/metrics", timeout=10).status_code == 404
        for _ in range(20):
            assert httpx2.get(portal.url + "/public/whoami", timeout=10).status_code == 200
        until(
            f"http://127.0.0.1:{port}/metrics",
            lambda t: (
                value(t, "portal_requests_total", mount="/public", method="GET", status="200") == 20
            ),
        )


@pytest.mark.mariadb
def test_database_errors_are_counted(mariadb: MariaDB, tmp_path: Path) -> None:
    """A database that went away: the feed's failed polls, the sign-in it refused, the lag."""
    database = mariadb.database()
    server = make_url(MARIADB_URL)
    link = CuttableLink((server.host or "127.0.0.1", server.port or 3306))
    try:
        with serve(tmp_path, database_url=_through(database, link)) as running:
            running.add_user("alice", "ea")
            metrics = running.url + "/metrics"
            link.cut()
            with running.client() as client:
                assert running.login(client, "alice").status_code == 503
            text = until(
                metrics, lambda t: value(t, "portal_database_errors_total", where="feed") >= 1
            )
            assert value(text, "portal_database_errors_total", where="sign-in") == 1
            assert value(text, "portal_logins_total", provider="local", outcome="unavailable") == 1
            # the feed interval is 0.2 s: a lag of seconds means no poll got through
            until(metrics, lambda t: value(t, "portal_feed_lag_seconds") > 2)
            link.restore()
            until(metrics, lambda t: value(t, "portal_feed_lag_seconds") < 2)
    finally:
        link.cut()
        mariadb.drop(database)


def test_histogram_batches_match_observe() -> None:
    """The batched hand-over gives what one observe() per request gives (it uses the values
    observe() itself adds to)."""
    durations = [0.0004, 0.003, 0.003, 0.07, 0.9, 12.0, 45.0]
    one, batched = CollectorRegistry(), CollectorRegistry()
    observed = _Histogram("h", "h", ("mount",), buckets=BUCKETS, registry=one)
    added = _Histogram("h", "h", ("mount",), buckets=BUCKETS, registry=batched)
    counts = [0] * len(BUCKETS)
    for seconds in durations:
        observed.labels("/x").observe(seconds)
        counts[next(i for i, bound in enumerate(BUCKETS) if seconds <= bound)] += 1
    added.labels("/x").add(sum(durations), counts)

    def exposed(registry: CollectorRegistry) -> list[tuple[str, dict[str, str], float]]:
        return [
            (s.name, s.labels, s.value)
            for family in registry.collect()
            for s in family.samples
            if not s.name.endswith("_created")
        ]

    assert exposed(one) == exposed(batched)


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ({"allow": ["10.0.0.0/8", "not-a-network"]}, "metrics.allow"),
        ({"port": 70000}, "metrics.port"),
        ({"port": 0}, "metrics.port"),
        ({"host": "localhost"}, "metrics.host"),
        ({"listen": True}, "metrics.listen"),
    ],
)
def test_metrics_settings_are_checked(table: dict[str, object], problem: str) -> None:
    with pytest.raises(SettingsError, match=problem.replace(".", r"\.")):
        parse_settings({"metrics": table}, file="settings.toml", environ={})


def test_metrics_settings() -> None:
    defaults = parse_settings({}, file="settings.toml", environ={}).metrics
    assert defaults.allow == ("127.0.0.1/32", "::1/128") and defaults.port is None
    chosen = parse_settings(
        {"metrics": {"allow": ["10.1.0.0/16"], "port": 9100, "host": "0.0.0.0"}},
        file="settings.toml",
        environ={},
    ).metrics
    assert (chosen.allow, chosen.port, chosen.host) == (("10.1.0.0/16",), 9100, "0.0.0.0")
