"""The portal under load: 20,000 requests, 64 at a time, through `uvicorn --workers 2` on SQLite
and on MariaDB, a mix of signed-in product pages (Flask and Starlette, session cookie and API
token), posts with bodies, refusals of every kind, public pages and the login page. Every answer
must be the one its request calls for: no 5xx, no connection error, no wrong status. A
correctness test, not a speed test: the throughput and latency it prints are for the record
(docs/operations.md), not asserted."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from .processes import PortalProcess, portal_process
from .traffic import (
    MIX,
    MOUNTS,
    USER,
    Tally,
    Visitor,
    deployed,
    no_cookies,
    report,
    send,
    summary,
)

REQUESTS = 20_000
CONCURRENCY = 64
# Generous: 20,000 requests take about 30 s on a loaded 2-core machine.
DEADLINE = 240


@pytest.fixture
def loaded(tmp_path: Path, database_url: str) -> Iterator[tuple[PortalProcess, Visitor]]:
    with portal_process(
        tmp_path,
        database_url=database_url,
        workers=2,
        users=[USER],
        mounts=MOUNTS,
        env=deployed(tmp_path),
    ) as running:
        yield running, Visitor.of(running.url, tmp_path / "settings.toml", USER)


async def hammer(url: str, visitor: Visitor, tally: Tally) -> None:
    """REQUESTS calls from the mix, round robin, CONCURRENCY at a time on kept-alive
    connections."""
    calls = itertools.islice(itertools.cycle(MIX), REQUESTS)
    limits = httpx2.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx2.AsyncClient(
        base_url=url, limits=limits, timeout=60, cookies=no_cookies()
    ) as client:

        async def worker() -> None:
            for call in calls:  # one iterator shared by every worker: each call is sent once
                await send(client, call, visitor, tally)

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


def test_20000_requests_64_at_a_time_on_two_workers_all_answer_right(
    loaded: tuple[PortalProcess, Visitor],
) -> None:
    """Every one of 20,000 concurrent requests gets its one right answer, and the workers log
    no traceback (the product pages, token checks and refusals share nothing that breaks under
    concurrency)."""
    portal, visitor = loaded
    tally = Tally()
    started = time.perf_counter()
    asyncio.run(asyncio.wait_for(hammer(portal.url, visitor, tally), DEADLINE))
    seconds = time.perf_counter() - started
    figures = summary(tally, seconds)
    print(report(f"load ({portal.database_url.partition(':')[0]})", figures))
    assert tally.errors == [], (len(tally.errors), tally.errors[:10], figures)
    assert tally.count == REQUESTS, figures
    assert not [status for status in tally.by_status() if status >= 500], figures
    log = portal.log.read_text()
    assert "Traceback" not in log and "Exception in ASGI application" not in log, log[-5000:]
