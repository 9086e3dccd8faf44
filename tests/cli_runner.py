"""Run the `portal-asgi` command line for a test: in process by default (`portal_asgi.cli.main`
with stdin, stdout, stderr, environment and working directory of the call's own), or, with
`process=True`, the real console script next to the test interpreter as a subprocess, the way an
operator runs it. Both give the same `CompletedProcess`."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import subprocess
import sys
import threading
import traceback
from collections.abc import Iterator, Mapping
from pathlib import Path

from portal_asgi import cli

PORTAL_ASGI = Path(sys.executable).parent / "portal-asgi"


def run_cli(
    settings_file: Path | str | None,
    *args: str,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60,
    cwd: Path | None = None,
    process: bool = False,
) -> subprocess.CompletedProcess[str]:
    """`portal-asgi [--settings FILE] ARGS...`, stdin from `stdin` (or empty, never a terminal),
    text output, run in `cwd` (default: the test's own working directory), with the test's
    environment less its PORTAL_* variables, plus `env`. `timeout` applies to a subprocess."""
    argv = ["--settings", str(settings_file)] if settings_file is not None else []
    argv += list(args)
    environment = {key: value for key, value in os.environ.items() if not key.startswith("PORTAL_")}
    environment.update(env or {})
    if process:
        return subprocess.run(
            [str(PORTAL_ASGI), *argv],
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            timeout=timeout,
            env=environment,
            cwd=cwd,
            check=False,
        )
    return _in_process(argv, stdin or "", environment, cwd)


def _in_process(
    argv: list[str], stdin: str, environment: Mapping[str, str], cwd: Path | None
) -> subprocess.CompletedProcess[str]:
    """`cli.main(argv)` in this process. It runs its own event loop (`asyncio.run`), so from a
    thread that already runs one it is called from a thread of its own."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _call_main(argv, stdin, environment, cwd)
    done: list[subprocess.CompletedProcess[str]] = []
    worker = threading.Thread(target=lambda: done.append(_call_main(argv, stdin, environment, cwd)))
    worker.start()
    worker.join()
    return done[0]


def _call_main(
    argv: list[str], stdin: str, environment: Mapping[str, str], cwd: Path | None
) -> subprocess.CompletedProcess[str]:
    out, err = io.StringIO(), io.StringIO()
    with (
        _environment(environment),
        contextlib.chdir(cwd) if cwd is not None else contextlib.nullcontext(),
        _stdin(io.StringIO(stdin)),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        try:
            code = cli.main(argv)
        except SystemExit as stop:  # argparse: --help, usage errors
            code = _exit_status(stop.code, err)
        except Exception:  # what the interpreter would print before exiting with 1
            traceback.print_exc(file=err)
            code = 1
    return subprocess.CompletedProcess(["portal-asgi", *argv], code, out.getvalue(), err.getvalue())


def _exit_status(code: object, err: io.StringIO) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=err)
    return 1


@contextlib.contextmanager
def _environment(environment: Mapping[str, str]) -> Iterator[None]:
    """`os.environ` is `environment` for the call (the command line reads PORTAL_SETTINGS and
    `env:` values from it), and what it was before afterwards. Only the variables that differ
    are touched: servers of other tests may run in threads of this process."""
    saved = {key: os.environ.get(key) for key in {*os.environ, *environment}}
    changed = {key for key, value in saved.items() if environment.get(key) != value}
    try:
        for key in changed:
            if key in environment:
                os.environ[key] = environment[key]
            else:
                del os.environ[key]
        yield
    finally:
        for key in changed:
            value = saved[key]
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _stdin(replacement: io.StringIO) -> Iterator[None]:
    saved = sys.stdin
    sys.stdin = replacement
    try:
        yield
    finally:
        sys.stdin = saved


def mint_token(settings_file: Path | str, username: str, *extra: str) -> str:
    """`portal-asgi token mint NAME`: the token is alone on the last line of stdout."""
    done = run_cli(settings_file, "token", "mint", username, *extra)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines, done
    return lines[-1]
