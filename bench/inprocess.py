"""What one request costs the portal, in process: the hello products of bench/hello.py bare and
through a portal, one request at a time on uvloop, no socket. Each variant is measured twice: as a
direct ASGI call (the portal's cost and the product's, nothing else), and as the bytes of wrk's
request handed to uvicorn's httptools protocol on a keep-alive connection whose transport is a
list (the server's own cost per request added, as under `make bench-request`, the kernel's not).

Two measures. By default, wall time: every variant runs `--requests` requests a round, the
variants interleaved, and the report gives the fastest round of each (the round least disturbed by
the rest of the machine). With `--callgrind`, instructions: the same requests run again in a
subprocess under `valgrind --tool=callgrind`, which counts the instructions the CPU executes
whatever else the machine is doing: however loaded the machine, two runs agree to within 0.3% for
the direct calls and 3% through uvicorn (its event loop's timers), and the report gives the
fewest of the loops (a loop that met the audit log's writes of the first refusals of a minute is
not the one counted). The subprocess marks each measured loop by
calling two functions of `sys` that nothing else here calls, `sys.getdlopenflags()` before the loop
and `sys.getswitchinterval()` after it; callgrind dumps its counts (and starts again from zero) as
either is called, so the dump made at the end of a loop holds that loop alone, every thread
included (the WSGI bridge's pool thread). Instructions leave out the kernel: the system calls of
a thread hand-off cost time but no instructions, so for the Flask variants wall time is the
truer figure.

The portal is `portal_asgi.Portal` on a settings file written here (a temporary SQLite database and
key), started through its lifespan as a server would, with three mounts of the hello products
(`/s` Starlette and `/f` Flask at level `ea`, `/p` Starlette at `public`) and a user at `ea`. A
second portal holds 200 mounts, `/s` last. The change feed is polled every 10 minutes and the
settings file is not watched, so that no background work falls inside a measured loop. Each
variant's status is checked before it is measured and after each loop.

Results go to bench/results/inprocess.md and .json. Usage: `make bench-inprocess` (both
measures), or `python bench/inprocess.py [--requests 2000] [--rounds 9] [--callgrind]
[--callgrind-requests 300] [--callgrind-rounds 3] [--variants KEY,...] [--no-wall]`.
`--bytecodes KEY` prints instead where one variant's Python bytecodes go, function by function
(`sys.settrace` opcode events; `portal_cookie+uvicorn` for the same through uvicorn).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import formatdate
from importlib.metadata import version
from pathlib import Path
from types import CodeType, FrameType
from typing import Any, cast

import uvloop
from common import ROOT, write_settings
from hello import flask as flask_app
from hello import flask_a2wsgi, starlette
from uvicorn import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from portal_asgi import Portal, claims, load_settings
from portal_asgi.db import store
from portal_asgi.products import as_asgi
from portal_asgi.runtime import Runtime
from portal_asgi.types import ASGIApp, Message, Scope

RESULTS = ROOT / "bench" / "results"
PORT = 8000  # base_url's; nothing listens: requests are ASGI calls
HOST = (b"host", f"127.0.0.1:{PORT}".encode())
USER, PASSWORD = "bench", "bench-password-not-secret"
MOUNT = """
[[mount]]
path = "{path}"
app = "bench.hello:{app}"
level = "{level}"
"""
MOUNTS = (
    MOUNT.format(path="/f", app="flask", level="ea")
    + MOUNT.format(path="/s", app="starlette", level="ea")
    + MOUNT.format(path="/p", app="starlette", level="public")
)
QUIET = '\nfeed_interval = "10m"\nwatch_settings = false\n'
# The markers of a measured loop under callgrind: C functions of libpython behind `sys` functions
# that nothing else calls here (callgrind does not see a call through ctypes). Both dump: its
# --zero-before would zero the calling thread's counts only.
START, END = "sys_getdlopenflags", "sys_getswitchinterval"
WARM_UP = 200
UVICORN = "+uvicorn"  # the key of a variant's requests through uvicorn's protocol


@dataclass(frozen=True)
class Variant:
    key: str
    name: str
    app: str  # which app of `Apps`
    path: str
    headers: tuple[tuple[bytes, bytes], ...]
    status: int


@dataclass(frozen=True)
class Ratio:
    """Throughput of `variant` against `base` (cost of `base` / cost of `variant`), as the
    request benchmark's targets are stated."""

    variant: str
    base: str
    what: str
    target: float


RATIOS = (
    Ratio("portal_cookie", "starlette_bare", "Starlette: portal (cookie) / bare", 0.8),
    Ratio("portal_token", "starlette_bare", "Starlette: portal (API token) / bare", 0.8),
    Ratio("portal_public", "starlette_bare", "Starlette: portal (public mount) / bare", 0.8),
    Ratio("refused", "starlette_bare", "refused 401 / bare Starlette", 1.0),
    Ratio("portal_flask", "flask_a2wsgi", "Flask: portal / bare on a2wsgi", 2.0),
    Ratio("mounts_many", "portal_cookie", "last of 200 mounts / table of 3", 0.95),
)


def variants(cookie: str, token: str, cookie_many: str) -> list[Variant]:
    json_only = (b"accept", b"application/json")
    return [
        Variant("starlette_bare", "Starlette hello, bare", "starlette", "/hello", (), 200),
        Variant(
            "portal_cookie",
            "Starlette hello, portal, session cookie",
            "portal",
            "/s/hello",
            ((b"cookie", cookie.encode()),),
            200,
        ),
        Variant(
            "portal_token",
            "Starlette hello, portal, API token",
            "portal",
            "/s/hello",
            ((b"authorization", b"Bearer " + token.encode()),),
            200,
        ),
        Variant(
            "portal_public", "Starlette hello, portal, public mount", "portal", "/p/hello", (), 200
        ),
        Variant("refused", "anonymous, refused (401)", "portal", "/s/hello", (json_only,), 401),
        Variant("flask_a2wsgi", "Flask hello on a2wsgi, bare", "a2wsgi", "/hello", (), 200),
        Variant("flask_bridge", "Flask hello on the bridge, bare", "bridge", "/hello", (), 200),
        Variant(
            "portal_flask",
            "Flask hello, portal, session cookie",
            "portal",
            "/f/hello",
            ((b"cookie", cookie.encode()),),
            200,
        ),
        Variant(
            "mounts_many",
            "Starlette hello, last of 200 mounts, session cookie",
            "many",
            "/s/hello",
            ((b"cookie", cookie_many.encode()),),
            200,
        ),
    ]


def scope_of(variant: Variant) -> Scope:
    """What uvicorn hands an app for wrk's `GET path` with the variant's headers."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", PORT),
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        "method": "GET",
        "root_path": "",
        "path": variant.path,
        "raw_path": variant.path.encode(),
        "query_string": b"",
        "headers": [HOST, *variant.headers],
        "state": {},
    }


Driver = Callable[[int], Awaitable[list[int]]]


def driver(app: ASGIApp, variant: Variant) -> Driver:
    """`count` requests of `variant`, one after the other; the statuses answered."""
    template = scope_of(variant)
    headers = template["headers"]
    request: Message = {"type": "http.request", "body": b"", "more_body": False}

    async def run(count: int) -> list[int]:
        statuses: list[int] = []

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        for _ in range(count):
            given = False

            async def receive() -> Message:
                nonlocal given
                if given:  # the client stays: no disconnect comes
                    await asyncio.Event().wait()
                given = True
                return request

            scope = dict(template)
            scope["headers"] = headers.copy()
            await app(scope, receive, send)
        return statuses

    return run


class Transport(asyncio.Transport):
    """A connection whose other end is a list: what uvicorn writes is kept, until cleared."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.extra = {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", PORT)}

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.extra.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        raise RuntimeError("uvicorn closed the keep-alive connection")

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def through_uvicorn(app: ASGIApp, variant: Variant) -> Driver:
    """The same requests as bytes, read and answered by uvicorn's httptools protocol (as `uvicorn
    --http httptools --no-proxy-headers --no-access-log` runs it) on one keep-alive connection."""
    config = Config(
        app,
        http="httptools",
        lifespan="off",
        proxy_headers=False,
        access_log=False,
        log_config=None,
    )
    config.load()
    state = ServerState()
    # what uvicorn's main loop puts on every answer (it refreshes the date once a second)
    state.default_headers = [(b"date", formatdate(usegmt=True).encode()), *config.encoded_headers]
    protocol = HttpToolsProtocol(config, state, {}, asyncio.get_running_loop())
    transport = Transport()
    protocol.connection_made(transport)
    lines = [f"GET {variant.path} HTTP/1.1", f"Host: 127.0.0.1:{PORT}"]
    lines += [f"{name.decode()}: {value.decode()}" for name, value in variant.headers]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def run(count: int) -> list[int]:
        statuses = []
        for _ in range(count):
            protocol.data_received(request)
            (task,) = state.tasks  # the request's, as uvicorn started it
            await task
            statuses.append(int(transport.written[0][9:12]))  # HTTP/1.1 200 OK
            transport.written.clear()
        return statuses

    return run


def check(variant: Variant, statuses: list[int], count: int) -> None:
    if len(statuses) != count or any(status != variant.status for status in statuses):
        wrong = sorted(set(statuses) - {variant.status})
        raise RuntimeError(f"{variant.key}: {len(statuses)}/{count} answers, statuses {wrong}")


class Lifespan:
    """An app's lifespan, driven as a server drives it."""

    def __init__(self, app: ASGIApp) -> None:
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.outbox: asyncio.Queue[Message] = asyncio.Queue()
        lifespan: Scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}

        async def run() -> None:
            await app(lifespan, self.inbox.get, self.outbox.put)

        self.task = asyncio.create_task(run())

    async def start(self) -> None:
        await self.inbox.put({"type": "lifespan.startup"})
        answer = await self.outbox.get()
        if answer["type"] != "lifespan.startup.complete":
            raise RuntimeError(f"the portal did not start: {answer}")

    async def stop(self) -> None:
        await self.inbox.put({"type": "lifespan.shutdown"})
        await self.outbox.get()
        await self.task


def settings_file(folder: Path, mounts: str) -> Path:
    folder.mkdir()
    settings = write_settings(folder, PORT, mounts)
    text = settings.read_text().replace("[portal]\n", "[portal]" + QUIET, 1)
    settings.write_text(text)
    return settings


@contextlib.asynccontextmanager
async def portal(folder: Path, mounts: str) -> AsyncIterator[tuple[Portal, Runtime]]:
    app = Portal(load_settings(settings_file(folder, mounts)))
    lifespan = Lifespan(app)
    await lifespan.start()
    assert app.runtime is not None
    try:
        yield app, app.runtime
    finally:
        await lifespan.stop()


async def credentials(runtime: Runtime) -> tuple[str, str]:
    """A session cookie's `name=value` and an API token for the user at `ea`."""
    await store.add_user(runtime.db, USER, level="ea", password=PASSWORD)
    await runtime.directory.refresh()
    now = int(time.time())
    auth = runtime.settings.auth
    sid, user = await store.open_session(runtime.db, USER, lifetime=auth.session_lifetime)
    made = claims.session(
        runtime.levels,
        USER,
        user,
        sid=sid,
        now=now,
        idle_timeout=auth.idle_timeout,
        lifetime=auth.session_lifetime,
    )
    cookie = f"{runtime.cookie.name}={runtime.codec.sign(made)}"
    sid, user = await store.open_session(runtime.db, USER, lifetime=3600, kind="api")
    made = claims.api_token(runtime.levels, USER, user, sid=sid, now=now, ttl=3600)
    return cookie, runtime.codec.sign(made)


Measure = Callable[[list[tuple[Variant, Driver]]], Awaitable[dict[str, Any]]]


async def with_variants(measure: Measure, only: frozenset[str]) -> dict[str, Any]:
    """Start the portals, make the credentials, check every variant (those in `only`, when
    given); then `measure`."""
    with tempfile.TemporaryDirectory(prefix="inprocess-bench-") as tmp:
        async with contextlib.AsyncExitStack() as stack:
            main, runtime = await stack.enter_async_context(portal(Path(tmp) / "portal", MOUNTS))
            cookie, token = await credentials(runtime)
            apps: dict[str, ASGIApp] = {
                "starlette": starlette,
                "portal": main,
                "a2wsgi": cast(ASGIApp, flask_a2wsgi),
                "bridge": as_asgi(flask_app)[0],
            }
            cookie_many = ""
            if not only or "mounts_many" in only:
                many = "".join(
                    MOUNT.format(path=f"/p{number:03d}", app="starlette", level="ea")
                    for number in range(199)
                ) + MOUNT.format(path="/s", app="starlette", level="ea")
                apps["many"], runtime_many = await stack.enter_async_context(
                    portal(Path(tmp) / "many", many)
                )
                cookie_many, _ = await credentials(runtime_many)
            chosen = []
            for variant in variants(cookie, token, cookie_many):
                if only and variant.key not in only:
                    continue
                served = replace(variant, key=variant.key + UVICORN, name=variant.name)
                app = apps[variant.app]
                for measured, run in (
                    (variant, driver(app, variant)),
                    (served, through_uvicorn(app, variant)),
                ):
                    check(measured, await run(WARM_UP), WARM_UP)
                    chosen.append((measured, run))
            return await measure(chosen)


# Wall time


def wall(requests: int, rounds: int, only: frozenset[str]) -> dict[str, Any]:
    async def measure(chosen: list[tuple[Variant, Driver]]) -> dict[str, Any]:
        times: dict[str, list[float]] = {variant.key: [] for variant, _ in chosen}
        for number in range(rounds):
            order = chosen[number % len(chosen) :] + chosen[: number % len(chosen)]
            for variant, run in order if number % 2 == 0 else order[::-1]:
                started = time.perf_counter()
                statuses = await run(requests)
                times[variant.key].append((time.perf_counter() - started) / requests * 1e6)
                check(variant, statuses, requests)
        return {
            "variants": {variant.key: variant.name for variant, _ in chosen},
            "us": {key: min(values) for key, values in times.items()},
            "rounds_us": times,
        }

    return uvloop.run(with_variants(measure, only))


# Where the instructions go: bytecodes


def bytecodes(key: str, requests: int, top: int) -> str:
    """The Python bytecodes one request of variant `key` executes, by function (each its own,
    not its callees'), counted with `sys.settrace` opcode events: a profile that, like the
    instruction counts, does not depend on the machine's load."""
    counts: Counter[str] = Counter()
    calls: Counter[str] = Counter()
    site = str(Path(uvloop.__file__).parents[1])  # site-packages

    def name(code: CodeType) -> str:
        where = code.co_filename.replace(site + "/", "").replace(str(ROOT) + "/", "")
        return f"{where}:{code.co_firstlineno} {code.co_name}"

    def tracer(frame: FrameType, event: str, arg: object) -> Any:
        if event != "call":
            return None
        function = name(frame.f_code)
        calls[function] += 1
        frame.f_trace_opcodes = True

        def opcodes(frame: FrameType, event: str, arg: object) -> Any:
            if event == "opcode":
                counts[function] += 1
            return opcodes

        return opcodes

    async def measure(chosen: list[tuple[Variant, Driver]]) -> dict[str, Any]:
        for variant, run in chosen:
            if variant.key == key:
                sys.settrace(tracer)
                try:
                    statuses = await run(requests)
                finally:
                    sys.settrace(None)
                check(variant, statuses, requests)
        return {}

    uvloop.run(with_variants(measure, frozenset({key.removesuffix(UVICORN)})))
    lines = [
        f"{key}: {sum(counts.values()) / requests:.0f} bytecodes a request",
        "",
        "| bytecodes | calls | function |",
        "| ---: | ---: | --- |",
    ]
    for function, count in counts.most_common(top):
        lines.append(f"| {count / requests:.0f} | {calls[function] / requests:g} | {function} |")
    return "\n".join(lines) + "\n"


# Instructions (callgrind)


def child(requests: int, rounds: int, only: frozenset[str], out: Path) -> None:
    """Under callgrind: each variant's `rounds` loops of `requests`, each between the markers;
    the order of the loops goes to `out`."""
    start, end = sys.getdlopenflags, sys.getswitchinterval

    async def measure(chosen: list[tuple[Variant, Driver]]) -> dict[str, Any]:
        loops = []
        for variant, run in chosen:
            for _ in range(rounds):
                start()
                statuses = await run(requests)
                end()
                check(variant, statuses, requests)
                loops.append(variant.key)
        return {"variants": {variant.key: variant.name for variant, _ in chosen}, "loops": loops}

    out.write_text(json.dumps(uvloop.run(with_variants(measure, only))))


def instructions(
    requests: int, rounds: int, only: frozenset[str], keep: Path | None
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="inprocess-callgrind-") as tmp:
        folder = keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("callgrind.out*"):
            old.unlink()
        order = folder / "loops.json"
        command = [
            "valgrind",
            "--tool=callgrind",
            f"--dump-before={START}",
            f"--dump-before={END}",
            f"--callgrind-out-file={folder / 'callgrind.out'}",
            sys.executable,
            __file__,
            "--child",
            str(order),
            "--callgrind-requests",
            str(requests),
            "--callgrind-rounds",
            str(rounds),
            "--variants",
            ",".join(sorted(only)),
        ]
        # the same hashes in every run: a set's or a dict's layout may change what is executed
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        subprocess.run(command, check=True, env=env, cwd=ROOT, stderr=subprocess.DEVNULL)
        told = json.loads(order.read_text())
        dumps = sorted(
            (dump for dump in folder.glob("callgrind.out.*") if _trigger(dump) == END),
            key=lambda dump: int(dump.name.rsplit(".", 1)[1]),
        )
        if len(dumps) != len(told["loops"]):
            raise RuntimeError(f"{len(dumps)} dumps for {len(told['loops'])} measured loops")
        counts: dict[str, list[float]] = {key: [] for key in told["variants"]}
        for key, dump in zip(told["loops"], dumps, strict=True):
            counts[key].append(_total(dump) / requests)
        return {
            "variants": told["variants"],
            "instructions": {key: min(values) for key, values in counts.items()},
            "rounds_instructions": counts,
        }


def _trigger(dump: Path) -> str:
    with dump.open() as lines:
        for line in lines:
            if line.startswith("desc: Trigger:"):
                return END if END in line else line
            if line.startswith("events:"):
                break
    return ""


def _total(dump: Path) -> int:
    for line in dump.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"{dump}: no totals")


# The report


def ratios(costs: dict[str, float]) -> list[dict[str, Any]]:
    """Each ratio of `RATIOS`, as a direct ASGI call and through uvicorn, where both were
    measured."""
    found = []
    for ratio in RATIOS:
        for layer in ("", UVICORN):
            variant, base = ratio.variant + layer, ratio.base + layer
            if variant in costs and base in costs:
                value = costs[base] / costs[variant]
                met = value >= ratio.target
                layered = {"variant": variant, "base": base, "layer": layer or "asgi"}
                found.append({**ratio.__dict__, **layered, "ratio": round(value, 3), "met": met})
    return found


def _cell(costs: dict[str, float], key: str, unit: str) -> str:
    if key not in costs:
        return ""
    return f"{costs[key]:.1f}" if unit == "us" else f"{costs[key]:,.0f}"


def markdown(results: dict[str, Any], about: dict[str, Any]) -> str:
    names: dict[str, str] = {k: v for k, v in results["variants"].items() if UVICORN not in k}
    us: dict[str, float] = results.get("us", {})
    ir: dict[str, float] = results.get("instructions", {})
    measures = (
        f"wall time, the fastest of {about['rounds']} interleaved rounds of "
        f"{about['requests']} requests"
        if us
        else ""
    )
    if ir:
        measures += "; " if measures else ""
        measures += (
            f"instructions (callgrind), the fewest of {about['callgrind_rounds']} loops of "
            f"{about['callgrind_requests']} requests"
        )
    both = (("us", us), ("ir", ir))
    lines = [
        "# Request path in process",
        "",
        f"{about['date']}; {about['cpus']} CPUs, load average before {about['load_before']}, "
        f"after {about['load_after']}. Python {about['python']}, Starlette "
        f"{about['starlette']}, Flask {about['flask']}, a2wsgi {about['a2wsgi']}, "
        f"uvicorn {about['uvicorn']}, uvloop {about['uvloop']}.",
        f"Command: `{about['command']}`. Measures: {measures}.",
        "",
        "Per request, as a direct ASGI call, and through uvicorn's httptools protocol (no "
        "socket). µs: wall time; Ir: instructions executed.",
        "",
        "| variant | ASGI µs | ASGI Ir | uvicorn µs | uvicorn Ir |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for key, name in names.items():
        cells = [_cell(costs, k, unit) for k in (key, key + UVICORN) for unit, costs in both]
        lines.append(f"| {name} | {' | '.join(cells)} |")
    lines += [
        "",
        "Throughput ratios: the base's cost over the variant's (1.0x: as fast as the base), "
        "against the targets of the request benchmark (wrk through uvicorn and a socket, where "
        "the server's cost per request is the same on both sides: the uvicorn columns are the "
        "ones to hold against them).",
        "",
        "| ratio | ASGI, by time | ASGI, by Ir | uvicorn, by time | uvicorn, by Ir | target |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    found = {
        (r["what"], r["layer"], unit): r["ratio"]
        for unit, costs in (("us", us), ("ir", ir))
        for r in ratios(costs)
    }
    for ratio in RATIOS:
        cells = [
            f"{found[ratio.what, layer, unit]:.2f}x" if (ratio.what, layer, unit) in found else ""
            for layer in ("asgi", UVICORN)
            for unit in ("us", "ir")
        ]
        lines.append(f"| {ratio.what} | {' | '.join(cells)} | ≥ {ratio.target}x |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests a round (2000)")
    parser.add_argument("--rounds", type=int, default=9, help="interleaved rounds (9)")
    parser.add_argument("--callgrind", action="store_true", help="count instructions too")
    parser.add_argument("--callgrind-requests", type=int, default=300, help="a loop (300)")
    parser.add_argument("--callgrind-rounds", type=int, default=3, help="loops a variant (3)")
    parser.add_argument("--variants", default="", help="only these, by key, comma-separated")
    parser.add_argument("--no-wall", action="store_true", help="instructions only")
    parser.add_argument(
        "--bytecodes", metavar="KEY", help="print where one variant's bytecodes go, and stop"
    )
    parser.add_argument("--keep", type=Path, help="keep callgrind's dumps in this folder")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where results go")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    only = frozenset(key for key in args.variants.split(",") if key)
    # the audit log's JSON lines of the first refusals would go to the terminal otherwise
    logging.basicConfig(level=logging.ERROR)
    if args.child is not None:
        child(args.callgrind_requests, args.callgrind_rounds, only, args.child)
        return 0
    if args.bytecodes:
        print(bytecodes(args.bytecodes, 200, 40))
        return 0
    if args.callgrind and shutil.which("valgrind") is None:
        print("valgrind is not installed (Debian package `valgrind`)", file=sys.stderr)
        return 1
    load_before = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    results: dict[str, Any] = {} if args.no_wall else wall(args.requests, args.rounds, only)
    if args.callgrind:
        print("counting instructions under callgrind (a few minutes)", file=sys.stderr)
        results |= instructions(args.callgrind_requests, args.callgrind_rounds, only, args.keep)
    about = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": shlex.join(["python", *sys.argv]),
        "cpus": os.cpu_count(),
        "load_before": load_before,
        "load_after": ", ".join(f"{x:.1f}" for x in os.getloadavg()),
        "python": platform.python_version(),
        **{name: version(name) for name in ("starlette", "flask", "a2wsgi", "uvicorn", "uvloop")},
        "requests": args.requests,
        "rounds": args.rounds,
        "callgrind_requests": args.callgrind_requests if args.callgrind else None,
        "callgrind_rounds": args.callgrind_rounds if args.callgrind else None,
    }
    report = markdown(results, about)
    data = {
        "about": about,
        **results,
        "ratios_by_time": ratios(results.get("us", {})),
        "ratios_by_instructions": ratios(results.get("instructions", {})),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "inprocess.md").write_text(report)
    (args.out / "inprocess.json").write_text(json.dumps(data, indent=2) + "\n")
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
