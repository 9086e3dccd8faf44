"""Password hashing (portal_asgi.passwords) never runs on a worker's event loop, and a worker runs
only a bounded number at once: past the bound a login answers 503 with Retry-After at once, while
the worker's other pages keep answering quickly."""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx2
import pytest

from portal_asgi.db import store
from portal_asgi.db.engine import Database
from portal_asgi.passwords import THREAD_NAME, Hashing, HashingBusy
from portal_asgi.settings import load_settings

from .processes import PortalProcess, portal_process
from .servers import password_for, settings_text


def _hashing_threads(besides: set[threading.Thread]) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(THREAD_NAME) and t not in besides]


async def _in_a_hashing_thread(work: Awaitable[object]) -> object:
    """Run `work` and see a hashing thread start while it is still running: done on the event
    loop, it would have finished before this coroutine could look. On Linux the thread runs at a
    lower CPU priority than the event loop's."""
    before = set(threading.enumerate())
    task = asyncio.ensure_future(work)
    deadline = time.monotonic() + 10
    while not _hashing_threads(before):
        assert not task.done(), "the hash ran without a thread of its own"
        assert time.monotonic() < deadline
        await asyncio.sleep(0.001)
    if sys.platform == "linux":
        (thread,) = _hashing_threads(before)
        assert thread.native_id is not None
        loop_nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        while os.getpriority(os.PRIO_PROCESS, thread.native_id) <= loop_nice:
            assert time.monotonic() < deadline, "the hashing thread kept the loop's priority"
            await asyncio.sleep(0.001)
    return await task


@pytest.mark.anyio
@pytest.mark.parametrize("username", ["alice", "nobody"])
async def test_a_password_is_checked_in_a_thread_for_known_and_unknown_names(
    db: Database, username: str
) -> None:
    """An unknown name is checked against the dummy hash, the same way (no user enumeration)."""
    await store.add_user(db, "alice", level="ea", password="right-password")
    hashing = Hashing(at_once=1, waiting=1)
    checked = store.check_password(db, username, "right-password", hashing=hashing)
    found = await _in_a_hashing_thread(checked)
    assert (found is not None) == (username == "alice")


@pytest.mark.anyio
async def test_set_password_hashes_in_a_thread(db: Database) -> None:
    await store.add_user(db, "alice", level="ea", password=None)
    hashing = Hashing(at_once=1, waiting=1)
    await _in_a_hashing_thread(store.set_password(db, "alice", "new-password", hashing=hashing))
    assert await store.check_password(db, "alice", "new-password") is not None


def test_admission_refuses_past_the_bound_at_once() -> None:
    hashing = Hashing(at_once=2, waiting=1)
    with hashing.admit(), hashing.admit(), hashing.admit():
        with pytest.raises(HashingBusy):
            with hashing.admit():
                pass
    with hashing.admit():  # places are given back
        pass
    assert hashing.admitted == 0


def test_hashing_settings(tmp_path: Path) -> None:
    file = tmp_path / "settings.toml"
    file.write_text(
        settings_text(tmp_path, mounts="")
        + "\n[security]\nmax_concurrent_hashes = 3\nmax_waiting_hashes = 7\n"
    )
    security = load_settings(file).security
    assert (security.max_concurrent_hashes, security.max_waiting_hashes) == (3, 7)


LOGINS = 50
PAGES = ("/public/", "/healthz")  # a public product page, and the liveness probe


async def _time_gets(
    portal: PortalProcess, paths: tuple[str, ...], count: int, flooding: Callable[[], bool]
) -> dict[str, list[float]]:
    """Seconds each of `count` GETs took (taking turns over `paths`), for those started while
    `flooding()` held. Open loop: one starts every 10 ms whether or not the last one answered,
    so a stalled event loop shows in every GET that waited on it, not only in the first."""
    took: dict[str, list[float]] = {path: [] for path in paths}

    async def get(client: httpx2.AsyncClient, path: str) -> None:
        during = flooding()
        started = time.perf_counter()
        assert (await client.get(path)).status_code == 200
        if during:
            took[path].append(time.perf_counter() - started)

    limits = httpx2.Limits(max_connections=count)
    async with httpx2.AsyncClient(base_url=portal.url, timeout=60, limits=limits) as client:
        gets = []
        for i in range(count):
            gets.append(asyncio.create_task(get(client, paths[i % len(paths)])))
            await asyncio.sleep(0.01)
        await asyncio.gather(*gets)
    return took


async def _logins(
    portal: PortalProcess, answers: list[httpx2.Response], sending: threading.Event
) -> None:
    """LOGINS logins at once, each answer appended to `answers` as it comes; `sending` is set
    as they go out."""
    cookie, token = portal.form()
    limits = httpx2.Limits(max_connections=LOGINS, max_keepalive_connections=0)
    async with httpx2.AsyncClient(base_url=portal.url, timeout=120, limits=limits) as client:

        async def login(i: int) -> None:
            answer = await client.post(
                "/auth/login",
                data={
                    # known and unknown names: the dummy hash takes the same path
                    "username": "alice" if i % 2 else f"nobody-{i}",
                    "password": "wrong" if i % 5 else password_for("alice"),
                    "csrf_token": token,
                },
                headers={"cookie": cookie},
            )
            answers.append(answer)

        logins = asyncio.gather(*(login(i) for i in range(LOGINS)))
        sending.set()
        await logins


def test_a_login_flood_leaves_pages_fast_and_answers_503_past_the_bound(tmp_path: Path) -> None:
    """50 logins at once on one worker (2 hashes at once, 8 waiting): while it checks them, a
    public page and /healthz keep answering in well under 100 ms (with the hashes on the event
    loop they took seconds); the logins past the bound answer 503 with Retry-After at once, and
    none answers 500."""
    # regulation out of the way: the bound on hashing is what is tested
    security = "max_retries = 1000\nmax_concurrent_hashes = 2\nmax_waiting_hashes = 8\n"
    with portal_process(tmp_path, security=security, users=["alice"]) as portal:
        answers: list[httpx2.Response] = []
        sending = threading.Event()
        flood = threading.Thread(target=lambda: asyncio.run(_logins(portal, answers, sending)))
        flood.start()
        try:
            assert sending.wait(timeout=60)
            took = asyncio.run(
                _time_gets(portal, PAGES, 20, flooding=lambda: len(answers) < LOGINS)
            )
        finally:
            flood.join()
    statuses = [answer.status_code for answer in answers]
    assert len(statuses) == LOGINS
    assert set(statuses) <= {303, 401, 503}, statuses
    busy = [answer for answer in answers if answer.status_code == 503]
    assert busy, statuses
    assert all(int(answer.headers["retry-after"]) >= 1 for answer in busy)
    assert len(statuses) - len(busy) >= 2, statuses  # the first ones were checked
    for path, seconds in took.items():
        assert len(seconds) >= 5, took  # started while the worker still had logins to check
        assert statistics.median(seconds) < 0.1, (path, seconds)
