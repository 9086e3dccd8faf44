"""Login regulation: failed logins counted per account and per address, in the database; bans
answer 429 with Retry-After, go to the audit log, and say nothing about which usernames exist."""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from sqlalchemy import select

from portal_asgi.db import throttle
from portal_asgi.db.engine import Database
from portal_asgi.db.models import AuditEvent, utcnow

from ..cli_runner import run_cli
from ..helpers import csrf_token, without_csrf_token
from ..servers import RunningPortal, password_for
from .conftest import start

REGULATION = 'max_retries = 3\nfind_time = "2m"\nban_time = "5m"\n'


@pytest.fixture
def regulated(tmp_path: Path) -> Iterator[RunningPortal]:
    yield from start(tmp_path, REGULATION)


@pytest.fixture
def regulated_behind_proxy(tmp_path: Path, database_url: str) -> Iterator[RunningPortal]:
    """The test client plays a trusted proxy, so each attempt can come from another address.
    On SQLite and on MariaDB: the counters are shared by every worker through the database."""
    security = REGULATION + 'trusted_proxies = ["127.0.0.1"]'
    yield from start(tmp_path, security, database_url=database_url)


def _portal(tmp_path: Path, security: str) -> contextlib.AbstractContextManager[RunningPortal]:
    return contextlib.contextmanager(start)(tmp_path, security)


def from_address(n: int) -> dict[str, str]:
    return {"X-Forwarded-For": f"198.51.100.{n}"}


def attempt(
    portal: RunningPortal, username: str, password: str, headers: dict[str, str] | None = None
) -> httpx2.Response:
    with portal.client() as client:
        page = client.get("/auth/login")
        return client.post(
            "/auth/login",
            data={
                "username": username,
                "password": password,
                "csrf_token": csrf_token(page.text),
                "next": "/",
            },
            headers=headers or {},
        )


def bans(portal: RunningPortal) -> list[tuple[str, str]]:
    """The bans in force (a `login_bans` row is also its key's lock, banned or not)."""

    async def work(db: Database) -> list[tuple[str, str]]:
        return [(b.kind, b.key) for b in await throttle.list_bans(db, utcnow())]

    return portal.run_db(work)  # type: ignore[no-any-return]


def test_bans_an_account_after_max_retries_from_many_addresses(
    regulated_behind_proxy: RunningPortal,
) -> None:
    """ASVS 2.2.1 (anti-automation): the account is banned, whichever address guesses."""
    portal = regulated_behind_proxy
    statuses = [attempt(portal, "user-ea", "wrong", from_address(i)).status_code for i in range(3)]
    assert statuses == [401, 401, 429]
    # even the right password, from yet another address, while the ban lasts
    banned = attempt(portal, "user-ea", password_for("user-ea"), from_address(9))
    assert banned.status_code == 429
    assert 0 < int(banned.headers["retry-after"]) <= 300
    assert "portal_session" not in banned.headers.get("set-cookie", "")
    assert bans(portal) == [("account", "user-ea")]  # no address guessed three times
    # the ban holds the account, not the addresses: others still sign in from them
    assert (
        attempt(portal, "user-devel", password_for("user-devel"), from_address(1)).status_code
        == 303
    )


def test_account_ban_ignores_case_variants(regulated_behind_proxy: RunningPortal) -> None:
    """A guesser cannot dodge the count with `User-EA`, `USER-ea`... (MariaDB may match them)."""
    portal = regulated_behind_proxy
    names = ["user-ea", "User-EA", "USER-EA"]
    statuses = [
        attempt(portal, n, "wrong", from_address(i)).status_code for i, n in enumerate(names)
    ]
    assert statuses == [401, 401, 429]


def test_bans_an_address_trying_many_accounts(regulated: RunningPortal) -> None:
    """ASVS 2.2.1: password spraying from one address is stopped by the address counter."""
    statuses = [attempt(regulated, f"nobody-{i}", "wrong").status_code for i in range(3)]
    assert statuses == [401, 401, 429]
    response = attempt(regulated, "user-devel", password_for("user-devel"))
    assert response.status_code == 429
    assert ("address", "127.0.0.1") in bans(regulated)


def test_ban_is_in_the_audit_log(regulated: RunningPortal) -> None:
    """ASVS 7.2.1: authentication decisions, bans included, are logged."""
    for _ in range(3):
        attempt(regulated, "user-stable", "wrong")

    async def work(db: object) -> list[str]:
        async with db.session() as session:  # type: ignore[attr-defined]
            return [
                e.event for e in await session.scalars(select(AuditEvent).order_by(AuditEvent.id))
            ]

    events = regulated.run_db(work)
    assert events.count("login.failed") == 3
    assert events.count("ban") == 2  # the account and the address


def test_unknown_and_known_usernames_get_the_same_answers(
    regulated_behind_proxy: RunningPortal,
) -> None:
    """ASVS 2.2.1 and 2.5.x (no user enumeration): same statuses, same pages, same ban."""
    portal = regulated_behind_proxy
    seen: dict[str, list[tuple[int, bool, str]]] = {}
    for offset, name in ((0, "user-admin"), (10, "no-such-user")):
        answers = [attempt(portal, name, "wrong", from_address(offset + i)) for i in range(4)]
        seen[name] = [
            (
                r.status_code,
                "retry-after" in r.headers,
                without_csrf_token(r.text).replace(name, "NAME"),
            )
            for r in answers
        ]
    assert [status for status, _, _ in seen["user-admin"]] == [401, 401, 429, 429]
    assert seen["user-admin"] == seen["no-such-user"]


def test_unknown_and_known_usernames_take_the_same_time(tmp_path: Path) -> None:
    """ASVS 2.2.1: the password hash is verified for unknown names too (a dummy hash), so the
    time does not tell them apart; without it an unknown name would answer many times faster."""
    with contextlib.ExitStack() as stack:
        portal = stack.enter_context(_portal(tmp_path, "max_retries = 100\n"))
        samples: dict[str, list[float]] = {"user-admin": [], "no-such-user": []}
        for _ in range(5):
            for name, times in samples.items():
                started = time.perf_counter()
                assert attempt(portal, name, "wrong").status_code == 401
                times.append(time.perf_counter() - started)
    known, unknown = (statistics.median(samples[n]) for n in ("user-admin", "no-such-user"))
    assert unknown > known / 3 and known > unknown / 3, samples


def test_spoofed_x_forwarded_for_does_not_escape_the_address_ban(regulated: RunningPortal) -> None:
    """Regulation sees the real peer: a client cannot rotate its address by header."""
    statuses = [
        attempt(
            regulated, f"spray-{i}", "wrong", headers={"X-Forwarded-For": f"203.0.113.{i}"}
        ).status_code
        for i in range(4)
    ]
    assert statuses[-1] == 429
    assert ("address", "127.0.0.1") in bans(regulated)


def test_bans_cli_lists_and_clears(regulated: RunningPortal) -> None:
    """`portal-asgi bans list|clear`: the operator lifts a ban without a restart."""
    for _ in range(3):
        attempt(regulated, "user-ea", "wrong")
    listed = run_cli(regulated.settings_file, "bans", "list")
    assert listed.returncode == 0, listed.stderr
    assert "user-ea" in listed.stdout and "127.0.0.1" in listed.stdout
    cleared = run_cli(regulated.settings_file, "bans", "clear", "user-ea")
    assert cleared.returncode == 0, cleared.stderr
    assert ("account", "user-ea") not in bans(regulated)
    assert ("address", "127.0.0.1") in bans(regulated)
    assert run_cli(regulated.settings_file, "bans", "clear").returncode == 0
    assert bans(regulated) == []
    assert attempt(regulated, "user-ea", password_for("user-ea")).status_code == 303
