"""WSGI bridge benchmark: throughput and latency of the Flask test product's `GET /whoami` on plain
a2wsgi, on the portal's bridge (bridge.py), and through the portal (a public mount, and a mount
that needs an API token), measured with wrk.

Each variant is its own uvicorn process (httptools, one worker) pinned to one core with taskset;
wrk runs pinned to another core, so that the load generator never takes the server's CPU. The
variants run interleaved, round after round, and the report gives the median of the rounds.
Results go to bench/results/wsgi-bridge.md and .json. Usage: `make bench`, or
`python bench/wsgi_bench.py --rounds 5 --duration 5 --connections 16`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

from common import ROOT, cli, cpu_seconds, free_port, uvicorn, write_settings

USER = "bench"
SETTINGS = """
[[mount]]
path = "/open"
app = "products.test.app:app"
level = "public"

[[mount]]
path = "/test"
app = "products.test.app:app"
level = "ea"
"""
RESULTS = ROOT / "bench" / "results"
# wrk calls done() once at the end: one JSON line with what the report needs (latency in µs).
REPORT_LUA = """
done = function(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "seconds": %f, "p50": %d, "p90": %d, "p99": %d, ' ..
    '"status_errors": %d, "socket_errors": %d}\\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), errors.status, errors.connect + errors.read + errors.write
      + errors.timeout))
end
"""


@dataclass(frozen=True)
class Variant:
    key: str
    name: str
    port: int
    path: str
    headers: tuple[str, ...] = ()
    status: int = 200  # what it must answer; handed to the wrk script (`-- STATUS`) to check
    pid: int = 0  # the server's process: when given, its CPU time during the run is counted too


def pin(pid: int, cpu: str) -> None:
    """Every thread of `pid` (and so every thread it starts later) on `cpu`."""
    subprocess.run(["taskset", "-a", "-p", "-c", cpu, str(pid)], check=True, capture_output=True)


def run_wrk(
    variant: Variant, seconds: int, connections: int, cpu: str, script: Path
) -> dict[str, float]:
    command = ["taskset", "-c", cpu, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s"]
    command += ["-s", str(script), "--timeout", "10s"]
    for header in ("Accept: application/json", *variant.headers):
        command += ["-H", header]
    command += [f"http://127.0.0.1:{variant.port}{variant.path}", "--", str(variant.status)]
    used = cpu_seconds(variant.pid) if variant.pid else 0.0
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    used = cpu_seconds(variant.pid) - used if variant.pid else 0.0
    line = next(x for x in done.stdout.splitlines() if x.startswith("WRK_JSON "))
    figures: dict[str, float] = json.loads(line.removeprefix("WRK_JSON "))
    if figures["status_errors"] or figures["socket_errors"] or not figures["requests"]:
        raise RuntimeError(f"{variant.name}: wrk saw errors: {figures}\n{done.stdout}")
    figures["rps"] = figures["requests"] / figures["seconds"]
    if used:  # requests a second of the server's CPU: steadier than rps on a shared core
        figures["server_cpu"], figures["rps_cpu"] = used, figures["requests"] / used
    return figures


def measure(
    variants: list[Variant], rounds: int, seconds: int, connections: int, cpu: str, script: Path
) -> dict[str, list[dict[str, float]]]:
    """Every variant once a round, the order rotating and reversing, after a warm-up each."""
    samples: dict[str, list[dict[str, float]]] = {v.key: [] for v in variants}
    for variant in variants:
        run_wrk(variant, 1, connections, cpu, script)
    for number in range(rounds):
        shift = number % len(variants)
        order = variants[shift:] + variants[:shift]
        for variant in order if number % 2 == 0 else list(reversed(order)):
            samples[variant.key].append(run_wrk(variant, seconds, connections, cpu, script))
    return samples


def summarise(
    variants: list[Variant], samples: dict[str, list[dict[str, float]]]
) -> dict[str, dict[str, float]]:
    table: dict[str, dict[str, float]] = {}
    base = samples["a2wsgi"]
    for variant in variants:
        runs = samples[variant.key]
        row = {f: statistics.median(run[f] for run in runs) for f in ("rps", "p50", "p90", "p99")}
        # the ratio of each round against a2wsgi's run in the same round, then their median
        row["rps_vs_a2wsgi"] = statistics.median(
            r["rps"] / b["rps"] for r, b in zip(runs, base, strict=True)
        )
        row["p50_vs_a2wsgi"] = statistics.median(
            r["p50"] / b["p50"] for r, b in zip(runs, base, strict=True)
        )
        table[variant.key] = row
    return table


def markdown(
    variants: list[Variant], table: dict[str, dict[str, float]], about: dict[str, object]
) -> str:
    lines = [
        "# WSGI bridge benchmark",
        "",
        f"{about['date']}; {about['cpus']} CPUs ({about['cpu_model']}), load average before the run "
        f"{about['load_before']}, after {about['load_after']}. Python {about['python']}, "
        f"uvicorn {about['uvicorn']} (httptools, uvloop), Flask {about['flask']}, a2wsgi {about['a2wsgi']}.",
        f"Server on CPU {about['server_cpu']}, wrk on CPU {about['wrk_cpu']} (`-t1 -c{about['connections']}`), "
        f"{about['rounds']} interleaved rounds of {about['seconds']} s; medians of the rounds. "
        "Ratios are medians of each round's ratio to a2wsgi in the same round.",
        "",
        "| variant | requests/s | vs a2wsgi | p50 | p90 | p99 | p50 vs a2wsgi |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for variant in variants:
        row = table[variant.key]
        lines.append(
            f"| {variant.name} | {row['rps']:.0f} | {row['rps_vs_a2wsgi']:.2f}x | "
            f"{row['p50'] / 1000:.2f} ms | {row['p90'] / 1000:.2f} ms | {row['p99'] / 1000:.2f} ms | "
            f"{row['p50_vs_a2wsgi']:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (5)")
    parser.add_argument("--duration", type=int, default=5, help="seconds of wrk a run (5)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (16)")
    parser.add_argument("--server-cpu", default="0", help="CPU list for the servers (0)")
    parser.add_argument("--wrk-cpu", default="1", help="CPU list for wrk (1)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where results go")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print(
            "wrk is not installed (Debian package `wrk`; `make bench` installs it)", file=sys.stderr
        )
        return 1
    load_before = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    options = ("--http", "httptools", "--timeout-keep-alive", "60")
    with tempfile.TemporaryDirectory(prefix="wsgi-bench-") as tmp:
        script = Path(tmp) / "report.lua"
        script.write_text(REPORT_LUA)
        ports = {name: free_port() for name in ("a2wsgi", "bridge", "portal")}
        settings = write_settings(Path(tmp), ports["portal"], SETTINGS)
        cli(settings, "db", "upgrade")
        cli(settings, "users", "add", USER, "--level", "ea", stdin="bench-password-not-secret\n")
        token = cli(settings, "token", "mint", USER, "--ttl", "1h").strip().splitlines()[-1]
        log = Path(tmp) / "servers.log"
        env = {"PORTAL_SETTINGS": str(settings)}
        variants = [
            Variant("a2wsgi", "Flask on a2wsgi, bare", ports["a2wsgi"], "/whoami"),
            Variant("bridge", "Flask on the bridge, bare", ports["bridge"], "/whoami"),
            Variant(
                "portal_public",
                "Flask through the portal, public mount",
                ports["portal"],
                "/open/whoami",
            ),
            Variant(
                "portal_token",
                "Flask through the portal, API token",
                ports["portal"],
                "/test/whoami",
                (f"Authorization: Bearer {token}",),
            ),
        ]
        with (
            uvicorn("bench.bare:flask_a2wsgi", ports["a2wsgi"], {}, *options, log=log) as a2wsgi,
            uvicorn("bench.bare:flask", ports["bridge"], {}, *options, log=log) as bridge,
            uvicorn("portal_asgi:app", ports["portal"], env, *options, log=log) as portal,
        ):
            for process in (a2wsgi, bridge, portal):
                pin(process.pid, args.server_cpu)
            samples = measure(
                variants, args.rounds, args.duration, args.connections, args.wrk_cpu, script
            )
    about: dict[str, object] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model(),
        "load_before": load_before,
        "load_after": ", ".join(f"{x:.1f}" for x in os.getloadavg()),
        "python": platform.python_version(),
        "uvicorn": version("uvicorn"),
        "flask": version("flask"),
        "a2wsgi": version("a2wsgi"),
        "server_cpu": args.server_cpu,
        "wrk_cpu": args.wrk_cpu,
        "connections": args.connections,
        "rounds": args.rounds,
        "seconds": args.duration,
    }
    table = summarise(variants, samples)
    report = markdown(variants, table, about)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "wsgi-bridge.md").write_text(report)
    data = {"about": about, "summary": table, "rounds": samples}
    (args.out / "wsgi-bridge.json").write_text(json.dumps(data, indent=2) + "\n")
    print(report)
    return 0


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


if __name__ == "__main__":
    started = time.monotonic()
    code = main()
    print(f"({time.monotonic() - started:.0f} s)")
    sys.exit(code)
