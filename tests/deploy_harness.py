"""The deployment recipes of docs/deploy.md, run for real on loopback: the shipped files (deploy/)
with their production paths and ports replaced by temporary ones, the systemd unit's `ExecStart`
as a subprocess, the shipped nginx site under a real nginx, and the doc's own shell blocks."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx2
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .helpers import csrf_token
from .servers import ROOT, free_port

DEPLOY = ROOT / "deploy"
DOC = ROOT / "docs" / "deploy.md"
VENV_BIN = Path(sys.executable).parent
EXAMPLE_ORIGIN = "https://portal.example.org"
SESSION_COOKIE = "portal_session"
# docs/deploy.md creates the first account with this block's password
DOC_USER, DOC_PASSWORD = "alice", "a long passphrase"
# A product of the tests' own, mounted beside the example's: it says which process answered.
PROBE_MOUNT = '\n[[mount]]\npath = "/probe"\napp = "tests.deploy_probe:app"\nlevel = "stable"\n'


def localise(text: str, *pairs: tuple[str, str]) -> str:
    """Replace production values by the test's, in order; each must be there, so that a shipped
    file that drifts from what the test runs fails here rather than being run half-changed."""
    for old, new in pairs:
        assert old in text, f"expected {old!r} in:\n{text}"
        text = text.replace(old, new)
    return text


def shell_block(containing: str) -> str:
    """The one ```sh block of docs/deploy.md that contains `containing`."""
    blocks = re.findall(r"^```sh\n(.*?)^```", DOC.read_text(), flags=re.S | re.M)
    found = [block for block in blocks if containing in block]
    assert len(found) == 1, f"{len(found)} sh blocks of docs/deploy.md contain {containing!r}"
    return str(found[0])


def unit_directives(path: Path = DEPLOY / "portal-asgi.service") -> dict[str, list[str]]:
    """`Key=value` lines of a systemd unit, every value of a key in order (keys may repeat)."""
    directives: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            directives.setdefault(key.strip(), []).append(value.strip())
    return directives


def env_file(text: str) -> dict[str, str]:
    """`NAME=value` lines, quotes removed, as systemd's EnvironmentFile= and `sh` read them."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = " ".join(shlex.split(value))
    return values


def run_shell(script: str, *, env: dict[str, str] | None = None, stdin: str = "") -> str:
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env={**clean_environ(), **(env or {})},
        check=False,
    )
    assert done.returncode == 0, f"{script}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    return done.stdout


def clean_environ() -> dict[str, str]:
    """This process's environment without PORTAL_* (the test's settings come from files)."""
    return {key: value for key, value in os.environ.items() if not key.startswith("PORTAL_")}


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Poll `condition()` until it is true, for `timeout` seconds at most."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f}s")
        time.sleep(0.1)


# -- TLS ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Certificate:
    folder: Path  # holds fullchain.pem and privkey.pem, as certbot's live/NAME/ does

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.folder / "fullchain.pem"))


def self_signed(folder: Path) -> Certificate:
    """A self-signed certificate for 127.0.0.1, its own trust anchor."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "fullchain.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (folder / "privkey.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Certificate(folder)


# -- nginx -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Nginx:
    https_port: int
    http_port: int
    access_log: Path

    @property
    def origin(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else "")
    assert found, "nginx is not installed: `make nginx` installs it (make test does)"
    return found


def _stop(process: subprocess.Popen[bytes], *, sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # its own session: this process and its children
            process.wait(timeout=10)


def _accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def run_nginx(
    folder: Path, certificate: Certificate, backends: list[int], *, https_port: int
) -> Iterator[Nginx]:
    """deploy/nginx/portal-asgi.conf under a real nginx (not a daemon, its own prefix), TLS on
    127.0.0.1:`https_port`, forwarding to `backends` on 127.0.0.1."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "log").mkdir(exist_ok=True)
    http_port = free_port()
    upstream = "\n    ".join(f"server 127.0.0.1:{port};" for port in backends)
    site = localise(
        (DEPLOY / "nginx" / "portal-asgi.conf").read_text(),
        ("server 127.0.0.1:8000;", upstream),
        ("    listen [::]:80;\n", ""),
        ("    listen [::]:443 ssl;\n", ""),
        ("listen 80;", f"listen 127.0.0.1:{http_port};"),
        ("listen 443 ssl;", f"listen 127.0.0.1:{https_port} ssl;"),
        ("/etc/letsencrypt/live/portal.example.org", str(certificate.folder)),
        ("/var/log/nginx", str(folder / "log")),
    )
    (folder / "portal-asgi.conf").write_text(site)
    temp = "\n".join(
        f"    {kind}_temp_path {folder / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    # nginx started by root hands requests to workers running as `nobody`, which could not
    # enter pytest's private temporary folders
    user = "user root;\n" if os.geteuid() == 0 else ""
    (folder / "nginx.conf").write_text(
        f"{user}worker_processes 1;\npid {folder / 'nginx.pid'};\n"
        f"error_log {folder / 'error.log'} warn;\nevents {{ worker_connections 256; }}\n"
        f"http {{\n{temp}\n    access_log {folder / 'access.log'};\n"
        f"    include {folder / 'portal-asgi.conf'};\n}}\n"
    )
    command = [nginx_binary(), "-p", str(folder), "-e", str(folder / "error.log")]
    command += ["-c", str(folder / "nginx.conf"), "-g", "daemon off;"]
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr
    process = subprocess.Popen(command, start_new_session=True)
    try:
        wait_for(
            lambda: process.poll() is not None or _accepts(https_port),
            "nginx listening",
        )
        assert process.poll() is None, (folder / "error.log").read_text()
        yield Nginx(https_port, http_port, folder / "log" / "portal-asgi.access.log")
    finally:
        _stop(process, sig=signal.SIGQUIT)  # graceful: finish what is in flight


# -- a host: the shipped settings, env file and unit -------------------------------------------


@dataclass(frozen=True)
class Host:
    """One machine's files: /etc/portal-asgi and /var/lib/portal-asgi, under `root`."""

    root: Path
    origin: str  # base_url

    @property
    def etc(self) -> Path:
        return self.root / "etc"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def key_file(self) -> Path:
        return self.state / "signing-key.pem"

    @property
    def cookie_name(self) -> str:
        return f"__Host-{SESSION_COOKIE}" if self.origin.startswith("https") else SESSION_COOKIE

    def paths(self) -> list[tuple[str, str]]:
        return [
            ("/etc/portal-asgi", str(self.etc)),
            ("/var/lib/portal-asgi", str(self.state)),
            ("/srv/portal-asgi/.venv/bin/", f"{VENV_BIN}/"),
        ]

    def local(self, text: str) -> str:
        """Production paths in `text` replaced by this host's (only those that occur)."""
        for old, new in [*self.paths(), ("/srv/portal-asgi", str(ROOT))]:
            text = text.replace(old, new)
        return text

    def env(self) -> dict[str, str]:
        return env_file((self.etc / "portal-asgi.env").read_text())


def install_host(root: Path, origin: str, database_url: str | None = None) -> Host:
    """The install steps of docs/deploy.md: settings.toml and portal-asgi.env in place, the state
    folder made; `database_url` (MariaDB) instead of the env file's SQLite."""
    host = Host(root, origin)
    host.etc.mkdir(parents=True)
    host.state.mkdir(mode=0o700)
    settings = localise(
        (DEPLOY / "settings.example.toml").read_text(),
        (EXAMPLE_ORIGIN, origin),
        ("/var/lib/portal-asgi", str(host.state)),
        ('"/srv/portal-asgi"', f'"{ROOT}"'),
    )
    (host.etc / "settings.toml").write_text(settings + PROBE_MOUNT)
    env = (DEPLOY / "portal-asgi.env").read_text()
    if database_url is not None:
        env = localise(
            env, ("'sqlite+aiosqlite:////var/lib/portal-asgi/portal.db'", f"'{database_url}'")
        )
    env = localise(env, ("/etc/portal-asgi", str(host.etc)))
    (host.etc / "portal-asgi.env").write_text(host.local(env))
    return host


def doc_setup(host: Host) -> str:
    """docs/deploy.md's command-line block on this host: its `portal-asgi` shell function, then
    `db upgrade`, `check` and the first user (the doc's `sudo -u portal-asgi` left out: the
    test is the service user)."""
    block = localise(shell_block("portal-asgi() {"), ("sudo -u portal-asgi ", ""))
    return run_shell(host.local(block))


def doc_cli(host: Host, commands: str) -> str:
    """`commands` after docs/deploy.md's `portal-asgi` shell function, on this host."""
    block = localise(shell_block("portal-asgi() {"), ("sudo -u portal-asgi ", ""))
    function = block.split("\n}\n")[0] + "\n}\n"
    return run_shell(host.local(function) + commands)


@dataclass
class Portal:
    host: Host
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def exec_start(host: Host, port: int, workers: int) -> list[str]:
    """The unit's ExecStart on this host, listening on `port` with `workers` workers."""
    (line,) = unit_directives()["ExecStart"]
    line = localise(
        line, ("--port 8000", f"--port {port}"), ("--workers 2", f"--workers {workers}")
    )
    return shlex.split(host.local(line))


@contextmanager
def run_unit(host: Host, *, workers: int = 1, port: int | None = None) -> Iterator[Portal]:
    """The systemd unit's service, as systemd would start it: ExecStart, WorkingDirectory,
    EnvironmentFile. Ready once /readyz answers 200."""
    directives = unit_directives()
    port = port or free_port()
    (environment_file,) = directives["EnvironmentFile"]
    (workdir,) = directives["WorkingDirectory"]
    env = {**clean_environ(), **env_file(Path(host.local(environment_file)).read_text())}
    log = host.root / "portal.log"
    with log.open("ab") as output:
        process = subprocess.Popen(
            exec_start(host, port, workers),
            cwd=host.local(workdir),
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    portal = Portal(host, port, process, log)
    try:

        def ready() -> bool:
            assert process.poll() is None, f"portal exited:\n{log.read_text()}"
            try:
                return httpx2.get(f"{portal.url}/readyz", timeout=5).status_code == 200
            except httpx2.TransportError:
                return False

        wait_for(ready, f"portal on port {port} ready", timeout=90)
        yield portal
    finally:
        _stop(process)


# -- a browser-like client ---------------------------------------------------------------------


def client(origin: str, *, certificate: Certificate | None = None) -> httpx2.Client:
    """A client whose connections leave from 127.0.0.2, so that the portal can tell its address
    from the proxy's 127.0.0.1."""
    verify: ssl.SSLContext | bool = certificate.client_context() if certificate else True
    transport = httpx2.HTTPTransport(verify=verify, local_address="127.0.0.2")
    return httpx2.Client(base_url=origin, transport=transport, timeout=20, follow_redirects=False)


def sign_in(http: httpx2.Client, username: str = DOC_USER, password: str = DOC_PASSWORD) -> None:
    page = http.get("/auth/login")
    assert page.status_code == 200, page.text
    answer = http.post(
        "/auth/login",
        data={"username": username, "password": password, "csrf_token": csrf_token(page.text)},
    )
    assert answer.status_code == 303, answer.text


def sign_out(http: httpx2.Client) -> None:
    catalogue = http.get("/", headers={"accept": "text/html"})
    assert catalogue.status_code == 200, catalogue.text
    answer = http.post("/auth/logout", data={"csrf_token": csrf_token(catalogue.text)})
    assert answer.status_code == 303, answer.text


def whoami(url: str, cookie_name: str, cookie: str) -> httpx2.Response:
    """The probe product on one portal directly, with a session cookie."""
    return httpx2.get(f"{url}/probe/", headers={"cookie": f"{cookie_name}={cookie}"}, timeout=10)
