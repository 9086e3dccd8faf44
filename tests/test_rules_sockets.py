"""WebSockets under the rules inside a mount, through real uvicorn, on SQLite and MariaDB: the
handshake meets the rule of its own path, and an open socket is judged again by the level of
its own path (sockets.py), so lowering a user closes their socket on a raised path (4403) and
leaves the one on the mount's ordinary paths open."""

from __future__ import annotations

import json
from pathlib import Path

from .cli_runner import run_cli
from .rule_product import SECRETS
from .servers import serve
from .test_websockets import WS_IMPLS, assert_open, close_code, open_socket, refused, session_cookie

MOUNTS = """
[[mount]]
path = "/ruled"
app = "tests.rule_product:app"
level = "ea"
rules = [{ path = "/admin", level = "admin" }, { path = "/debug", block = true }]
"""


def test_sockets_follow_the_rules(tmp_path: Path, database_url: str) -> None:
    with serve(tmp_path, ws=WS_IMPLS[-1], mounts=MOUNTS, database_url=database_url) as portal:
        portal.add_level_users()
        ea, admin = session_cookie(portal, "user-ea"), session_cookie(portal, "user-admin")
        # the handshake: a raised path by the answers table, a blocked one 404 like an absent one
        assert refused(portal, "/ruled/admin/ws")[0] == 401
        status, body = refused(portal, "/ruled/admin/ws", cookie=ea)
        assert status == 403 and SECRETS["/admin"].encode() not in body
        status, body = refused(portal, "/ruled/debug/ws", cookie=admin)
        assert status == 404 and SECRETS["/debug"].encode() not in body
        assert refused(portal, "/ruled/DEBUG/ws", cookie=admin)[0] == 404
        assert refused(portal, "/ruled/Admin/ws", cookie=ea)[0] == 403
        with (
            open_socket(portal, "/ruled/admin/ws", cookie=admin) as raised,
            open_socket(portal, "/ruled/ws", cookie=admin) as ordinary,
        ):
            greeting = json.loads(raised.recv(timeout=5))
            assert greeting["portal"] == {"mount": "/ruled", "level": "admin"}
            assert greeting["secrets"] == [SECRETS["/admin"]]
            assert json.loads(ordinary.recv(timeout=5))["portal"]["level"] == "ea"
            # the live re-check: the level of the socket's own path
            done = run_cli(portal.settings_file, "users", "set-level", "user-admin", "devel")
            assert done.returncode == 0, done.stderr
            assert close_code(raised) == 4403
            assert_open(ordinary)
