"""Settings reload in real `uvicorn portal_asgi:app --workers 2` processes: the file changing on
disk reaches both workers (a mount added answers on each, a mount removed answers 404, a level
change applies), a broken file changes nothing and is reported by each worker, SIGHUP to the
workers reloads them in place, and a request in flight finishes on the configuration it began
under."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx2

from .helpers import JSON
from .processes import PortalProcess, portal_process
from .servers import default_mounts, settings_text
from .test_reload import AFTER, BEFORE, QUIET, mount


def until(condition: Callable[[], bool], what: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"not within {within:.0f} s: {what}"
        time.sleep(0.05)


def children_of(portal: PortalProcess) -> set[int]:
    """Every process uvicorn's supervisor started: the workers, and multiprocessing's helper."""
    pid = portal.pid
    return {int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


def workers_of(portal: PortalProcess) -> set[int]:
    """The worker processes of uvicorn's supervisor (not multiprocessing's resource tracker)."""
    return {
        child
        for child in children_of(portal)
        if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes()
    }


def rewrite(portal: PortalProcess, tmp: Path, mounts: str, extra_portal: str = "") -> None:
    """The settings file as `portal_process` wrote it, with other mounts after the default ones."""
    text = settings_text(
        tmp,
        database_url=portal.database_url,
        mounts=default_mounts() + mounts,
        port=int(portal.url.rsplit(":", 1)[1]),
        extra_portal=extra_portal,
    )
    (tmp / "settings.toml").write_text(text)


def answering(portal: PortalProcess, path: str, workers: set[int]) -> None:
    """Until every worker has answered `path` itself (each request on a connection of its own,
    so that the kernel hands them to either worker)."""
    seen: set[int] = set()

    def all_seen() -> bool:
        answer = httpx2.get(portal.url + path, timeout=10)
        if answer.status_code == 200:
            seen.add(answer.json()["pid"])
        return seen == workers

    until(all_seen, f"{path} answered by workers {sorted(workers)}, seen {sorted(seen)}")


def statuses(portal: PortalProcess, path: str, times: int = 20) -> set[int]:
    return {
        httpx2.get(portal.url + path, headers=JSON, timeout=10).status_code for _ in range(times)
    }


def log_lines(portal: PortalProcess, pattern: str) -> list[str]:
    return [line for line in portal.log.read_text().splitlines() if re.search(pattern, line)]


def test_a_broken_file_changes_nothing_and_a_good_one_reaches_both_workers(
    tmp_path: Path,
) -> None:
    with portal_process(tmp_path, workers=2, mounts=BEFORE, log_level="info") as portal:
        until(lambda: len(workers_of(portal)) == 2, "two workers")
        workers = workers_of(portal)
        answering(portal, "/old/x", workers)
        first = len(default_mounts().split("[[mount]]"))  # the index of the first mount added

        rewrite(portal, tmp_path, AFTER + mount("/bad", level="nobody"))
        key = f"mount[{first + 3}].level: unknown level 'nobody'"
        refused = (
            f"settings reload refused \\(file\\).*{re.escape(str(tmp_path))}.*{re.escape(key)}"
        )
        until(lambda: len(log_lines(portal, refused)) == 2, "each worker logs the refusal")
        answering(portal, "/old/x", workers)  # both serve the old configuration still
        assert statuses(portal, "/new/x") == {404}
        assert statuses(portal, "/lvl/x") == {200}

        rewrite(portal, tmp_path, AFTER)
        answering(portal, "/new/x", workers)  # a worker that answers has swapped everything
        assert statuses(portal, "/old/x") == {404}
        assert statuses(portal, "/lvl/x") == {401}  # raised to ea
        assert statuses(portal, "/keep/x") == {200}
        applied = "settings reloaded from .* \\(file\\): added /new; removed /old"
        assert len(log_lines(portal, applied)) == 2
        assert workers_of(portal) == workers  # reloaded in place, not restarted


def test_sighup_reloads_each_worker_in_place(tmp_path: Path) -> None:
    """With `watch_settings = false` only a signal reloads: one to each worker, sent as the
    systemd unit's ExecReload sends it. (SIGHUP to uvicorn's supervisor would restart the
    workers instead.)"""
    with portal_process(
        tmp_path, workers=2, mounts=BEFORE, extra_portal=QUIET, log_level="info"
    ) as portal:
        until(lambda: len(workers_of(portal)) == 2, "two workers")
        workers, children = workers_of(portal), children_of(portal)
        # both serving (a worker still starting has no handler yet: SIGHUP would end it)
        answering(portal, "/old/x", workers)
        rewrite(portal, tmp_path, AFTER, extra_portal=QUIET)
        reload = ["pkill", "-HUP", "--parent", str(portal.pid), "--full", "spawn_main"]
        subprocess.run(reload, check=True)
        answering(portal, "/new/x", workers)
        assert statuses(portal, "/old/x") == {404}
        assert statuses(portal, "/lvl/x") == {401}
        assert len(log_lines(portal, "settings reloaded from .* \\(signal\\)")) == 2
        assert children_of(portal) == children  # no worker restarted, the helper unharmed


def test_a_request_in_flight_finishes_on_the_old_configuration(tmp_path: Path) -> None:
    events = tmp_path / "events"
    mounts = mount("/slow", app="slow") + mount("/gate", app="gate") + mount("/lvl")
    with (
        portal_process(
            tmp_path, mounts=mounts, env={"RELOAD_EVENTS": str(events)}, log_level="info"
        ) as portal,
        httpx2.Client(base_url=portal.url, timeout=30) as client,
    ):
        with client.stream("GET", "/slow/one") as response:
            assert response.status_code == 200
            chunks = response.iter_raw()
            assert next(chunks) == b"started\n"  # inside the product now

            rewrite(portal, tmp_path, mount("/gate", app="gate") + mount("/lvl", level="admin"))
            # (not probed on /slow: until the reload, that would wait at the gate too)
            until(lambda: statuses(portal, "/lvl/x", times=1) == {401}, "the reload")
            assert statuses(portal, "/slow/two") == {404}
            # its product is unmounted but waits for the request before it shuts down
            assert "slow shutdown" not in events.read_text()
            assert httpx2.get(portal.url + "/gate/one", timeout=10).status_code == 200
            assert b"".join(chunks) == b"finished\n"
        until(lambda: "slow shutdown" in events.read_text(), "the product's shutdown")
