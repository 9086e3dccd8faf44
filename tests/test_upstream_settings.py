"""settings.toml for upstream mounts (`upstream =` instead of `app =`): what parses, and one test
per kind of error, each naming the file, the key and the problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from portal_asgi.products import load_products
from portal_asgi.settings import load_settings

from .servers import ROOT
from .test_settings import BASE, refused, write


def upstream(*lines: str, path: str = "/remote") -> str:
    body = "\n".join(lines)
    return f'\n[[mount]]\npath = "{path}"\nlevel = "ea"\n{body}\n'


def test_upstream_mount_parses_with_its_defaults(tmp_path: Path) -> None:
    text = BASE + upstream('upstream = "http://10.0.0.7:9000"')
    (_, remote) = load_settings(write(tmp_path, text), environ={}).mounts
    assert remote.upstream == "http://10.0.0.7:9000"
    assert remote.app == ""
    assert remote.timeout == 30.0
    assert remote.rewrite is False


def test_upstream_mount_with_prefix_timeout_rewrite_and_env(tmp_path: Path) -> None:
    text = BASE + upstream(
        'upstream = "env:HAZARD_URL"', 'timeout = "2m"', "rewrite = true", path="/hazard"
    )
    environ = {"HAZARD_URL": "https://hazard.internal:8443/tool/"}
    (_, remote) = load_settings(write(tmp_path, text), environ=environ).mounts
    assert remote.upstream == "https://hazard.internal:8443/tool"  # no trailing slash
    assert remote.timeout == 120.0
    assert remote.rewrite is True


def test_the_demo_settings_mount_an_upstream() -> None:
    settings = load_settings(ROOT / "settings.toml", environ={})
    remote = {m.path: m for m in settings.mounts}["/remote"]
    assert remote.upstream == "http://127.0.0.1:8001"
    # the command line lists it without serving it
    assert "/remote" in [p.mount.path for p in load_products(settings)]


def test_app_and_upstream_together(tmp_path: Path) -> None:
    text = BASE + upstream('app = "products.test.app:app"', 'upstream = "http://h:1"')
    error = refused(tmp_path, text)
    assert error.key == "mount[2].upstream"
    assert "either app or upstream" in error.problem


def test_neither_app_nor_upstream(tmp_path: Path) -> None:
    error = refused(tmp_path, BASE + upstream())
    assert error.key == "mount[2].app"
    assert "upstream" in error.problem  # says what else would do


def test_websocket_app_with_upstream(tmp_path: Path) -> None:
    text = BASE + upstream('upstream = "http://h:1"', 'websocket = "products.chat.ws:app"')
    error = refused(tmp_path, text)
    assert error.key == "mount[2].websocket"
    assert "not with upstream" in error.problem


@pytest.mark.parametrize("key", ["threads = 4", "max_body_size = 10", 'body_timeout = "5s"'])
def test_flask_bridge_keys_with_upstream(tmp_path: Path, key: str) -> None:
    error = refused(tmp_path, BASE + upstream('upstream = "http://h:1"', key))
    assert error.key == f"mount[2].{key.split()[0]}"
    assert "not with upstream" in error.problem


@pytest.mark.parametrize("key", ['timeout = "5s"', "rewrite = true"])
def test_upstream_keys_on_an_app_mount(tmp_path: Path, key: str) -> None:
    error = refused(tmp_path, BASE + upstream('app = "products.test.app:app"', key))
    assert error.key == f"mount[2].{key.split()[0]}"
    assert "upstream mounts only" in error.problem


@pytest.mark.parametrize(
    "url",
    [
        "ftp://h:21",
        "ws://h:1",
        "10.0.0.7:9000",
        "http://",
        "http://h:99999",
        "http://h:1/a?b=c",
        "http://h:1/#top",
        "http://user:pw@h:1",
        "http://h:1/a/../b",
        "http://h:1/a b",
    ],
)
def test_bad_upstream_url(tmp_path: Path, url: str) -> None:
    error = refused(tmp_path, BASE + upstream(f'upstream = "{url}"'))
    assert error.key == "mount[2].upstream"
    assert repr(url) in error.problem


@pytest.mark.parametrize("value", ['"0s"', '"soon"', "true"])
def test_bad_timeout(tmp_path: Path, value: str) -> None:
    error = refused(tmp_path, BASE + upstream('upstream = "http://h:1"', f"timeout = {value}"))
    assert error.key == "mount[2].timeout"


def test_rewrite_must_be_a_boolean(tmp_path: Path) -> None:
    error = refused(tmp_path, BASE + upstream('upstream = "http://h:1"', 'rewrite = "yes"'))
    assert error.key == "mount[2].rewrite"
    assert "true or false" in error.problem
