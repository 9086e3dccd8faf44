"""Request path benchmark: requests/s of the smallest products (bench/hello.py) bare, through the
portal signed in, refused by the portal, behind the original stack (bench/original.py), at the
end of a table of 200 mounts, and served by a process of its own behind an upstream mount (the
portal-to-upstream hop against calling that process directly); then the portal worker's memory
over 100,000 requests.

The portal is used from the outside only: `uvicorn portal_asgi:app` with PORTAL_SETTINGS naming a
settings file written here, and a session cookie from signing in through the login form. Every
server runs on one core (taskset), wrk (`-t1`) on another. The variants run interleaved, the order
rotating from round to round; the report gives the medians of the rounds, and each ratio is the
median of the rounds' ratios. Each variant's status is checked before it is measured, and wrk
counts every answer with another status, so that a broken variant cannot pass for a fast one.
Results go to bench/results/request-path.md and .json. Usage: `make bench-request`, or
`python bench/request_bench.py --seconds 3 --rounds 8`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import httpx2
from common import BIN, ROOT, cli, free_port, login, server, uvicorn, write_settings
from original import KEY_ENV, new_key, session_cookie
from wsgi_bench import Variant, cpu_model, measure, pin

USER, PASSWORD = "bench", "bench-password-not-secret"
RESULTS = ROOT / "bench" / "results"
MOUNT = """
[[mount]]
path = "{path}"
app = "bench.hello:{app}"
level = "ea"
"""
# Two mounts; the Starlette one is also "the same mount in a table of 2" for the 200-mount table.
SETTINGS = MOUNT.format(path="/f", app="flask") + MOUNT.format(path="/s", app="starlette")
# The bare Starlette hello's own server, mounted as a product deployed elsewhere: the proxied case.
UPSTREAM = """
[[mount]]
path = "/u"
upstream = "http://127.0.0.1:{port}"
level = "ea"
"""
UVICORN = ("--http", "httptools", "--no-proxy-headers")  # common.uvicorn adds the log options
GUNICORN = ("-w1", "--threads", "4", "--log-level", "warning")

# Every answer whose status is not the one given after `--` counts as a status error.
STATUS_LUA = """
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  expected = tonumber(args[1]) or 200
  unexpected = 0
end

function response(status, headers, body)
  if status ~= expected then
    unexpected = unexpected + 1
  end
end

function done(summary, latency, requests)
  local wrong = 0
  for _, thread in ipairs(threads) do
    wrong = wrong + thread:get("unexpected")
  end
  local errors = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "seconds": %f, "p50": %d, "p90": %d, "p99": %d, ' ..
    '"status_errors": %d, "socket_errors": %d}\\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), wrong, errors.connect + errors.read + errors.write + errors.timeout))
end
"""
# `-- COUNT PATH...`: the paths in turn (one thread). wrk runs for its whole -d even once a thread
# stops, so the COUNTth answer reports and ends wrk; done() reports only when that never came.
BATCH_LUA = """
function init(args)
  limit = tonumber(args[1])
  requests = {}
  for i = 2, #args do
    requests[#requests + 1] = wrk.format(nil, args[i])
  end
  sent, answered, unexpected = 0, 0, 0
end

function request()
  sent = sent + 1
  return requests[sent % #requests + 1]
end

function report(complete)
  io.write(string.format('WRK_JSON {"requests": %d, "status_errors": %d, "complete": %s}\\n',
    answered, unexpected, complete))
  io.flush()
end

function response(status, headers, body)
  answered = answered + 1
  if status ~= 200 then
    unexpected = unexpected + 1
  end
  if answered >= limit then
    report("true")
    os.exit(0)
  end
end

function done(summary, latency, requests)
  io.write('WRK_JSON {"requests": 0, "status_errors": 0, "complete": false}\\n')
end
"""


@dataclass(frozen=True)
class Target:
    """`variant` / `base` should reach `least` (requests/s, the same round)."""

    variant: str
    base: str
    least: float
    what: str


TARGETS = (
    Target("portal_starlette", "starlette_bare", 0.8, "Starlette: portal / bare"),
    Target("portal_flask", "flask_a2wsgi", 2.0, "Flask: portal / bare on a2wsgi"),
    Target("portal_flask", "original", 2.0, "Flask: portal / original stack"),
    Target("refused", "starlette_bare", 1.0, "refused 401 / bare Starlette"),
    Target("mounts_many", "portal_starlette", 0.95, "last of {mounts} mounts / table of 2"),
    # The upstream answers on the portal's core too, so this is the whole hop's cost: the
    # portal's request path, its HTTP client and a second server's parsing, against the bare one.
    Target("portal_upstream", "starlette_bare", 0.2, "upstream hop: via portal / direct"),
)
MEMORY_FLAT = 4 * 1024  # KiB of growth over the whole memory run still called flat


def variants(
    servers: dict[str, tuple[int, int]], cookie: str, cookie_many: str, original: str, mounts: int
) -> list[Variant]:
    """The variants, on `servers` (name: port and process id)."""
    portal, many = f"Cookie: portal_session={cookie}", f"Cookie: portal_session={cookie_many}"
    rows = [
        ("starlette_bare", "Starlette hello, bare", "starlette", "/hello", (), 200),
        ("portal_starlette", "Starlette hello, portal, signed in", "portal", "/s/hello", (portal,), 200),
        ("flask_a2wsgi", "Flask hello on a2wsgi, bare", "a2wsgi", "/hello", (), 200),
        ("portal_flask", "Flask hello, portal, signed in", "portal", "/f/hello", (portal,), 200),
        ("original", "Flask hello, original stack (gunicorn, JWT each request)", "original", "/f/hello", (f"Cookie: session={original}",), 200),
        ("refused", "anonymous, refused by the portal (401)", "portal", "/s/hello", (), 401),
        ("mounts_many", f"Starlette hello, last of {mounts} mounts, signed in", "many", "/s/hello", (many,), 200),
        ("portal_upstream", "Starlette hello on its own uvicorn, through the portal (upstream mount), signed in", "portal", "/u/hello", (portal,), 200),
    ]  # fmt: skip
    return [
        Variant(key, name, servers[on][0], path, headers, status, pid=servers[on][1])
        for key, name, on, path, headers, status in rows
    ]


def many_mounts(count: int) -> str:
    """`count` mounts of the Starlette hello: `/p000`... and, last in the file and the one a
    linear router tries last whether it keeps the file's order or sorts longest path first, `/s`."""
    table = [MOUNT.format(path=f"/p{number:03d}", app="starlette") for number in range(count - 1)]
    return "".join([*table, MOUNT.format(path="/s", app="starlette")])


def check(variant: Variant) -> None:
    """One request before measuring: the status it must give, and for 200 the hello itself."""
    headers = dict(h.split(": ", 1) for h in ("Accept: application/json", *variant.headers))
    url = f"http://127.0.0.1:{variant.port}{variant.path}"
    answer = httpx2.get(url, headers=headers, timeout=10)
    if answer.status_code != variant.status or (variant.status == 200 and answer.text != "hello"):
        raise RuntimeError(f"{variant.name}: {answer.status_code} {answer.text[:300]!r}")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def memory(
    pid: int, port: int, cookie: str, total: int, every: int, cpu: str, script: Path
) -> list[dict[str, int]]:
    """The resident memory of `pid` before and after each `every` requests, signed in, the
    Starlette and the Flask hello in turn, until `total`."""
    command = ["taskset", "-c", cpu, "wrk", "-t1", "-c32", "-d300s", "-s", str(script)]
    command += ["-H", "Accept: application/json", "-H", f"Cookie: portal_session={cookie}"]
    command += [f"http://127.0.0.1:{port}/", "--", str(every), "/s/hello", "/f/hello"]
    samples = [{"requests": 0, "rss_kib": rss_kib(pid)}]
    done = 0
    while done < total:
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        line = next(x for x in output.splitlines() if x.startswith("WRK_JSON "))
        figures = json.loads(line.removeprefix("WRK_JSON "))
        if figures["status_errors"] or not figures["complete"]:
            raise RuntimeError(f"memory run: wrk saw errors: {figures}\n{output}")
        done += int(figures["requests"])
        samples.append({"requests": done, "rss_kib": rss_kib(pid)})
    return samples


@dataclass(frozen=True)
class Ratio:
    target: Target
    what: str
    median: float  # of the rounds' ratios of requests/s, each variant against its base
    lowest: float
    highest: float
    by_cpu: float  # the median ratio of requests per second of server CPU

    @property
    def met(self) -> bool:
        return self.median >= self.target.least


def summarise(
    chosen: list[Variant], samples: dict[str, list[dict[str, float]]], mounts: int
) -> tuple[dict[str, dict[str, float]], list[Ratio]]:
    fields = ("rps", "rps_cpu", "p50", "p99")
    table = {
        v.key: {f: statistics.median(run[f] for run in samples[v.key]) for f in fields}
        for v in chosen
    }
    ratios = []
    for target in TARGETS:
        pairs = list(zip(samples[target.variant], samples[target.base], strict=True))
        each = [run["rps"] / base["rps"] for run, base in pairs]
        by_cpu = statistics.median(run["rps_cpu"] / base["rps_cpu"] for run, base in pairs)
        what = target.what.format(mounts=mounts)
        ratios.append(Ratio(target, what, statistics.median(each), min(each), max(each), by_cpu))
    return table, ratios


def markdown(
    chosen: list[Variant],
    table: dict[str, dict[str, float]],
    ratios: list[Ratio],
    rss: list[dict[str, int]],
    about: dict[str, object],
) -> str:
    growth = rss[-1]["rss_kib"] - rss[0]["rss_kib"]
    lines = [
        "# Request path benchmark",
        "",
        f"{about['date']}; {about['cpus']} CPUs ({about['cpu_model']}), load average before the run "
        f"{about['load_before']}, after {about['load_after']}. Python {about['python']}, "
        f"uvicorn {about['uvicorn']}, gunicorn {about['gunicorn']}, Starlette {about['starlette']}, "
        f"Flask {about['flask']}, a2wsgi {about['a2wsgi']}.",
        f"Servers on CPU {about['server_cpu']}, wrk on CPU {about['wrk_cpu']} "
        f"(`-t1 -c{about['connections']}`), {about['rounds']} interleaved rounds of "
        f"{about['seconds']} s; medians of the rounds. Command: `{about['command']}`.",
        "",
        "| variant | requests/s | per server CPU-second | p50 | p99 |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for variant in chosen:
        row = table[variant.key]
        lines.append(
            f"| {variant.name} | {row['rps']:.0f} | {row['rps_cpu']:.0f} | "
            f"{row['p50'] / 1000:.2f} ms | {row['p99'] / 1000:.2f} ms |"
        )
    lines += [
        "",
        "Ratios of requests/s: the median of the rounds' ratios (each round's pair measured in the "
        "same round), their range, and the same ratio of requests per server CPU-second.",
        "",
        "| ratio | requests/s | rounds | by server CPU | target | met |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for ratio in ratios:
        lines.append(
            f"| {ratio.what} | {ratio.median:.2f}x | {ratio.lowest:.2f} to "
            f"{ratio.highest:.2f} | {ratio.by_cpu:.2f}x | ≥ {ratio.target.least}x | "
            f"{'yes' if ratio.met else '**no**'} |"
        )
    lines += [
        "",
        "Resident memory of the portal worker (VmRSS), signed in, Starlette and Flask hello in turn:",
        "",
        "| requests | RSS |",
        "| ---: | ---: |",
        *(f"| {s['requests']:,} | {s['rss_kib'] / 1024:.1f} MiB |" for s in rss),
        "",
        f"Growth {growth / 1024:+.1f} MiB (target: flat, at most {MEMORY_FLAT / 1024:.0f} MiB): "
        f"{'yes' if growth <= MEMORY_FLAT else '**no**'}.",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=3, help="seconds of wrk a run (3)")
    parser.add_argument("--rounds", type=int, default=8, help="interleaved rounds (8)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (32)")
    parser.add_argument("--mounts", type=int, default=200, help="mounts of the long table (200)")
    parser.add_argument("--memory-requests", type=int, default=100_000, help="(100000)")
    parser.add_argument("--memory-every", type=int, default=10_000, help="RSS sampled (10000)")
    parser.add_argument("--server-cpu", default="0", help="CPU list for the servers (0)")
    parser.add_argument("--wrk-cpu", default="1", help="CPU list for wrk (1)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where results go")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed (Debian package `wrk`; `make wrk`)", file=sys.stderr)
        return 1
    load_before = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="request-bench-") as tmp, ExitStack() as stack:
        folder = Path(tmp)
        status_lua, batch_lua = folder / "status.lua", folder / "batch.lua"
        status_lua.write_text(STATUS_LUA)
        batch_lua.write_text(BATCH_LUA)
        ports = {n: free_port() for n in ("starlette", "a2wsgi", "portal", "many", "original")}
        settings = {}
        proxied = SETTINGS + UPSTREAM.format(port=ports["starlette"])  # the bare server upstream
        for name, mounts in (("portal", proxied), ("many", many_mounts(args.mounts))):
            (folder / name).mkdir()
            settings[name] = write_settings(folder / name, ports[name], mounts)
            cli(settings[name], "db", "upgrade")
            cli(settings[name], "users", "add", USER, "--level", "ea", stdin=PASSWORD + "\n")
        private_key, public_file = new_key(folder)
        log = folder / "servers.log"
        processes = {
            name: stack.enter_context(uvicorn(app, ports[name], env, *UVICORN, log=log))
            for name, app, env in (
                ("starlette", "bench.hello:starlette", {}),
                ("a2wsgi", "bench.hello:flask_a2wsgi", {}),
                ("portal", "portal_asgi:app", {"PORTAL_SETTINGS": str(settings["portal"])}),
                ("many", "portal_asgi:app", {"PORTAL_SETTINGS": str(settings["many"])}),
            )
        }
        for process in processes.values():
            pin(process.pid, args.server_cpu)
        # started pinned, so that the worker gunicorn forks is pinned too
        gunicorn = ["taskset", "-c", args.server_cpu, str(BIN / "gunicorn"), *GUNICORN]
        gunicorn += ["-b", f"127.0.0.1:{ports['original']}", "--pythonpath", str(ROOT / "bench")]
        gunicorn.append("original:create_app()")
        processes["original"] = stack.enter_context(
            server(gunicorn, ports["original"], {KEY_ENV: str(public_file)}, log=log)
        )
        servers = {name: (ports[name], process.pid) for name, process in processes.items()}
        cookie = login(f"http://127.0.0.1:{ports['portal']}", USER, PASSWORD)
        cookie_many = login(f"http://127.0.0.1:{ports['many']}", USER, PASSWORD)
        original = session_cookie(private_key, USER)
        chosen = variants(servers, cookie, cookie_many, original, args.mounts)
        for variant in chosen:
            check(variant)
        print(f"{len(chosen)} variants answer as they should; measuring", file=sys.stderr)
        samples = measure(
            chosen, args.rounds, args.seconds, args.connections, args.wrk_cpu, status_lua
        )
        print("memory run", file=sys.stderr)
        rss = memory(
            processes["portal"].pid,
            ports["portal"],
            cookie,
            args.memory_requests,
            args.memory_every,
            args.wrk_cpu,
            batch_lua,
        )
    about: dict[str, object] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": shlex.join(["python", *sys.argv]),
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model(),
        "load_before": load_before,
        "load_after": ", ".join(f"{x:.1f}" for x in os.getloadavg()),
        "python": platform.python_version(),
        **{name: version(name) for name in ("uvicorn", "gunicorn", "starlette", "flask", "a2wsgi")},
        "uvicorn_options": " ".join(UVICORN) + " --log-level warning --no-access-log",
        "gunicorn_options": " ".join(GUNICORN),
        "server_cpu": args.server_cpu,
        "wrk_cpu": args.wrk_cpu,
        "connections": args.connections,
        "rounds": args.rounds,
        "seconds": args.seconds,
        "mounts": args.mounts,
    }
    table, ratios = summarise(chosen, samples, args.mounts)
    report = markdown(chosen, table, ratios, rss, about)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "request-path.md").write_text(report)
    growth = rss[-1]["rss_kib"] - rss[0]["rss_kib"]
    data = {
        "about": about,
        "summary": table,
        "ratios": [asdict(r) | {"met": r.met} for r in ratios],
        "memory": {"samples": rss, "growth_kib": growth, "flat": growth <= MEMORY_FLAT},
        "rounds": samples,
    }
    (args.out / "request-path.json").write_text(json.dumps(data, indent=2) + "\n")
    print(report)
    missed = any(not r.met for r in ratios) or growth > MEMORY_FLAT
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    started = time.monotonic()
    code = main()
    print(f"({time.monotonic() - started:.0f} s)")
    sys.exit(code)
