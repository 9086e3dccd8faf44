"""WebSocket benchmark: how many authorised sockets one portal worker holds, and the echo round
trip through the portal against the same Starlette app served bare, side by side in one run.

Both servers are real uvicorn processes (one worker each) on loopback; the client is this process
(websockets' asyncio client). Usage: `make bench`, or `python bench/ws_bench.py --sockets 2000`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import cli, free_port, login, p99, uvicorn, write_settings
from websockets.asyncio.client import ClientConnection, connect

USER, PASSWORD = "bench", "bench-password-not-secret"
SETTINGS = """
[websocket]
max_per_user = 100000
idle_timeout = "1h"

[[mount]]
path = "/echo"
app = "products.echo.app:app"
level = "ea"
"""


def raise_open_files(wanted: int) -> int:
    """Lift the soft limit on open files towards `wanted` (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def open_one(url: str, headers: dict[str, str]) -> ClientConnection:
    ws = await connect(url, additional_headers=headers, open_timeout=60, max_size=None)
    await ws.recv()  # the greeting: the product ran, with websocket.user set
    return ws


async def hold(url: str, headers: dict[str, str], count: int, pid: int) -> dict[str, float]:
    """Open `count` authorised sockets, prove every one answers, report time and memory."""
    before = rss_mib(pid)
    started = time.perf_counter()
    sockets: list[ClientConnection] = []
    try:
        for first in range(0, count, 100):  # in batches: a burst of 2,000 SYNs overflows backlog
            batch = min(100, count - first)
            sockets += await asyncio.gather(*(open_one(url, headers) for _ in range(batch)))
        opened = time.perf_counter() - started
        await asyncio.gather(*(ws.send("ping") for ws in sockets))
        answers = await asyncio.gather(*(ws.recv() for ws in sockets))
        alive = sum(answer == "ping" for answer in answers)
        held_rss = rss_mib(pid)
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    return {
        "held": alive,
        "open_seconds": opened,
        "rss_before": before,
        "rss_held": held_rss,
        "kib_per_socket": (held_rss - before) * 1024 / max(alive, 1),
    }


async def round_trips(ws: ClientConnection, count: int) -> list[float]:
    samples = []
    payload = "x" * 32
    for _ in range(count):
        started = time.perf_counter()
        await ws.send(payload)
        await ws.recv()
        samples.append(time.perf_counter() - started)
    return samples


async def compare(
    portal: tuple[str, dict[str, str]], bare: tuple[str, dict[str, str]], rounds: int, per: int
) -> dict[str, list[float]]:
    """Alternate the two in rounds, so that drift in the machine falls on both alike."""
    results: dict[str, list[float]] = {"portal": [], "bare": []}
    async with (
        connect(portal[0], additional_headers=portal[1]) as through,
        connect(bare[0], additional_headers=bare[1]) as direct,
    ):
        await through.recv(), await direct.recv()
        await round_trips(through, 200), await round_trips(direct, 200)  # warm up
        for number in range(rounds):
            # who goes first alternates too, so neither always follows the other
            order = [("portal", through), ("bare", direct)]
            for name, ws in order if number % 2 == 0 else reversed(order):
                results[name] += await round_trips(ws, per)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sockets", type=int, default=2000, help="sockets to hold (2000)")
    parser.add_argument("--rounds", type=int, default=50, help="alternating rounds (50)")
    parser.add_argument("--per-round", type=int, default=100, help="round trips a round (100)")
    parser.add_argument(
        "--ws", default="websockets-sansio", help="uvicorn --ws (websockets-sansio)"
    )
    args = parser.parse_args()
    limit = raise_open_files(2 * args.sockets + 1000)
    with tempfile.TemporaryDirectory(prefix="ws-bench-") as tmp:
        portal_port, bare_port = free_port(), free_port()
        settings = write_settings(Path(tmp), portal_port, SETTINGS)
        cli(settings, "db", "upgrade")
        cli(settings, "users", "add", USER, "--level", "ea", stdin=PASSWORD + "\n")
        env = {"PORTAL_SETTINGS": str(settings)}
        with (
            uvicorn("portal_asgi:app", portal_port, env, "--ws", args.ws) as portal,
            uvicorn("products.echo.app:app", bare_port, {}, "--ws", args.ws) as bare,
        ):
            session = login(f"http://127.0.0.1:{portal_port}", USER, PASSWORD)
            cookie = {"Cookie": f"portal_session={session}"}
            portal_ws = (f"ws://127.0.0.1:{portal_port}/echo/ws", cookie)
            bare_ws: tuple[str, dict[str, str]] = (f"ws://127.0.0.1:{bare_port}/ws", {})
            held = asyncio.run(hold(*portal_ws, args.sockets, portal.pid))
            held_bare = asyncio.run(hold(*bare_ws, args.sockets, bare.pid))
            times = asyncio.run(compare(portal_ws, bare_ws, args.rounds, args.per_round))
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"uvicorn --ws {args.ws}, one worker each, loopback; open-files limit {limit}")
    print(f"{os.cpu_count()} CPUs, load average {load} (other work on the machine shows here)")
    for name, figures in (("portal", held), ("bare", held_bare)):
        print(
            f"{name:6} held {figures['held']:.0f} of {args.sockets} sockets "
            f"(opened in {figures['open_seconds']:.1f} s; worker RSS {figures['rss_before']:.0f}"
            f" -> {figures['rss_held']:.0f} MiB, {figures['kib_per_socket']:.0f} KiB a socket)"
        )
    n = len(times["portal"])
    print(f"echo round trip, 32-byte text, {n} each, alternating rounds:")
    print(f"{'':8}{'median':>12}{'p99':>12}")
    for name in ("bare", "portal"):
        samples = times[name]
        print(f"{name:8}{statistics.median(samples) * 1e6:>10.0f}us{p99(samples) * 1e6:>10.0f}us")
    ratio_median = statistics.median(times["portal"]) / statistics.median(times["bare"])
    ratio_p99 = p99(times["portal"]) / p99(times["bare"])
    print(f"{'ratio':8}{ratio_median:>11.2f}x{ratio_p99:>11.2f}x")
    return 0 if held["held"] == held_bare["held"] == args.sockets else 1


if __name__ == "__main__":
    sys.exit(main())
