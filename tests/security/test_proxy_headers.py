"""`make run` serves the portal the way docs/security.md requires: uvicorn with
`--no-proxy-headers`, so the portal's `[security] trusted_proxies` alone decides whom to believe
about client addresses. The command line is read from the Makefile, so dropping the flag there
fails this test."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2

from ..servers import ROOT, free_port, settings_text


def make_run_commands(tmp: Path, port: int) -> list[list[str]]:
    """The commands `make run` executes, as make expands them: the virtualenv running these
    tests, loopback, `port`. Setup is not rerun (`-o`: its stamp counts as done)."""
    stamp = tmp / "installed"
    done = subprocess.run(
        [
            "make",
            "--no-print-directory",
            "-n",
            "-o",
            str(stamp),
            "run",
            f"STAMP={stamp}",
            f"BIN={Path(sys.executable).parent}",
            "HOST=127.0.0.1",
            f"PORT={port}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return [shlex.split(line) for line in done.stdout.splitlines() if line.strip()]


@contextmanager
def made_portal(tmp: Path) -> Iterator[str]:
    """The portal as `make run` starts it, in a process of its own; its URL."""
    port = free_port()
    *setup, serve = make_run_commands(tmp, port)
    assert Path(serve[0]).name == "uvicorn", serve
    settings = tmp / "settings.toml"
    settings.write_text(settings_text(tmp, port=port))
    env = {**os.environ, "PORTAL_SETTINGS": str(settings), "PORTAL_ADMIN_PASSWORD": "unused-here"}
    for command in setup:
        done = subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, (command, done.stderr)
    log = tmp / "uvicorn.log"
    with log.open("wb") as output:
        server = subprocess.Popen(serve, cwd=ROOT, env=env, stdout=output, stderr=output)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, log.read_text()
            try:
                if httpx2.get(url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx2.TransportError:
                pass
            assert time.monotonic() < deadline, "the portal did not start:\n" + log.read_text()
            time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=15)


def failed_login(url: str, username: str, forwarded_for: str) -> int:
    headers = {"X-Forwarded-For": forwarded_for}
    with httpx2.Client(base_url=url, follow_redirects=False, timeout=30) as client:
        page = client.get("/auth/login", headers=headers)
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token, page.text
        response = client.post(
            "/auth/login",
            data={
                "username": username,
                "password": "wrong",
                "csrf_token": token.group(1),
                "next": "/",
            },
            headers=headers,
        )
    return response.status_code


def test_make_run_rotating_x_forwarded_for_does_not_escape_the_address_ban(
    tmp_path: Path,
) -> None:
    """ASVS 14.5 / 2.2.1: under `make run` a local process cannot choose its client address by
    header; password spraying with a new X-Forwarded-For each time is still banned."""
    with made_portal(tmp_path) as url:
        statuses = [
            failed_login(url, f"spray-{i}", f"203.0.113.{i + 1}, 198.51.100.{i + 1}")
            for i in range(8)
        ]
    # max_retries = 5 (the default): the fifth failure from the one real address starts the ban
    assert statuses == [401] * 4 + [429] * 4, statuses
