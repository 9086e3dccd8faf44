"""The real portal (uvicorn, real HTTP) on MariaDB: sign in, open a product, sign out, and the old
cookie is refused because the session was revoked in MariaDB."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from portal_asgi.db.engine import Database
from portal_asgi.db.models import Session

from .servers import MariaDB, RunningPortal, serve

pytestmark = pytest.mark.mariadb

JSON = {"accept": "application/json"}


@pytest.fixture
def mariadb_portal(mariadb: MariaDB, tmp_path: Path) -> Iterator[RunningPortal]:
    url = mariadb.database()
    try:
        with serve(tmp_path, database_url=url) as running:
            yield running
    finally:
        mariadb.drop(url)


def test_login_product_logout_on_mariadb(mariadb_portal: RunningPortal) -> None:
    running = mariadb_portal
    assert running.database_url.startswith("mysql+asyncmy://")
    running.add_user("alice", "ea", email="alice@example.org")
    running.wait_until(
        lambda: (
            running.portal.runtime is not None
            and running.portal.runtime.directory.user("alice") is not None
        )
    )

    with running.client() as client:
        assert running.login(client, "alice", "not-her-password").status_code == 401
        signed_in = running.login(client, "alice")
        assert signed_in.status_code == 303, signed_in.text
        cookie = client.cookies.get("portal_session")
        assert cookie

        hello = client.get("/ea/whoami", headers=JSON)
        assert hello.status_code == 200
        assert hello.json()["user"] == "alice"
        assert client.get("/devel/", headers=JSON).status_code == 403

        logout = client.post("/auth/logout", data={"csrf_token": running.csrf_token(client)})
        assert logout.status_code == 303

    # The revocation is in MariaDB...
    async def revoked(db: Database) -> list[object]:
        async with db.session() as session:
            return list(await session.scalars(select(Session.revoked_at)))

    assert [stamp is not None for stamp in running.run_db(revoked)] == [True]

    # ...and the old cookie, replayed by a client that kept it, no longer works.
    with running.client(cookies={"portal_session": cookie}) as replay:
        refused = replay.get("/ea/whoami", headers=JSON)
        assert refused.status_code == 401
        assert refused.json() == {"error": "authentication_required"}
        assert "alice" not in refused.text
