"""Login regulation against a burst: many logins at once, on two uvicorn workers sharing SQLite or
MariaDB. Each attempt is counted before its password is checked, atomically across workers, so
however many arrive together, at most `max_retries` passwords are checked per account and per
address; the rest answer 429 without a check."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx2
import pytest

from ..processes import PortalProcess, portal_process
from ..servers import password_for

MAX_RETRIES = 5
# The client plays a trusted proxy, so each login can come from the address the test chooses.
# Room for every login to reach its password check: here regulation, not the hashing bound,
# must be what refuses.
SECURITY = f"""max_retries = {MAX_RETRIES}
find_time = "2m"
ban_time = "5m"
trusted_proxies = ["127.0.0.1"]
max_concurrent_hashes = 4
max_waiting_hashes = 100
"""

Login = tuple[str, str, str]  # username, password, client address


@pytest.fixture
def two_workers(tmp_path: Path, database_url: str) -> Iterator[PortalProcess]:
    with portal_process(
        tmp_path, database_url=database_url, security=SECURITY, workers=2, users=["alice"]
    ) as running:
        yield running


async def _burst(portal: PortalProcess, logins: Sequence[Login]) -> list[httpx2.Response]:
    """Every login posted at once, each on a connection of its own."""
    cookie, token = portal.form()
    limits = httpx2.Limits(max_connections=len(logins), max_keepalive_connections=0)
    async with httpx2.AsyncClient(base_url=portal.url, timeout=120, limits=limits) as client:
        return await asyncio.gather(
            *(
                client.post(
                    "/auth/login",
                    data={"username": name, "password": password, "csrf_token": token},
                    headers={"cookie": cookie, "x-forwarded-for": address},
                )
                for name, password, address in logins
            )
        )


def burst(portal: PortalProcess, logins: Sequence[Login]) -> Counter[int]:
    """The statuses of a burst, once every password it checked is in the audit log (written
    by the workers, polled until it holds them all)."""
    answers = asyncio.run(_burst(portal, logins))
    statuses = Counter(answer.status_code for answer in answers)
    assert set(statuses) <= {303, 401, 429}, statuses  # never 500, never 503
    assert all("retry-after" in a.headers for a in answers if a.status_code == 429)
    deadline = time.monotonic() + 15
    while sum(checked(portal).values()) < statuses[303] + statuses[401]:
        assert time.monotonic() < deadline, (statuses, checked(portal))
        time.sleep(0.05)
    return statuses


def checked(portal: PortalProcess) -> Counter[str]:
    """Passwords checked so far: every check ends in `login` or `login.failed`."""
    return portal.audit_counts("login", "login.failed")


def test_a_burst_on_one_account_checks_at_most_max_retries_passwords(
    two_workers: PortalProcess,
) -> None:
    """ASVS 2.2.1: 30 logins at once on one account, each from another address, 29 wrong and
    the right one among them: no more than `max_retries` of them reach the password check (the
    count was once checked after the slow hash, and 28 wrong passwords were checked)."""
    logins = [("alice", f"wrong-{i}", f"198.51.100.{i + 1}") for i in range(29)]
    logins.insert(15, ("alice", password_for("alice"), "198.51.100.200"))
    statuses = burst(two_workers, logins)
    done = checked(two_workers)
    assert sum(done.values()) <= MAX_RETRIES, (done, statuses)
    assert statuses[429] >= len(logins) - MAX_RETRIES, statuses


def test_a_burst_from_one_address_checks_at_most_max_retries_passwords(
    two_workers: PortalProcess,
) -> None:
    """ASVS 2.2.1 (password spraying): 60 logins at once from one address over 60 accounts
    check at most `max_retries` passwords; the rest answer 429."""
    logins = [(f"spray-{i}", "wrong", "203.0.113.7") for i in range(60)]
    statuses = burst(two_workers, logins)
    done = checked(two_workers)
    assert sum(done.values()) <= MAX_RETRIES, (done, statuses)
    assert statuses[429] >= len(logins) - MAX_RETRIES, statuses
