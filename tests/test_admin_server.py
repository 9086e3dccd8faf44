"""The admin API against real servers: uvicorn in a thread for the session and CSRF flow and
the 10,000-user speed, and `uvicorn --workers 2` processes for a level change and a mount
override reaching the other worker within 5 s. On SQLite and MariaDB."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx2
import pytest
from sqlalchemy import insert

from portal_asgi.db import migrate, store
from portal_asgi.db.engine import Database
from portal_asgi.db.models import User

from .cli_runner import mint_token
from .helpers import HTML, JSON, bearer, csrf_token
from .processes import PortalProcess, portal_process
from .servers import RunningPortal, password_for, serve

API = "/admin/api"
PID_MOUNTS = "".join(
    f'[[mount]]\npath = "/pid-{level}"\napp = "tests.pid_product:app"\nlevel = "{level}"\n\n'
    for level in ("ea", "devel", "admin")
)


@pytest.fixture
def portal(tmp_path: Path, database_url: str) -> Iterator[RunningPortal]:
    with serve(tmp_path, database_url=database_url) as running:
        running.add_user("root", "admin")
        running.add_user("alice", "stable", wait=True)
        running.wait_until(lambda: running.knows("root"))
        yield running


def test_admin_session_with_csrf_over_http(portal: RunningPortal) -> None:
    with portal.logged_in("root") as client:
        page = client.get("/", headers=HTML)
        token = csrf_token(page.text)
        refused = client.patch(f"{API}/users/alice", json={"level": "ea"})
        assert refused.status_code == 403
        assert refused.json()["error"] == "csrf_required"
        done = client.patch(
            f"{API}/users/alice", json={"level": "ea"}, headers={"x-csrf-token": token}
        )
        assert done.status_code == 200, done.text
        assert done.json()["level"] == "ea"
        listed = client.get(f"{API}/users?q=ali")
        assert [u["username"] for u in listed.json()["users"]] == ["alice"]


def test_a_user_created_by_token_signs_in(portal: RunningPortal) -> None:
    token = mint_token(portal.settings_file, "root")
    with portal.client() as client:
        made = client.post(
            f"{API}/users",
            json={"username": "newbie", "level": "ea", "password": password_for("newbie")},
            headers=bearer(token),
        )
        assert made.status_code == 201, made.text
    portal.wait_until(lambda: portal.knows("newbie"))
    with portal.logged_in("newbie") as client:
        assert client.get("/ea/whoami", headers=JSON).json()["user"] == "newbie"
    with portal.client() as client:  # and a non-admin's token is refused
        alice = mint_token(portal.settings_file, "alice")
        refused = client.get(f"{API}/users", headers=bearer(alice))
        assert refused.status_code == 403
        assert "newbie" not in refused.text


def _add_many(database_url: str, count: int) -> None:
    """`count` users in a few statements (no password hashing: they never sign in)."""

    async def work() -> None:
        db = Database(database_url)
        try:
            rows = [
                {
                    "username": f"bulk{i:05d}",
                    "email": f"bulk{i:05d}@example.org",
                    "level": "stable",
                    "password_hash": None,
                }
                for i in range(count)
            ]
            async with db.session() as session:
                for start in range(0, count, 1000):
                    await session.execute(insert(User), rows[start : start + 1000])
        finally:
            await db.close()

    asyncio.run(work())


def _median_ms(call: Callable[[], httpx2.Response], times: int = 7) -> float:
    took = []
    for _ in range(times):
        start = time.perf_counter()
        answer = call()
        took.append((time.perf_counter() - start) * 1000)
        assert answer.status_code == 200, answer.text
    return statistics.median(took)


def test_users_list_answers_in_under_200_ms_with_10000_users(portal: RunningPortal) -> None:
    _add_many(portal.database_url, 10_000)
    token = mint_token(portal.settings_file, "root")
    with portal.client(headers=bearer(token)) as client:
        first = client.get(f"{API}/users?limit=50").json()
        assert first["total"] == 10_003  # admin, root, alice
        assert len(first["users"]) == 50
        searched = client.get(f"{API}/users?q=bulk0999").json()
        assert searched["total"] == 10 and searched["users"][0]["username"] == "bulk09990"
        deep = client.get(f"{API}/users?offset=9950&limit=50").json()
        assert deep["users"][0]["username"] == "bulk09948"  # admin, alice come first
        for query in ("limit=50", "q=bulk0999", "q=example.org&offset=5000", "offset=9950"):
            median = _median_ms(lambda q=query: client.get(f"{API}/users?{q}"))  # type: ignore[misc]
            assert median < 200, f"{query}: median {median:.0f} ms"


def _one_client_per_worker(
    portal: PortalProcess, headers: dict[str, str]
) -> dict[int, httpx2.Client]:
    """A client on a kept-alive connection to each of the two workers, by the worker's pid:
    new connections until both workers have taken one (the kernel picks the worker)."""
    clients: dict[int, httpx2.Client] = {}
    deadline = time.monotonic() + 60
    while len(clients) < 2:
        assert time.monotonic() < deadline, f"connections reached only workers {set(clients)}"
        client = httpx2.Client(base_url=portal.url, headers={**JSON, **headers}, timeout=10)
        pid = int(client.get("/pid-ea/").json()["pid"])
        if pid in clients:
            client.close()
        else:
            clients[pid] = client
    return clients


def _until_every_worker(clients: dict[int, httpx2.Client], path: str, within: float) -> float:
    """Seconds until each worker, asked on its own connection, answers `path` with 200."""
    start = time.monotonic()
    waiting = set(clients)
    while waiting:
        for pid in sorted(waiting):
            answer = clients[pid].get(path)
            if answer.status_code == 200:
                assert answer.json()["pid"] == pid  # the same connection, the same worker
                waiting.discard(pid)
        elapsed = time.monotonic() - start
        assert elapsed < within, f"{path}: workers {waiting} not within {within} s"
    return time.monotonic() - start


def test_level_change_and_override_reach_the_other_worker_within_5_s(
    tmp_path: Path, database_url: str
) -> None:
    async def first_admin() -> None:
        db = Database(database_url)
        try:
            await migrate.upgrade(db)
            await store.add_user(db, "root", level="admin", password=password_for("root"))
        finally:
            await db.close()

    asyncio.run(first_admin())
    with portal_process(
        tmp_path,
        workers=2,
        users=["alice"],
        mounts=PID_MOUNTS,
        database_url=database_url,
        options=["--timeout-keep-alive=120"],  # each client stays on its worker
    ) as portal:
        with httpx2.Client(base_url=portal.url, timeout=30) as client:
            page = client.get("/auth/login")
            client.post(
                "/auth/login",
                data={
                    "username": "alice",
                    "password": password_for("alice"),
                    "csrf_token": csrf_token(page.text),
                    "next": "/",
                },
            )
            cookie = {"cookie": f"portal_session={client.cookies['portal_session']}"}
        admin = bearer(mint_token(tmp_path / "settings.toml", "root"))
        clients = _one_client_per_worker(portal, cookie)  # alice (ea), on each worker
        for client in clients.values():
            assert client.get("/pid-devel/").status_code == 403

        changed = httpx2.patch(
            f"{portal.url}{API}/users/alice", json={"level": "devel"}, headers=admin, timeout=10
        )
        assert changed.status_code == 200, changed.text
        _until_every_worker(clients, "/pid-devel/", within=5)

        override = httpx2.patch(
            f"{portal.url}{API}/mounts",
            json={"path": "/pid-admin", "level": "devel"},
            headers=admin,
            timeout=10,
        )
        assert override.status_code == 200, override.text
        _until_every_worker(clients, "/pid-admin/", within=5)
        for client in clients.values():
            client.close()
