"""docs/deploy.md, run: every recipe with the files it ships (deploy/), real processes on
loopback (tests/deploy_harness.py): the systemd unit's uvicorn behind the real nginx with TLS, two
hosts on one MariaDB behind round robin, the backup and restore blocks, and the unit, Dockerfile
and compose file checked."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml
from sqlalchemy.engine import make_url
from websockets.sync.client import connect
from websockets.typing import Origin

from portal_asgi.settings import load_settings

from .deploy_harness import (
    DEPLOY,
    DOC,
    DOC_USER,
    VENV_BIN,
    Certificate,
    Host,
    client,
    doc_cli,
    doc_setup,
    install_host,
    localise,
    run_nginx,
    run_shell,
    run_unit,
    self_signed,
    shell_block,
    sign_in,
    sign_out,
    unit_directives,
    wait_for,
    whoami,
)
from .servers import ROOT, MariaDB, free_port

SPOOFED = "203.0.113.9"  # what a client claims in its own X-Forwarded-For


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    return self_signed(tmp_path_factory.mktemp("tls"))


def audit_events(host: Host) -> list[dict[str, Any]]:
    """`portal-asgi audit tail` through the doc's shell function: the audit table, as JSON."""
    out = doc_cli(host, "portal-asgi audit tail -n 200\n")
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def logged_events(portal_log: Path) -> list[dict[str, Any]]:
    """The audit JSON lines the portal wrote to stderr (what the journal holds)."""
    events = []
    for line in portal_log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            events.append(json.loads(line))
    return events


# -- one host: nginx, TLS, several workers -----------------------------------------------------


def test_one_host_behind_nginx_with_tls_serves_pages_sockets_and_audits_the_client(
    tmp_path: Path, certificate: Certificate
) -> None:
    https_port = free_port()
    origin = f"https://127.0.0.1:{https_port}"
    host = install_host(tmp_path / "host", origin)
    doc_setup(host)
    with (
        run_unit(host, workers=2) as portal,
        run_nginx(tmp_path / "nginx", certificate, [portal.port], https_port=https_port) as nginx,
    ):
        with client(origin, certificate=certificate) as http:
            # a client's own forwarding headers: nginx appends to one and overwrites the other
            http.headers.update({"x-forwarded-for": SPOOFED, "x-forwarded-proto": "http"})
            assert http.get("/readyz").status_code == 200
            assert http.get("/healthz").status_code == 200
            assert http.get("/probe/").status_code == 401  # anonymous: a `denied` event
            sign_in(http)
            page = http.get("/ea/", headers={"accept": "text/html"})
            assert page.status_code == 200
            assert f"Hello, {DOC_USER}" in page.text
            assert http.get("/chat/", headers={"accept": "text/html"}).status_code == 200
            told = http.get("/probe/").json()
            assert told == {
                "port": portal.port,
                "scheme": "https",
                "client": "127.0.0.2",
                "user": DOC_USER,
                "x_forwarded_for": "127.0.0.2",
                "x_forwarded_proto": "https",
            }
            cookie = http.cookies[host.cookie_name]

        with connect(
            f"wss://127.0.0.1:{https_port}/chat/ws",
            ssl=certificate.client_context(),
            source_address=("127.0.0.2", 0),
            additional_headers={"cookie": f"{host.cookie_name}={cookie}"},
            origin=Origin(origin),
            proxy=None,
            open_timeout=20,
        ) as ws:
            joined = json.loads(ws.recv(timeout=10))
            assert (joined["kind"], joined["from"]) == ("joined", DOC_USER)
            ws.send("hello through nginx")
            said = json.loads(ws.recv(timeout=10))
            assert (said["kind"], said["text"]) == ("said", "hello through nginx")

        redirect = httpx2.get(f"http://127.0.0.1:{nginx.http_port}/ea/?x=1", timeout=10)
        assert redirect.status_code == 301
        assert redirect.headers["location"] == "https://127.0.0.1/ea/?x=1"

        def audited() -> bool:
            events = audit_events(host)
            return any(e["event"] == "login" and e["username"] == DOC_USER for e in events) and any(
                e["event"] == "denied" and e["path"] == "/probe/" for e in events
            )

        wait_for(audited, "login and denied events in the audit table")
        events = audit_events(host)
        logins = [e for e in events if e["event"] == "login"]
        denied = [e for e in events if e["event"] == "denied" and e["path"] == "/probe/"]
        # the client's address, as nginx saw it: not nginx's 127.0.0.1, not the client's claim
        assert [e["client"] for e in logins] == ["127.0.0.2"]
        assert [e["client"] for e in denied] == ["127.0.0.2"]
        assert denied[0]["status"] == 401
        # and the same lines on stderr, where the journal and the doc's grep find them
        logged = logged_events(portal.log)
        assert any(e["event"] == "login" and e["client"] == "127.0.0.2" for e in logged)
        assert any(e["event"] == "denied" and e["client"] == "127.0.0.2" for e in logged)


# -- several hosts on one MariaDB --------------------------------------------------------------


def test_two_hosts_on_one_mariadb_share_sessions_and_logouts_behind_round_robin(
    tmp_path: Path, certificate: Certificate, mariadb: MariaDB
) -> None:
    database_url = mariadb.database()
    https_port = free_port()
    origin = f"https://127.0.0.1:{https_port}"
    host_a = install_host(tmp_path / "host-a", origin, database_url)
    host_b = install_host(tmp_path / "host-b", origin, database_url)
    doc_setup(host_a)  # db upgrade and the first user: once, from one host
    try:
        with ExitStack() as running:
            portal_a = running.enter_context(run_unit(host_a))
            # docs/deploy.md: the first host's key, copied to the others before they start
            assert host_a.key_file.exists()
            shutil.copy2(host_a.key_file, host_b.key_file)
            portal_b = running.enter_context(run_unit(host_b))
            portals = (portal_a, portal_b)
            nginx = running.enter_context(
                run_nginx(
                    tmp_path / "nginx",
                    certificate,
                    [portal_a.port, portal_b.port],
                    https_port=https_port,
                )
            )
            with client(origin, certificate=certificate) as http:
                sign_in(http)
                answers = [http.get("/probe/") for _ in range(6)]
                assert [a.status_code for a in answers] == [200] * 6
                assert {a.json()["user"] for a in answers} == {DOC_USER}
                assert {a.json()["port"] for a in answers} == {portal_a.port, portal_b.port}
                cookie = http.cookies[host_a.cookie_name]
                for portal in portals:  # each host, directly: the same session
                    assert whoami(portal.url, host_a.cookie_name, cookie).status_code == 200
                sign_out(http)
            signed_out = time.monotonic()

            def refused_everywhere() -> bool:
                return all(
                    whoami(p.url, host_a.cookie_name, cookie).status_code == 401 for p in portals
                )

            # feed_interval is 2 s; generous for a loaded machine
            wait_for(refused_everywhere, "the logout on both hosts", timeout=20)
            assert time.monotonic() - signed_out < 20

            def both_upstreams_logged() -> bool:
                log = nginx.access_log.read_text() if nginx.access_log.exists() else ""
                return all(f"upstream=127.0.0.1:{p.port}" in log for p in portals)

            wait_for(both_upstreams_logged, "nginx's access log naming both hosts")
    finally:
        mariadb.drop(database_url)


# -- the systemd unit --------------------------------------------------------------------------


def test_systemd_unit_runs_uvicorn_without_proxy_headers_as_its_own_user_hardened() -> None:
    unit = unit_directives()
    (exec_start,) = unit["ExecStart"]
    command = shlex.split(exec_start)
    assert command[0] == "/srv/portal-asgi/.venv/bin/uvicorn"
    assert command[1] == "portal_asgi:app"
    assert "--no-proxy-headers" in command
    assert "--proxy-headers" not in command
    assert command[command.index("--host") + 1] == "127.0.0.1"  # nginx on the same host
    assert unit["User"] == ["portal-asgi"]
    assert unit["Restart"] == ["on-failure"]
    assert unit["StateDirectory"] == ["portal-asgi"]  # /var/lib/portal-asgi: key, SQLite
    assert unit["EnvironmentFile"] == ["/etc/portal-asgi/portal-asgi.env"]
    for hardening in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "PrivateDevices"):
        assert unit[hardening] == ["yes"], hardening
    assert unit["ProtectSystem"] == ["strict"]
    assert unit["CapabilityBoundingSet"] == [""]
    assert unit["WantedBy"] == ["multi-user.target"]


def test_systemd_unit_passes_systemd_analyze(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        if os.environ.get("CI") == "true":
            pytest.fail("systemd-analyze is missing; CI=true requires this check", pytrace=False)
        pytest.skip("systemd-analyze is not installed")
    # verify insists that ExecStart's program exists: the test's uvicorn stands in for the host's
    unit = tmp_path / "portal-asgi.service"
    unit.write_text(
        localise(
            (DEPLOY / "portal-asgi.service").read_text(),
            ("/srv/portal-asgi/.venv/bin/", f"{VENV_BIN}/"),
        )
    )
    verified = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, check=False
    )
    assert verified.returncode == 0, verified.stderr
    # verify only warns about a misspelt value: no warning may name the unit
    assert "portal-asgi.service" not in verified.stderr, verified.stderr
    scored = subprocess.run(
        [analyze, "security", "--offline=true", str(unit)],
        capture_output=True,
        text=True,
        check=False,
    )
    match = re.search(r"Overall exposure level for portal-asgi\.service: ([\d.]+)", scored.stdout)
    assert match, scored.stdout + scored.stderr
    assert float(match.group(1)) <= 2.5, scored.stdout


# -- the container -----------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of deploy/Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (word.upper(), rest.strip())
        for word, _, rest in (line.partition(" ") for line in lines)
        if word and not word.startswith("#")
    ]


def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_dockerfile_runs_uvicorn_without_proxy_headers_as_non_root() -> None:
    steps = dockerfile()
    kinds = [kind for kind, _ in steps]
    assert steps[0][0] == "FROM" and steps[0][1].startswith("python:3.")
    (cmd,) = [json.loads(args) for kind, args in steps if kind == "CMD"]
    assert cmd[:2] == ["uvicorn", "portal_asgi:app"]
    assert "--no-proxy-headers" in cmd
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0"
    (exposed,) = [args for kind, args in steps if kind == "EXPOSE"]
    assert cmd[cmd.index("--port") + 1] == exposed == "8000"
    # non-root from before the command on, and a user the image made
    user = [args for kind, args in steps if kind == "USER"][-1]
    assert user not in ("root", "0")
    assert kinds.index("USER") < kinds.index("CMD")
    assert any(kind == "RUN" and "useradd" in args and user in args for kind, args in steps)
    (healthcheck,) = [args for kind, args in steps if kind == "HEALTHCHECK"]
    assert "/readyz" in healthcheck
    # every file it copies exists in the build context compose.yaml gives it
    context = (DEPLOY / compose()["services"]["portal"]["build"]["context"]).resolve()
    assert context == ROOT
    copies = [shlex.split(args) for kind, args in steps if kind == "COPY"]
    assert copies
    for copy in copies:
        sources = [part for part in copy[:-1] if not part.startswith("--")]
        for source in sources:
            assert (context / source).exists(), f"COPY {source}: not in {context}"
    # the settings it ships are the ones PORTAL_SETTINGS names
    (settings_copy,) = [c for c in copies if c[0] == "deploy/settings.example.toml"]
    envs = " ".join(args for kind, args in steps if kind == "ENV")
    assert f"PORTAL_SETTINGS={settings_copy[-1]}" in envs


def test_compose_pairs_the_portal_with_mariadb_migrated_first() -> None:
    services = compose()["services"]
    portal, migrate, db = services["portal"], services["migrate"], services["mariadb"]
    assert db["image"].startswith("mariadb:")
    assert "healthcheck" in db
    assert any(volume.endswith(":/var/lib/mysql") for volume in db["volumes"])
    for service in (portal, migrate):
        assert (DEPLOY / service["build"]["context"] / service["build"]["dockerfile"]).exists()
    assert migrate["command"] == ["portal-asgi", "db", "upgrade"]
    assert migrate["depends_on"]["mariadb"]["condition"] == "service_healthy"
    assert portal["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert "command" not in portal  # the image's CMD, with --no-proxy-headers
    # the database URL names the compose service and the database and user it creates
    url = make_url(portal["environment"]["PORTAL_DATABASE_URL"])
    assert url.drivername == "mysql+asyncmy"
    assert (url.host, url.port) == ("mariadb", 3306)
    assert url.database == db["environment"]["MARIADB_DATABASE"]
    assert url.username == db["environment"]["MARIADB_USER"]
    # published on loopback only, for the host's nginx, which comes in through the gateway
    assert portal["ports"] == ["127.0.0.1:8000:8000"]
    (network,) = compose()["networks"]["default"]["ipam"]["config"]
    gateway = ipaddress.ip_address(network["gateway"])
    assert gateway in ipaddress.ip_network(network["subnet"])
    proxies = portal["environment"]["PORTAL_TRUSTED_PROXIES"]
    assert proxies == f"{gateway}/32"
    # the key (and a SQLite file) outlive the container
    assert "portal-state:/var/lib/portal-asgi" in portal["volumes"]
    # the shipped settings load with this environment
    settings = load_settings(
        DEPLOY / "settings.example.toml",
        environ={"PORTAL_DATABASE_URL": str(url), "PORTAL_TRUSTED_PROXIES": proxies},
    )
    assert settings.security.trusted_proxies == (proxies,)
    assert Path(settings.portal.key_file).parent == Path("/var/lib/portal-asgi")


# -- backups -----------------------------------------------------------------------------------


def signed_in_cookie(origin: str, host: Host) -> str:
    with client(origin) as http:
        sign_in(http)
        return str(http.cookies[host.cookie_name])


def restore_steps(containing: str) -> str:
    """The restore block without the `systemctl stop/start` around it (the test stops and
    starts the portal itself)."""
    lines = shell_block(containing).strip().splitlines()
    if lines[0].startswith("systemctl"):
        assert lines[0] == "systemctl stop portal-asgi"
        assert lines[-1] == "systemctl start portal-asgi"
        lines = lines[1:-1]
    return localise("\n".join(lines), (" -o portal-asgi -g portal-asgi", "")) + "\n"


def test_sqlite_backup_restored_on_a_new_host_accepts_an_old_session(tmp_path: Path) -> None:
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    backups = tmp_path / "backups"
    old = install_host(tmp_path / "old", origin)
    doc_setup(old)
    with run_unit(old, port=port) as portal:
        cookie = signed_in_cookie(origin, old)
        assert whoami(portal.url, old.cookie_name, cookie).status_code == 200
        # online, while the portal runs
        backup = localise(
            shell_block(".backup"),
            ("/var/lib/portal-asgi", str(old.state)),
            ("/var/backups/portal-asgi", str(backups)),
        )
        assert "ok" in run_shell(backup).split()  # PRAGMA integrity_check
    new = install_host(tmp_path / "new", origin)  # a new machine: settings, no state
    shutil.rmtree(new.state)
    restore = localise(
        restore_steps("portal.db-wal"),
        ("/var/lib/portal-asgi", str(new.state)),
        ("/var/backups/portal-asgi", str(backups)),
    )
    run_shell(restore)
    assert new.key_file.read_bytes() == old.key_file.read_bytes()
    with run_unit(new, port=port) as portal:
        answer = whoami(portal.url, new.cookie_name, cookie)
        assert answer.status_code == 200, answer.text
        assert answer.json()["user"] == DOC_USER


@pytest.fixture
def my_cnf(tmp_path: Path, mariadb: MariaDB) -> Iterator[dict[str, str]]:
    """MYSQL_HOME with a my.cnf `[client]` section for the test server: the doc's `~/.my.cnf`."""
    server = mariadb.server_url
    folder = tmp_path / "mysql-home"
    folder.mkdir()
    lines = ["[client]", f"host={server.host}", f"port={server.port or 3306}"]
    lines += [f"user={server.username}"] + ([f"password={server.password}"] * bool(server.password))
    (folder / "my.cnf").write_text("\n".join(lines) + "\n")
    yield {"MYSQL_HOME": str(folder)}


def test_mariadb_dump_restored_into_a_new_database_accepts_an_old_session(
    tmp_path: Path, mariadb: MariaDB, my_cnf: dict[str, str]
) -> None:
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    backups = tmp_path / "backups"
    first, second = mariadb.database(), mariadb.database()
    try:
        old = install_host(tmp_path / "old", origin, first)
        doc_setup(old)
        with run_unit(old, port=port) as portal:
            cookie = signed_in_cookie(origin, old)
            assert whoami(portal.url, old.cookie_name, cookie).status_code == 200
            backup = localise(
                shell_block("mariadb-dump"),
                (
                    "--single-transaction portal >",
                    f"--single-transaction {make_url(first).database} >",
                ),
                ("/var/lib/portal-asgi", str(old.state)),
                ("/var/backups/portal-asgi", str(backups)),
            )
            run_shell(backup, env=my_cnf)
        new = install_host(tmp_path / "new", origin, second)
        restore = localise(
            restore_steps("mariadb portal <"),
            ("mariadb portal <", f"mariadb {make_url(second).database} <"),
            ("/var/lib/portal-asgi", str(new.state)),
            ("/var/backups/portal-asgi", str(backups)),
        )
        run_shell(restore, env=my_cnf)
        with run_unit(new, port=port) as portal:
            answer = whoami(portal.url, new.cookie_name, cookie)
            assert answer.status_code == 200, answer.text
            assert answer.json()["user"] == DOC_USER
    finally:
        mariadb.drop(first)
        mariadb.drop(second)


# -- the doc itself ----------------------------------------------------------------------------


def test_every_uvicorn_command_shipped_or_documented_has_no_proxy_headers() -> None:
    files = [DOC, ROOT / "README.md", *sorted(p for p in DEPLOY.rglob("*") if p.is_file())]
    found = 0
    for file in files:
        text = re.sub(r"\\\n", " ", file.read_text())
        for line in text.splitlines():
            if "uvicorn portal_asgi:app" in line or '"uvicorn", "portal_asgi:app"' in line:
                found += 1
                assert "--no-proxy-headers" in line, f"{file.name}: {line.strip()}"
    assert found >= 5


def test_deploy_doc_names_only_files_that_exist_and_readme_links_it() -> None:
    doc = DOC.read_text()
    named = set(re.findall(r"\(\.\./(deploy/[\w./-]+)\)", doc))
    assert named >= {
        "deploy/settings.example.toml",
        "deploy/portal-asgi.env",
        "deploy/portal-asgi.service",
        "deploy/nginx/portal-asgi.conf",
        "deploy/Dockerfile",
        "deploy/compose.yaml",
    }
    for path in named:
        assert (ROOT / path).is_file(), path
    assert "DESIGN.md" not in doc
    assert "(docs/deploy.md)" in (ROOT / "README.md").read_text()
