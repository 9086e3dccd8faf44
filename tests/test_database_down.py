"""A database that goes down: the login page answers 503, valid sessions keep working, /healthz
stays 200 (liveness) and says the database is down, /readyz answers 503 until it is back. The
portal talks to MariaDB through a loopback TCP proxy that
the test cuts (every connection dropped, the port refusing) and restores."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from portal_asgi.db import store
from portal_asgi.db.engine import Database
from portal_asgi.db.models import Session

from .conftest import MARIADB_URL
from .servers import MariaDB, RunningPortal, free_port, serve

pytestmark = pytest.mark.mariadb

JSON = {"accept": "application/json"}
HTML = {"accept": "text/html"}
# What must never reach a client, whatever failed underneath.
LEAKS = ("Traceback", "asyncmy", "sqlalchemy", "OperationalError", "3306", "Errno")


class CuttableLink:
    """A TCP proxy on a loopback port in front of `target`, that can be cut and restored."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self.frozen = threading.Event()
        self.restore()

    def restore(self) -> None:
        self.frozen.clear()
        listener = socket.create_server(("127.0.0.1", self.port))
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        """Drop every open connection and refuse new ones, as a database that went away."""
        if self._listener is not None:
            _close(self._listener)
            self._listener = None
        with self._lock:
            dropped, self._sockets = self._sockets, []
        for sock in dropped:
            _close(sock)

    def freeze(self) -> None:
        """Keep every connection open but carry nothing, as a network partition: the database
        neither answers nor refuses. `cut()` then `restore()` ends it."""
        self.frozen.set()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            if self.frozen.is_set():
                with self._lock:
                    self._sockets.append(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _close(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(
                    target=_pump, args=(source, sink, self.frozen), daemon=True
                ).start()


def _pump(source: socket.socket, sink: socket.socket, frozen: threading.Event) -> None:
    try:
        while data := source.recv(65536):
            if not frozen.is_set():
                sink.sendall(data)
    except OSError:
        pass
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


def _close(sock: socket.socket) -> None:
    # shutdown() first: it wakes a thread blocked in accept() or recv() on this socket.
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


@pytest.fixture
def link() -> Iterator[CuttableLink]:
    server = make_url(MARIADB_URL)
    proxy = CuttableLink((server.host or "127.0.0.1", server.port or 3306))
    try:
        yield proxy
    finally:
        proxy.cut()


@pytest.fixture
def database(mariadb: MariaDB) -> Iterator[str]:
    url = mariadb.database()
    try:
        yield url
    finally:
        mariadb.drop(url)


def _through(url: str, link: CuttableLink) -> str:
    return make_url(url).set(host="127.0.0.1", port=link.port).render_as_string(hide_password=False)


@pytest.fixture
def portal(database: str, link: CuttableLink, tmp_path: Path) -> Iterator[RunningPortal]:
    with serve(tmp_path, database_url=_through(database, link)) as running:
        running.add_user("alice", "ea")
        running.add_user("bob", "ea")
        running.wait_until(lambda: running.knows("alice", "bob"))
        yield running


def _assert_no_leak(response: httpx2.Response) -> None:
    for leak in LEAKS:
        assert leak not in response.text, leak


def _healthy(running: RunningPortal) -> bool:
    """The database answers, as /healthz (always 200 while the process serves) reports it."""
    with running.client() as client:
        health = client.get("/healthz")
        assert health.status_code == 200
        return bool(health.json()["database"] == "ok")


def _ready(running: RunningPortal) -> bool:
    with running.client() as client:
        return client.get("/readyz").status_code == 200


def test_login_answers_503_with_a_plain_page_while_the_database_is_down(
    portal: RunningPortal, link: CuttableLink
) -> None:
    with portal.client() as client:
        form = client.get("/auth/login", headers=HTML)  # the form itself needs no database
        assert form.status_code == 200
        link.cut()
        answer = portal.login(client, "alice")
        assert answer.status_code == 503
        assert answer.headers["content-type"].startswith("text/html")
        assert "cannot reach its database" in answer.text
        assert "portal_session" not in client.cookies
        _assert_no_leak(answer)


def test_healthz_stays_200_and_readyz_turns_503_while_the_database_is_down(
    portal: RunningPortal, link: CuttableLink
) -> None:
    """Liveness is not readiness: an orchestrator must not restart a portal that keeps serving
    signed-in users from memory, but should stop sending it new ones."""
    with portal.client() as client:
        assert client.get("/healthz").json() == {"status": "ok", "database": "ok"}
        portal.wait_until(lambda: _ready(portal))
        link.cut()
        down = client.get("/healthz")
        assert down.status_code == 200
        assert down.json() == {"status": "ok", "database": "down"}
        _assert_no_leak(down)
        not_ready = client.get("/readyz")
        assert not_ready.status_code == 503
        body = not_ready.json()
        assert body["ready"] is False and body["database"] == "down"
        assert "database: not answering" in body["reasons"]
        _assert_no_leak(not_ready)

        link.restore()
        portal.wait_until(lambda: _healthy(portal) and _ready(portal), timeout=15)
        assert client.get("/healthz").json() == {"status": "ok", "database": "ok"}
        assert client.get("/readyz").json()["ready"] is True


def test_a_signed_in_session_keeps_working_from_memory(
    portal: RunningPortal, link: CuttableLink
) -> None:
    with portal.logged_in("alice") as client:
        link.cut()
        assert not _healthy(portal)
        hello = client.get("/ea/whoami", headers=JSON)
        assert hello.status_code == 200 and hello.json()["user"] == "alice"
        catalogue = client.get("/", headers=HTML)
        assert catalogue.status_code == 200
        assert client.get("/devel/", headers=JSON).status_code == 403


def test_the_portal_recovers_when_the_database_is_back(
    portal: RunningPortal, link: CuttableLink
) -> None:
    with portal.logged_in("alice") as alice:
        link.cut()
        with portal.client() as client:
            assert portal.login(client, "bob").status_code == 503
        link.restore()
        portal.wait_until(lambda: _healthy(portal))
        with portal.client() as client:
            assert portal.login(client, "bob").status_code == 303
            assert client.get("/ea/whoami", headers=JSON).json()["user"] == "bob"

        # The change feed is flowing again: another worker's change reaches this one.
        portal.run_db(lambda db: _disable(db, "alice"))
        portal.wait_until(lambda: alice.get("/ea/whoami", headers=JSON).status_code == 401)


async def _disable(db: Database, username: str) -> None:
    await store.set_active(db, username, False)


def test_logout_while_the_database_is_down_still_ends_the_session(
    portal: RunningPortal, link: CuttableLink
) -> None:
    """The revocation cannot be written yet: this worker refuses the cookie at once, and the
    feed writes the revocation when the database is back (so every worker learns of it)."""
    with portal.logged_in("alice") as client:
        cookie = client.cookies.get("portal_session")
        token = portal.csrf_token(client)
        link.cut()
        assert client.post("/auth/logout", data={"csrf_token": token}).status_code == 303
    with portal.client(cookies={"portal_session": cookie}) as replay:
        assert replay.get("/ea/whoami", headers=JSON).status_code == 401
        link.restore()
        portal.wait_until(lambda: _revoked_in_database(portal) == 1)
        assert replay.get("/ea/whoami", headers=JSON).status_code == 401


def _revoked_in_database(running: RunningPortal) -> int:
    async def count(db: Database) -> int:
        async with db.session() as session:
            query = select(func.count()).where(Session.revoked_at.is_not(None))
            return int(await session.scalar(query) or 0)

    return int(running.run_db(count))


def test_a_portal_that_starts_without_its_database_serves_once_it_is_back(
    database: str, link: CuttableLink, tmp_path: Path
) -> None:
    """Startup cannot migrate or load users: the portal starts anyway, answers 503 where it
    needs the database, and finishes its startup when the database answers."""
    link.cut()
    with serve(tmp_path, database_url=_through(database, link)) as running:
        with running.client() as client:
            assert client.get("/healthz").json() == {"status": "ok", "database": "down"}
            assert client.get("/readyz").status_code == 503
            answer = running.login(client, "admin", "whatever-password")
            assert answer.status_code == 503
            _assert_no_leak(answer)
        link.restore()
        running.wait_until(
            lambda: running.portal.runtime is not None and running.portal.runtime.directory.loaded,
            timeout=15,
        )
        running.add_user("carol", "ea", wait=True)
        with running.logged_in("carol") as carol:
            assert carol.get("/ea/whoami", headers=JSON).json()["user"] == "carol"


def test_a_database_that_stops_answering_gives_503_not_a_hang(
    portal: RunningPortal, link: CuttableLink
) -> None:
    """A partition: connections stay open and nothing comes back. Every database call gives up
    after the Database's timeout (10 s; shortened here to keep the test quick)."""
    runtime = portal.portal.runtime
    assert runtime is not None
    runtime.db.timeout = 1.0
    with portal.logged_in("alice") as alice, portal.client() as client:
        token_page = client.get("/auth/login", headers=HTML)
        assert token_page.status_code == 200
        link.freeze()
        answer = portal.login(client, "bob")
        assert answer.status_code == 503
        _assert_no_leak(answer)
        assert not _healthy(portal)
        assert alice.get("/ea/whoami", headers=JSON).json()["user"] == "alice"

        link.cut()
        link.restore()
        portal.wait_until(lambda: _healthy(portal), timeout=10)
        assert portal.login(client, "bob").status_code == 303
