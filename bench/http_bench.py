"""HTTP benchmark: what the portal costs a request. The Flask test product and the Starlette
dashboard product served bare and the same two behind the portal (session cookie, API token), and
a request the portal refuses, side by side in one run; then TokenCodec.verify, first and cached.

Three real uvicorn processes (one worker each) on loopback: the portal and the two products bare
(bench/bare.py). The client is this process, on raw keep-alive sockets, so that its own cost stays
small and alike for every variant. Usage: `make bench-http`, or
`python bench/http_bench.py --requests 1000 --rounds 20`.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from common import cli, free_port, login, p99, uvicorn, write_settings

from portal_asgi.keys import load_or_create_key
from portal_asgi.tokens import TokenCodec

USER, PASSWORD = "bench", "bench-password-not-secret"
SETTINGS = """
[[mount]]
path = "/test"
app = "products.test.app:app"
level = "ea"

[[mount]]
path = "/dashboard"
app = "products.dashboard.app:app"
level = "ea"
"""
# The trusted headers the portal adds for the Flask product: the bare one gets them from the
# client instead, so that both answer the same JSON.
TRUSTED = {"X-Portal-User": USER, "X-Portal-Email": "", "X-Portal-Level": "ea"}
WARM_UP = 50


class Connection:
    """One keep-alive HTTP/1.1 connection on a raw socket. Answers must carry Content-Length
    (all of the benchmarked ones do)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.pending = b""

    def exchange(self, request: bytes) -> tuple[int, bytes]:
        """Send `request`; the answer's status and body."""
        self.sock.sendall(request)
        data = self.pending
        while (end := data.find(b"\r\n\r\n")) < 0:
            data += self._recv()
        head, body = data[:end], data[end + 4 :]
        length = None
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length is None:
            raise RuntimeError(f"answer without Content-Length: {head!r}")
        while len(body) < length:
            body += self._recv()
        self.pending = body[length:]
        return int(head.split(b" ", 2)[1]), body[:length]

    def _recv(self) -> bytes:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        return chunk

    def close(self) -> None:
        self.sock.close()


@dataclass(frozen=True)
class Variant:
    name: str
    port: int
    path: str
    headers: dict[str, str]
    status: int
    expect: bytes  # in the body: proves the request reached what it should
    baseline: str  # the variant it is compared with

    def request(self) -> bytes:
        lines = [f"GET {self.path} HTTP/1.1", f"Host: 127.0.0.1:{self.port}"]
        lines += ["Accept: application/json", *(f"{k}: {v}" for k, v in self.headers.items())]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def variants(portal: int, flask: int, starlette: int, cookie: str, token: str) -> list[Variant]:
    session = {"Cookie": f"portal_session={cookie}"}
    bearer = {"Authorization": f"Bearer {token}"}
    flask_bare, starlette_bare = "Flask `/whoami`, bare", "Starlette `/me`, bare"
    named = b'"bench"'
    return [
        Variant(flask_bare, flask, "/whoami", TRUSTED, 200, named, flask_bare),
        Variant("Flask, portal, session cookie", portal, "/test/whoami", session, 200, named, flask_bare),
        Variant("Flask, portal, API token", portal, "/test/whoami", bearer, 200, named, flask_bare),
        Variant(starlette_bare, starlette, "/me", {}, 200, named, starlette_bare),
        Variant("Starlette, portal, session cookie", portal, "/dashboard/me", session, 200, named, starlette_bare),
        Variant("Starlette, portal, API token", portal, "/dashboard/me", bearer, 200, named, starlette_bare),
        Variant("portal refuses anonymous (401)", portal, "/test/whoami", {}, 401, b"authentication_required", flask_bare),
    ]  # fmt: skip


def measure(chosen: list[Variant], rounds: int, per_round: int) -> dict[str, list[float]]:
    """Every variant in every round, `per_round` requests in a row, the order turning and reversing
    from round to round, so that drift in the machine falls on all alike. Microseconds."""
    connections = {variant.name: Connection(variant.port) for variant in chosen}
    requests = {variant.name: variant.request() for variant in chosen}
    samples: dict[str, list[float]] = {variant.name: [] for variant in chosen}
    try:
        for variant in chosen:
            connection, request = connections[variant.name], requests[variant.name]
            status, body = connection.exchange(request)
            if status != variant.status or variant.expect not in body:
                raise RuntimeError(f"{variant.name}: {status} {body[:300]!r}")
            for _ in range(WARM_UP):
                connection.exchange(request)
        for number in range(rounds):
            shift = number % len(chosen)
            order = chosen[shift:] + chosen[:shift]
            for variant in order if number % 2 == 0 else reversed(order):
                connection, request = connections[variant.name], requests[variant.name]
                taken = samples[variant.name]
                for _ in range(per_round):
                    started = time.perf_counter_ns()
                    status, _ = connection.exchange(request)
                    taken.append((time.perf_counter_ns() - started) / 1000)
                    if status != variant.status:
                        raise RuntimeError(f"{variant.name}: answered {status}")
    finally:
        for connection in connections.values():
            connection.close()
    return samples


def verify_costs(key_file: Path, count: int) -> tuple[list[float], list[float]]:
    """TokenCodec.verify, microseconds a call: `count` tokens each verified the first time (the
    signature is checked), then each again (answered from the cache)."""
    codec = TokenCodec(load_or_create_key(key_file), issuer="http://127.0.0.1")
    now = int(time.time())
    claims = {"typ": "api", "sub": USER, "lvl": "ea", "iat": now, "exp": now + 3600}
    tokens = [codec.sign(claims | {"sid": f"bench-{number}"}) for number in range(count)]
    first: list[float] = []
    cached: list[float] = []
    for samples in (first, cached):
        for token in tokens:
            started = time.perf_counter_ns()
            codec.verify(token)
            samples.append((time.perf_counter_ns() - started) / 1000)
    return first, cached


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000, help="requests a variant (1000)")
    parser.add_argument("--rounds", type=int, default=20, help="interleaved rounds (20)")
    parser.add_argument("--tokens", type=int, default=1000, help="tokens verified (1000)")
    args = parser.parse_args()
    per_round = max(1, args.requests // args.rounds)
    keep_alive = ("--timeout-keep-alive", "60")  # rounds leave a connection idle for seconds
    with tempfile.TemporaryDirectory(prefix="http-bench-") as tmp:
        portal_port, flask_port, starlette_port = free_port(), free_port(), free_port()
        settings = write_settings(Path(tmp), portal_port, SETTINGS)
        cli(settings, "db", "upgrade")
        cli(settings, "users", "add", USER, "--level", "ea", stdin=PASSWORD + "\n")
        token = cli(settings, "token", "mint", USER, "--ttl", "1h").strip().splitlines()[-1]
        env = {"PORTAL_SETTINGS": str(settings)}
        log = Path(tmp) / "servers.log"
        with (
            uvicorn("portal_asgi:app", portal_port, env, *keep_alive, log=log),
            uvicorn("bench.bare:flask", flask_port, {}, *keep_alive, log=log),
            uvicorn("bench.bare:starlette", starlette_port, {}, *keep_alive, log=log),
        ):
            cookie = login(f"http://127.0.0.1:{portal_port}", USER, PASSWORD)
            chosen = variants(portal_port, flask_port, starlette_port, cookie, token)
            times = measure(chosen, args.rounds, per_round)
        first, cached = verify_costs(Path(tmp) / "key.pem", args.tokens)
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print("uvicorn, one worker a server, loopback; raw keep-alive sockets, one a variant")
    print(f"{os.cpu_count()} CPUs, load average {load} (other work on the machine shows here)")
    print(f"{per_round * args.rounds} requests a variant in {args.rounds} interleaved rounds\n")
    medians = {name: statistics.median(samples) for name, samples in times.items()}
    tails = {name: p99(samples) for name, samples in times.items()}
    print("| request | median | p99 | median / bare | p99 / bare |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for variant in chosen:
        name, base = variant.name, variant.baseline
        ratios = (
            ("", "")
            if name == base
            else (f"{medians[name] / medians[base]:.2f}x", f"{tails[name] / tails[base]:.2f}x")
        )
        print(
            f"| {name} | {medians[name]:.0f} µs | {tails[name]:.0f} µs | {ratios[0]} | {ratios[1]} |"
        )
    print("\n(the refusal's ratios are against bare Flask)\n")
    print(f"| TokenCodec.verify, {args.tokens} tokens | median a call |")
    print("| --- | ---: |")
    print(f"| first (ES256 signature checked) | {statistics.median(first):.1f} µs |")
    print(f"| again (from the cache) | {statistics.median(cached):.1f} µs |")
    print(f"| first / cached | {statistics.median(first) / statistics.median(cached):.0f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
