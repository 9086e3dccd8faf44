"""Settings reload (reload.py, changes.py), in process: what a new file changes, what it may not
change, and a portal driven through its lifespan that swaps mounts, levels and titles, refuses a
broken file and keeps serving, starts and stops product lifespans, and lets a request in flight
finish on the configuration it began under."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

from portal_asgi import Portal, load_settings
from portal_asgi.changes import Changes, MountChange, compare, needs_restart, same_app
from portal_asgi.reload import Reloader
from portal_asgi.sockets import RELOADED
from portal_asgi.types import Message

from . import reload_products
from .asgi import http_scope, request, started
from .servers import serve, settings_text
from .test_websockets import close_code

QUIET = "watch_settings = false"  # these tests reload by hand: no watcher racing them


def mount(path: str, app: str = "where", level: str = "public", extra: str = "") -> str:
    return (
        f'[[mount]]\npath = "{path}"\napp = "tests.reload_products:{app}"\n'
        f'level = "{level}"\n{extra}\n'
    )


BEFORE = mount("/keep", extra='title = "Keep"') + mount("/old") + mount("/lvl")
AFTER = mount("/keep", extra='title = "Kept"') + mount("/lvl", level="ea") + mount("/new")


def write(
    tmp: Path, mounts: str, *, extra_portal: str = QUIET, title: str = "", **settings: Any
) -> None:
    text = settings_text(tmp, mounts=mounts, extra_portal=extra_portal, **settings)
    if title:
        text = text.replace('title = "Test Portal"', f"title = {title!r}", 1)
    (tmp / "settings.toml").write_text(text)


def run(scenario: Coroutine[None, None, None]) -> None:
    asyncio.run(scenario)


def reloader_of(portal: Portal) -> Reloader:
    assert portal.reloader is not None
    return portal.reloader


async def eventually(condition: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


# what changed, and what may not change


def test_compare_names_mounts_added_removed_and_changed(tmp_path: Path) -> None:
    write(tmp_path, BEFORE)
    old = load_settings(tmp_path / "settings.toml")
    write(tmp_path, AFTER, title="Renamed")
    new = load_settings(tmp_path / "settings.toml")
    changes = compare(old, new)
    assert changes == Changes(
        added=("/new",),
        removed=("/old",),
        # /lvl moved from third to second in the file: a position is not a change
        changed=(MountChange("/keep", ("title",)), MountChange("/lvl", ("level",))),
        portal=("portal.title",),
    )
    assert changes.summary() == (
        "added /new; removed /old; changed /keep (title), /lvl (level); changed portal.title"
    )
    assert needs_restart(old, new) == []
    assert not compare(old, old) and compare(old, old).summary() == "no changes"


def test_keys_outside_mounts_need_a_restart_and_are_named(tmp_path: Path) -> None:
    write(tmp_path, BEFORE)
    old = load_settings(tmp_path / "settings.toml")
    write(
        tmp_path,
        BEFORE + "\n[security]\nmax_retries = 9\n\n[metrics]\nport = 9109\n",
        extra_portal=QUIET + '\nlevels = ["stable", "ea", "admin"]',
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'other.db'}",
    )
    new = load_settings(tmp_path / "settings.toml")
    assert needs_restart(old, new) == [
        "portal.levels",
        "portal.database_url",
        "security.max_retries",
        "metrics.port",
    ]


def test_only_route_keys_keep_a_running_app(tmp_path: Path) -> None:
    write(tmp_path, mount("/a", extra='title = "A"'))
    old = load_settings(tmp_path / "settings.toml").mounts[0]
    write(tmp_path, mount("/a", level="ea", extra='title = "B"\ndescription = "x"\ncsrf = false'))
    assert same_app(old, load_settings(tmp_path / "settings.toml").mounts[0])
    write(tmp_path, mount("/a", app="slow"))
    assert not same_app(old, load_settings(tmp_path / "settings.toml").mounts[0])
    write(tmp_path, mount("/a", extra="threads = 3"))  # a new thread pool: a new bridge
    assert not same_app(old, load_settings(tmp_path / "settings.toml").mounts[0])


# a portal reloading


def test_a_good_file_swaps_mounts_levels_and_titles(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with started(tmp_path, mounts=BEFORE, extra_portal=QUIET) as (portal, runtime):
            reloader = reloader_of(portal)
            assert runtime.reloader is reloader and reloader.state.generation == 1
            keep = {p.mount.path: p for p in runtime.products}["/keep"].app
            assert (await request(portal, "/old/x")).status == 200
            write(tmp_path, AFTER, title="Renamed Portal")

            result = await reloader.reload()

            assert result.applied and result.trigger == "admin" and not result.error
            assert result.changes.added == ("/new",) and result.changes.removed == ("/old",)
            new = json.loads((await request(portal, "/new/x")).body)
            assert new["mount"] == "/new" and new["level"] == "public"
            assert (await request(portal, "/old/x")).status == 404
            assert (await request(portal, "/lvl/x")).status == 401  # now ea: sign in first
            assert (await request(portal, "/keep/x")).status == 200
            assert "Renamed Portal" in (await request(portal, "/auth/login")).body.decode()
            # the runtime in force is the new one, and it still leads to the reloader
            assert portal.runtime is reloader.runtime and portal.runtime.reloader is reloader
            assert portal.runtime.db is runtime.db and portal.runtime.directory is runtime.directory
            assert portal.runtime.policy.level("/lvl") == "ea"
            titles = {p.mount.path: p.mount.title for p in portal.runtime.products}
            assert titles == {"/keep": "Kept", "/lvl": "lvl", "/new": "new"}
            # a title is not a new app: the running one stays
            assert {p.mount.path: p for p in portal.runtime.products}["/keep"].app is keep
            state = reloader.state
            assert (state.generation, state.loaded_by, state.changes) == (
                2,
                "admin",
                result.changes,
            )
            assert state.last_error is None and not state.failing
            assert state.file == str((tmp_path / "settings.toml").resolve())
            json.dumps(state.as_json()), json.dumps(result.as_json())  # the admin API's shapes

    run(scenario())


BROKEN = {
    "syntax": ("[[mount]\npath = ", "(syntax): not valid TOML"),
    "level": (mount("/new", level="nobody"), "mount[1].level: unknown level 'nobody'"),
    "import": (
        mount("/keep") + mount("/new", app="missing"),
        "mount[2].app: 'tests.reload_products:missing' does not import",
    ),
    "restart": (
        "",  # with another base_url below
        "portal.base_url: cannot change while the portal runs (restart it to apply)",
    ),
}


@pytest.mark.parametrize("broken", sorted(BROKEN))
def test_a_broken_file_is_refused_and_the_old_configuration_keeps_serving(
    broken: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    text, problem = BROKEN[broken]
    file = tmp_path / "settings.toml"

    async def scenario() -> None:
        async with started(tmp_path, mounts=BEFORE, extra_portal=QUIET) as (portal, _):
            reloader = reloader_of(portal)
            if broken == "syntax":
                file.write_text(text)
            elif broken == "restart":
                write(tmp_path, AFTER, base_url="http://127.0.0.1:9999")
            else:
                write(tmp_path, text)
            with caplog.at_level(logging.ERROR, logger="portal_asgi.reload"):
                result = await reloader.reload()
            assert not result.applied and result.error.startswith(f"{file}: {problem}"), result
            assert not result.changes
            logged = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
            assert len(logged) == 1 and result.error in logged[0], logged
            # nothing of the new file serves; everything of the old one does
            assert (await request(portal, "/old/x")).status == 200
            assert (await request(portal, "/new/x")).status == 404
            assert (await request(portal, "/lvl/x")).status == 200
            state = reloader.state
            assert (state.generation, state.failing) == (1, True)
            assert state.last_error == result.error and state.last_error_at == result.at

            write(tmp_path, AFTER)  # fixed: applies, and the error stays on record
            fixed = await reloader.reload("file")
            assert fixed.applied and (await request(portal, "/new/x")).status == 200
            state = reloader.state
            assert (state.generation, state.failing, state.loaded_by) == (2, False, "file")
            assert state.last_error == result.error

    run(scenario())


def test_lifespans_start_with_a_mount_and_stop_without_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reload_products.EVENTS.clear()

    async def scenario() -> None:
        async with started(tmp_path, mounts=BEFORE, extra_portal=QUIET) as (portal, _):
            reloader = reloader_of(portal)
            monkeypatch.setenv("RELOAD_FAIL_STARTUP", "1")
            write(tmp_path, BEFORE + mount("/lasting", app="lasting"))
            failed = await reloader.reload()
            assert not failed.applied
            assert "mount[4].app: a product failed to start: no model to load" in failed.error
            assert (await request(portal, "/lasting/")).status == 404
            monkeypatch.delenv("RELOAD_FAIL_STARTUP")

            assert (await reloader.reload()).applied
            assert reload_products.EVENTS == ["lasting startup"]
            assert (await request(portal, "/lasting/")).status == 200
            # moved to another path: the same app object, still running, not started twice
            write(tmp_path, BEFORE + mount("/moved", app="lasting"))
            assert (await reloader.reload()).changes.added == ("/moved",)
            assert (await request(portal, "/moved/")).status == 200
            write(tmp_path, BEFORE)
            assert (await reloader.reload()).changes.removed == ("/moved",)
            await eventually(lambda: reload_products.EVENTS[-1:] == ["lasting shutdown"])
            assert reload_products.EVENTS == ["lasting startup", "lasting shutdown"]

    run(scenario())
    assert reload_products.EVENTS == ["lasting startup", "lasting shutdown"]  # not twice


async def _in_flight(portal: Portal, path: str) -> tuple[asyncio.Task[None], list[Message]]:
    """A GET whose answer has begun (its first body part sent) and not ended."""
    sent: list[Message] = []
    begun = asyncio.Event()
    given = False

    async def receive() -> Message:
        nonlocal given
        if given:
            await asyncio.Event().wait()
        given = True
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)
        if message["type"] == "http.response.body":
            begun.set()

    scope = http_scope("GET", path, [(b"host", b"127.0.0.1:8000")])
    task = asyncio.create_task(portal(scope, receive, send))
    await asyncio.wait_for(begun.wait(), 10)
    return task, sent


def test_a_request_in_flight_finishes_before_its_product_shuts_down(tmp_path: Path) -> None:
    reload_products.EVENTS.clear()
    mounts = mount("/slow", app="slow") + mount("/gate", app="gate") + mount("/lvl")

    async def scenario() -> None:
        async with started(tmp_path, mounts=mounts, extra_portal=QUIET) as (portal, _):
            task, sent = await _in_flight(portal, "/slow/one")
            write(tmp_path, mount("/gate", app="gate") + mount("/lvl", level="admin"))
            assert (await reloader_of(portal).reload()).applied
            assert (await request(portal, "/slow/two")).status == 404
            assert (await request(portal, "/lvl/x")).status == 401
            # a request's worth of turns of the loop later, still inside the old product,
            # whose lifespan waits for it
            assert not task.done() and reload_products.EVENTS == ["slow startup"]
            assert (await request(portal, "/gate/one")).status == 200
            await asyncio.wait_for(task, 10)
            assert sent[0]["status"] == 200
            assert b"".join(m.get("body", b"") for m in sent[1:]) == b"started\nfinished\n"
            await eventually(lambda: reload_products.EVENTS == ["slow startup", "slow shutdown"])

    run(scenario())


def test_the_file_changing_on_disk_reloads(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with started(tmp_path, mounts=BEFORE, extra_portal="") as (portal, _):
            reloader = reloader_of(portal)
            write(tmp_path, AFTER, extra_portal="")
            await eventually(lambda: reloader.state.generation == 2, within=15)
            assert reloader.state.loaded_by == "file"
            assert (await request(portal, "/new/x")).status == 200
            write(tmp_path, mount("/new", level="nobody"), extra_portal="")
            await eventually(lambda: reloader.state.failing, within=15)
            assert "mount[1].level: unknown level 'nobody'" in (reloader.state.last_error or "")
            assert reloader.state.generation == 2
            assert (await request(portal, "/keep/x")).status == 200

    run(scenario())


def test_sockets_follow_a_reload(tmp_path: Path) -> None:
    """Open sockets: on a removed mount closed with 1012; on a mount whose level the file
    raised, judged again at once (anonymous: 4401); elsewhere left open."""

    def echo(path: str, level: str = "public") -> str:
        return f'[[mount]]\npath = "{path}"\napp = "products.echo.app:app"\nlevel = "{level}"\n\n'

    with serve(tmp_path, mounts=echo("/stay") + echo("/gone") + echo("/raise")) as running:
        with (
            connect(running.ws_url + "/stay/ws", open_timeout=10) as stay,
            connect(running.ws_url + "/gone/ws", open_timeout=10) as gone,
            connect(running.ws_url + "/raise/ws", open_timeout=10) as raised,
        ):
            for ws in (stay, gone, raised):
                json.loads(ws.recv(timeout=5))  # the greeting
            after = echo("/stay") + echo("/raise", level="ea")
            port = int(running.url.rsplit(":", 1)[1])
            text = settings_text(tmp_path, mounts=after, port=port)
            (tmp_path / "settings.toml").write_text(text)
            assert close_code(gone, within=15) == RELOADED
            assert close_code(raised, within=5) == 4401
            stay.send("still here?")
            assert stay.recv(timeout=5) == "still here?"
