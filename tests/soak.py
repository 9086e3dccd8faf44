"""The portal over time: mixed traffic against `uvicorn --workers 2` for a while (signed-in
product pages by cookie and API token, refusals, public pages; logins and logouts on fresh
connections; WebSockets opened, used, closed, dropped without a close frame, and refused),
while each worker's resident memory (VmRSS, /proc/PID/status) and open file descriptors
(/proc/PID/fd) are sampled. After a warm-up, the last samples must sit where the first ones
did: a leak of memory, sockets, files or database connections shows as a climb.

tests/test_soak.py runs it for two minutes in `make test`; `make soak` runs it for 30 minutes
and writes the samples to bench/results/soak.md and soak.json:

    python -m tests.soak --seconds 1800 --results bench/results
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import re
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx2
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from .processes import PortalProcess, portal_process
from .servers import password_for
from .traffic import COOKIE, MIX, MOUNTS, USER, Tally, Visitor, deployed, no_cookies, send

# Bounds on the climb from the first samples after warm-up to the last ones, per worker:
# generous, since a Python heap settles slowly (arenas, caches filling up to their caps), but far
# below what a leak of one object per request or one socket per connection adds up to.
RSS_GROWTH_MIB = 15.0
FD_GROWTH = 20
HTTP_CONCURRENCY = 8
SOCKET_LOOPS = 4
# Samples at each end whose median is compared (samples are taken between sign-ins: see
# Soak.hashing; a median still, against any other moment's peak).
WINDOW = 10


def workers_of(pid: int) -> list[int]:
    """The worker processes of the uvicorn supervisor `pid`: its children started by
    multiprocessing's spawn (not its resource tracker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            command = (entry / "cmdline").read_bytes()
        except (OSError, IndexError):  # the process ended meanwhile
            continue
        if parent == pid and b"spawn_main" in command:
            found.append(int(entry.name))
    return sorted(found)


def resident_kib(pid: int) -> int:
    status = (Path("/proc") / str(pid) / "status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    assert match, status
    return int(match.group(1))


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@dataclass(frozen=True)
class Sample:
    at: float  # seconds since the traffic started
    rss_kib: dict[int, int]
    fds: dict[int, int]
    requests: int  # HTTP requests answered so far


@dataclass
class Soak:
    """What a soak saw: samples, answers, WebSocket sessions and sign-ins, and every wrong
    answer."""

    seconds: float
    warmup: float
    workers: list[int]
    samples: list[Sample] = field(default_factory=list)
    tally: Tally = field(default_factory=Tally)
    events: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    workers_after: list[int] = field(default_factory=list)
    # Held while a sign-in's password is hashed, the only hashing the soak causes: a sample
    # waits for it, so that it measures what stays, not argon2's 64 MiB of the moment.
    hashing: asyncio.Lock = field(default_factory=asyncio.Lock)

    def settled(self) -> list[Sample]:
        return [s for s in self.samples if s.at >= self.warmup]

    def growth(self) -> dict[int, dict[str, float]]:
        """Per worker: the median RSS (MiB) and fds of the first and of the last WINDOW samples
        after warm-up, and the growth between them."""
        settled = self.settled()
        first, last = settled[:WINDOW], settled[-WINDOW:]
        found = {}
        for pid in self.workers:
            rss = [statistics.median(s.rss_kib[pid] for s in end) / 1024 for end in (first, last)]
            fds = [statistics.median(s.fds[pid] for s in end) for end in (first, last)]
            found[pid] = {
                "rss_first_mib": round(rss[0], 1),
                "rss_last_mib": round(rss[1], 1),
                "rss_growth_mib": round(rss[1] - rss[0], 1),
                "fds_first": round(fds[0], 1),
                "fds_last": round(fds[1], 1),
                "fds_growth": round(fds[1] - fds[0], 1),
            }
        return found

    def problems(self) -> list[str]:
        """Everything that makes the soak fail; empty when it held."""
        found = [*self.tally.errors[:20], *self.errors[:20]]
        if self.workers_after != self.workers:
            found.append(f"workers changed: {self.workers} -> {self.workers_after}")
        if len(self.settled()) < 2 * WINDOW:
            found.append(f"only {len(self.settled())} samples after warm-up")
            return found
        for pid, grew in self.growth().items():
            if grew["rss_growth_mib"] >= RSS_GROWTH_MIB:
                found.append(f"worker {pid}: RSS grew {grew}")
            if grew["fds_growth"] >= FD_GROWTH:
                found.append(f"worker {pid}: open files grew {grew}")
        return found

    def figures(self) -> dict[str, object]:
        http = self.tally.count
        return {
            "seconds": round(self.seconds),
            "warmup_seconds": round(self.warmup),
            "http_requests": http,
            "http_requests_per_second": round(http / self.seconds, 1),
            "http_statuses": dict(sorted(self.tally.by_status().items())),
            "events": dict(sorted(self.events.items())),
            "errors": len(self.tally.errors) + len(self.errors),
            "workers": {str(pid): grew for pid, grew in self.growth().items()},
        }


async def http_loop(url: str, visitor: Visitor, soak: Soak, until: float) -> None:
    """The load test's mix, HTTP_CONCURRENCY at a time on kept-alive connections."""
    calls = itertools.cycle(MIX)
    limits = httpx2.Limits(max_connections=HTTP_CONCURRENCY)
    async with httpx2.AsyncClient(
        base_url=url, limits=limits, timeout=60, cookies=no_cookies()
    ) as client:

        async def worker() -> None:
            while time.monotonic() < until:
                await send(client, next(calls), visitor, soak.tally)

        await asyncio.gather(*(worker() for _ in range(HTTP_CONCURRENCY)))


def csrf_token(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, page[:500]
    return match.group(1)


async def sign_in_and_out(url: str, soak: Soak) -> None:
    """One visit on connections of its own: the login page, a sign-in, a product page, a
    sign-out; then the old cookie must stop working (every worker learns of the sign-out
    through the change feed, within its interval)."""
    async with httpx2.AsyncClient(base_url=url, timeout=60) as client:
        page = await client.get("/auth/login")
        fields = {"username": USER, "password": password_for(USER), "next": "/ea/whoami"}
        async with soak.hashing:
            answer = await client.post(
                "/auth/login", data=fields | {"csrf_token": csrf_token(page.text)}
            )
        if answer.status_code != 303:
            soak.errors.append(f"login: {answer.status_code} {answer.text[:200]!r}")
            return
        cookie = str(client.cookies[COOKIE])
        product = await client.get("/ea/whoami")
        if product.status_code != 200 or f'"user":"{USER}"' not in product.text:
            soak.errors.append(f"after login: {product.status_code} {product.text[:200]!r}")
        catalogue = await client.get("/", headers={"accept": "text/html"})
        answer = await client.post("/auth/logout", data={"csrf_token": csrf_token(catalogue.text)})
        if answer.status_code != 303:
            soak.errors.append(f"logout: {answer.status_code} {answer.text[:200]!r}")
            return
    soak.events["sign-in and out"] += 1
    async with httpx2.AsyncClient(base_url=url, timeout=60, cookies=no_cookies()) as client:
        deadline = time.monotonic() + 15
        while True:  # polled: the other worker may take a feed interval to hear of it
            answer = await client.get("/ea/whoami", headers={"cookie": f"{COOKIE}={cookie}"})
            if answer.status_code == 401:
                return
            if time.monotonic() > deadline:
                soak.errors.append(f"a signed-out cookie still answers {answer.status_code}")
                return
            await asyncio.sleep(0.1)


async def login_loop(url: str, soak: Soak, until: float) -> None:
    while time.monotonic() < until:
        await sign_in_and_out(url, soak)


async def socket_visit(ws_url: str, visitor: Visitor, soak: Soak, turn: int) -> None:
    """One WebSocket: refused without credentials every fifth turn; else opened (by cookie or,
    every third turn, by API token), greeted, echoed, and closed, or every fourth turn dropped
    without a close frame."""
    url = ws_url + "/ws-echo/ws"
    if turn % 5 == 0:
        try:
            async with connect(url, open_timeout=30):
                soak.errors.append("an anonymous WebSocket was accepted")
        except InvalidStatus as exc:
            if exc.response.status_code != 401:
                soak.errors.append(f"anonymous WebSocket: {exc.response.status_code}")
            soak.events["websocket refused"] += 1
        return
    by_token = turn % 3 == 0
    headers = (
        {"authorization": f"Bearer {visitor.token}"}
        if by_token
        else {"cookie": f"{COOKIE}={visitor.cookie}"}
    )
    async with connect(url, additional_headers=headers, open_timeout=30, close_timeout=10) as ws:
        greeting = json.loads(await asyncio.wait_for(ws.recv(), 30))
        if greeting.get("user") != USER:
            soak.errors.append(f"WebSocket greeting: {greeting}")
        for n in range(5):
            await ws.send(f"message {n} " + "x" * 100 * n)
            echoed = await asyncio.wait_for(ws.recv(), 30)
            if echoed != f"message {n} " + "x" * 100 * n:
                soak.errors.append(f"WebSocket echo: {echoed!r}")
        if turn % 4 == 0:
            ws.transport.abort()  # gone without a close frame, as a dropped network does
            soak.events["websocket dropped"] += 1
            return
    soak.events["websocket closed"] += 1


async def socket_loop(ws_url: str, visitor: Visitor, soak: Soak, until: float) -> None:
    for turn in itertools.count(1):
        if time.monotonic() >= until:
            return
        try:
            await socket_visit(ws_url, visitor, soak, turn)
        except Exception as exc:  # any failure of a socket the portal should have served
            soak.errors.append(f"WebSocket: {type(exc).__name__}: {exc}")


async def sampler(soak: Soak, started: float, until: float, every: float) -> None:
    while True:
        async with soak.hashing:
            now = time.monotonic()
            soak.samples.append(
                Sample(
                    round(now - started, 1),
                    {pid: resident_kib(pid) for pid in soak.workers},
                    {pid: open_fds(pid) for pid in soak.workers},
                    soak.tally.count,
                )
            )
        if now >= until:
            return
        await asyncio.sleep(min(every, max(0.0, until - now)))


async def traffic(portal: PortalProcess, visitor: Visitor, soak: Soak, every: float) -> None:
    started = time.monotonic()
    until = started + soak.seconds
    ws_url = portal.url.replace("http://", "ws://")
    await asyncio.gather(
        http_loop(portal.url, visitor, soak, until),
        login_loop(portal.url, soak, until),
        *(socket_loop(ws_url, visitor, soak, until) for _ in range(SOCKET_LOOPS)),
        sampler(soak, started, until, every),
    )


def run(
    portal: PortalProcess, settings: Path, *, seconds: float, warmup: float, every: float
) -> Soak:
    """Soak `portal` for `seconds`, sampling its workers every `every` seconds."""
    workers = workers_of(portal.pid)
    assert len(workers) == 2, workers
    visitor = Visitor.of(portal.url, settings, USER)
    soak = Soak(seconds, warmup, workers)
    asyncio.run(traffic(portal, visitor, soak, every))
    soak.workers_after = workers_of(portal.pid)
    log = portal.log.read_text()
    for sign in ("Traceback", "Exception in ASGI application"):
        if sign in log:
            soak.errors.append(f"{sign} in the portal's log: {log[log.index(sign) :][:3000]}")
    return soak


def soak_portal(tmp: Path, *, seconds: float, warmup: float, every: float) -> Soak:
    with portal_process(tmp, workers=2, users=[USER], mounts=MOUNTS, env=deployed(tmp)) as portal:
        return run(portal, tmp / "settings.toml", seconds=seconds, warmup=warmup, every=every)


def markdown(soak: Soak, problems: Sequence[str]) -> str:
    figures = soak.figures()
    lines = [
        "# Soak",
        "",
        f"`python -m tests.soak --seconds {figures['seconds']}` (`make soak`; "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}): "
        f"`uvicorn portal_asgi:app --workers 2 --no-proxy-headers` on SQLite, metrics in "
        f"multiprocess mode, for "
        f"{figures['seconds']} s, warm-up {figures['warmup_seconds']} s.",
        "",
        f"- HTTP: {figures['http_requests']} requests "
        f"({figures['http_requests_per_second']}/s), by status {figures['http_statuses']}",
        f"- other: {figures['events']}",
        f"- errors: {figures['errors']}; verdict: {'held' if not problems else 'FAILED'}",
        *(f"  - {problem}" for problem in problems),
        "",
        f"Median of the first and of the last {WINDOW} samples after warm-up, per worker:",
        "",
        "| worker | RSS first (MiB) | RSS last (MiB) | growth | fds first | fds last | growth |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for pid, grew in soak.growth().items():
        lines.append(
            f"| {pid} | {grew['rss_first_mib']} | {grew['rss_last_mib']} | "
            f"{grew['rss_growth_mib']} | {grew['fds_first']} | {grew['fds_last']} | "
            f"{grew['fds_growth']} |"
        )
    lines += [
        "",
        "Samples (every tenth):",
        "",
        "| s | requests | RSS MiB | fds |",
        "| --- | --- | --- | --- |",
    ]
    for sample in soak.samples[::10]:
        rss = " / ".join(f"{v / 1024:.1f}" for v in sample.rss_kib.values())
        fds = " / ".join(str(v) for v in sample.fds.values())
        lines.append(f"| {sample.at:.0f} | {sample.requests} | {rss} | {fds} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1800)
    parser.add_argument("--warmup", type=float, default=120)
    parser.add_argument("--every", type=float, default=10, help="seconds between samples")
    parser.add_argument("--results", type=Path, help="write soak.md and soak.json here")
    args = parser.parse_args(argv)
    # stopped with SIGTERM (or SIGINT, which a shell's background job ignores): leave as by
    # Ctrl-C, so that the portal it started is stopped too
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory() as tmp:
        soak = soak_portal(Path(tmp), seconds=args.seconds, warmup=args.warmup, every=args.every)
    problems = soak.problems()
    text = markdown(soak, problems)
    print(text)
    if args.results is not None:
        args.results.mkdir(parents=True, exist_ok=True)
        (args.results / "soak.md").write_text(text)
        document = soak.figures() | {
            "problems": problems,
            "samples": [asdict(sample) for sample in soak.samples],
        }
        (args.results / "soak.json").write_text(json.dumps(document, indent=1) + "\n")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
