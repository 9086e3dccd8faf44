"""What the benchmarks share: free loopback ports, uvicorn (or another server) in a subprocess and
the CPU time it used, a portal settings file and its CLI, signing in through the login form, and
the p99 of a sample."""

from __future__ import annotations

import os
import re
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_settings(tmp: Path, port: int, rest: str) -> Path:
    """A settings file for a portal on `port`, its database and key in `tmp`; `rest` holds the
    other tables (mounts...)."""
    file = tmp / "settings.toml"
    file.write_text(f"""
[portal]
title = "Bench"
base_url = "http://127.0.0.1:{port}"
database_url = "sqlite+aiosqlite:///{tmp / "portal.db"}"
key_file = "{tmp / "key.pem"}"
app_dir = "{ROOT}"
{rest}""")
    return file


def cli(settings: Path, *args: str, stdin: str = "") -> str:
    """Run `portal-asgi`; its standard output."""
    done = subprocess.run(
        [str(BIN / "portal-asgi"), "--settings", str(settings), *args],
        input=stdin,
        text=True,
        check=True,
        capture_output=True,
        env={**os.environ, "PORTAL_ADMIN_PASSWORD": "bench-admin-not-secret"},
    )
    return done.stdout


@contextmanager
def uvicorn(
    app: str, port: int, env: dict[str, str], *options: str, log: Path | None = None
) -> Iterator[subprocess.Popen[str]]:
    """`uvicorn app` on 127.0.0.1:`port`, one worker, until it answers HTTP; stopped on exit.
    Its standard error goes to `log` when given (the audit log's JSON lines, warnings)."""
    command = [str(BIN / "uvicorn"), app, "--host", "127.0.0.1", "--port", str(port), *options]
    command += ["--log-level", "warning", "--no-access-log", "--app-dir", str(ROOT)]
    with server(command, port, env, log=log) as process:
        yield process


@contextmanager
def server(
    command: list[str], port: int, env: dict[str, str], *, log: Path | None = None
) -> Iterator[subprocess.Popen[str]]:
    """Any HTTP server `command` listening on 127.0.0.1:`port`, run from the repository root,
    until it answers HTTP; stopped on exit (SIGTERM). Its standard error goes to `log`."""
    stderr = log.open("a") if log is not None else None
    process = subprocess.Popen(
        command, cwd=ROOT, env={**os.environ, **env}, text=True, stderr=stderr
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx2.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except httpx2.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    told = log.read_text()[-2000:] if log is not None else ""
                    raise RuntimeError(f"{' '.join(command)} did not start\n{told}") from None
                time.sleep(0.1)
        yield process
    finally:
        process.terminate()
        process.wait(timeout=30)
        if stderr is not None:
            stderr.close()


def login(base: str, username: str, password: str) -> str:
    """Sign in through the login form (CSRF token and all); the session cookie's value."""
    with httpx2.Client(base_url=base, timeout=10) as client:
        page = client.get("/auth/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token, page.text
        fields = {"username": username, "password": password, "csrf_token": token.group(1)}
        answer = client.post("/auth/login", data=fields | {"next": "/"})
        assert answer.status_code == 303, answer.text
        return str(client.cookies["portal_session"])


def cpu_seconds(pid: int) -> float:
    """CPU time (user and system) used so far by `pid`, its threads and its child processes (a
    gunicorn worker, say), from /proc: what a server spent, however busy the rest of the core."""
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:  # the process ended meanwhile
            continue
        number = int(stat.parent.name)
        parents[number] = int(fields[1])
        ticks[number] = int(fields[11]) + int(fields[12])  # utime + stime
    tree, total = [pid], 0
    while tree:
        current = tree.pop()
        total += ticks.get(current, 0)
        tree += [child for child, parent in parents.items() if parent == current]
    return total / os.sysconf("SC_CLK_TCK")


def p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100)[98]
