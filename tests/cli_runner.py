"""Run the real `portal-asgi` command line (the console script next to the test interpreter)
as a subprocess, the way an operator would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PORTAL_ASGI = Path(sys.executable).parent / "portal-asgi"


def run_cli(
    settings_file: Path | str | None,
    *args: str,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """`portal-asgi [--settings FILE] ARGS...`, stdin from `stdin` (or /dev/null), text output,
    run in `cwd` (default: the test's own working directory)."""
    command = [str(PORTAL_ASGI)]
    if settings_file is not None:
        command += ["--settings", str(settings_file)]
    command += list(args)
    environment = {key: value for key, value in os.environ.items() if not key.startswith("PORTAL_")}
    environment.update(env or {})
    return subprocess.run(
        command,
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment,
        cwd=cwd,
        check=False,
    )


def mint_token(settings_file: Path | str, username: str, *extra: str) -> str:
    """`portal-asgi token mint NAME`: the token is alone on the last line of stdout."""
    done = run_cli(settings_file, "token", "mint", username, *extra)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines, done
    return lines[-1]
