"""`make run` serves the portal the way docs/security.md requires: uvicorn with
`--no-proxy-headers`, so the portal's `[security] trusted_proxies` alone decides whom to believe
about client addresses. The command line is read from the Makefile, so dropping the flag there
fails this test."""

from __future__ import annotations

import itertools
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2

from ..helpers import csrf_token
from ..processes import uvicorn_process
from ..servers import ROOT, free_port, settings_text

ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=.*")


def make_run_commands(tmp: Path, port: int) -> list[str]:
    """The lines `make run` hands the shell, as make expands them (a line continued with `\\`
    joined to the next): the virtualenv running these tests, loopback, `port`, the metrics folder
    in `tmp`. Setup is not rerun (`-o`: its stamp counts as done)."""
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
            f"METRICS_DIR={tmp / 'metrics'}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    lines, pending = [], ""
    for line in done.stdout.splitlines():
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        lines.append(pending + line)
        pending = ""
    return [line for line in lines if line.strip()]


def last_command(line: str) -> list[str]:
    """The words of the last command of a shell line (after its last `;` or `&`): the portal's
    server, which `make run` starts after the demo's remote product."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&")
    lexer.whitespace_split = True
    words: list[str] = []
    for word in lexer:
        words = [] if word in (";", "&", "&&") else [*words, word]
    return words


@contextmanager
def made_portal(tmp: Path) -> Iterator[str]:
    """The portal as `make run` starts it, in a process of its own; its URL."""
    port = free_port()
    *setup, last = make_run_commands(tmp, port)
    words = last_command(last)
    # leading NAME=value words set the server's environment, as the shell reads them
    assignments = list(itertools.takewhile(ASSIGNMENT.fullmatch, words))
    serve = words[len(assignments) :]
    assert Path(serve[0]).name == "uvicorn", serve
    settings = tmp / "settings.toml"
    settings.write_text(settings_text(tmp, port=port))
    env = {**os.environ, "PORTAL_SETTINGS": str(settings), "PORTAL_ADMIN_PASSWORD": "unused-here"}
    for line in setup:
        done = subprocess.run(
            ["sh", "-c", line], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, (line, done.stderr)
    for word in assignments:
        name, _, value = word.partition("=")
        env[name] = value
    url = f"http://127.0.0.1:{port}"
    with uvicorn_process(serve, ready=url + "/healthz", cwd=ROOT, env=env, log=tmp / "uvicorn.log"):
        yield url


def failed_login(url: str, username: str, forwarded_for: str) -> int:
    headers = {"X-Forwarded-For": forwarded_for}
    with httpx2.Client(base_url=url, follow_redirects=False, timeout=30) as client:
        page = client.get("/auth/login", headers=headers)
        response = client.post(
            "/auth/login",
            data={
                "username": username,
                "password": "wrong",
                "csrf_token": csrf_token(page.text),
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
