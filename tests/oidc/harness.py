"""Start `provider.mjs` under Node on a free loopback port; stop it when done."""

from __future__ import annotations

import json
import os
import selectors
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
from sqlalchemy import select

from portal_asgi.db.engine import Database
from portal_asgi.db.models import AuditEvent, User

from ..servers import RunningPortal, serve

HERE = Path(__file__).resolve().parent
AUDIENCE = "https://api.portal.test"

# Clients configured in provider.mjs: (client_id, client_secret)
PORTAL = ("portal", "portal-secret")
PORTAL_POST = ("portal-post", "portal-post-secret")
PORTAL_ES = ("portal-es", "portal-es-secret")
PORTAL_MIXUP = ("portal-mixup", "portal-mixup-secret")
OTHER_APP = ("other-app", "other-app-secret")
PORTAL_USERINFO = ("portal-userinfo", "portal-userinfo-secret")
MACHINE = ("machine", "machine-secret")
MACHINE_ES = ("machine-es", "machine-es-secret")
# Clients whose tokens the provider shapes as Amazon Cognito does (no `aud`; `client_id`,
# `token_use`): the portal's app client, and machine clients for the Bearer tests.
PORTAL_COGNITO = ("portal-cognito", "portal-cognito-secret")
COGNITO_MACHINE = ("cognito-machine", "cognito-machine-secret")
COGNITO_STRANGER = ("cognito-stranger", "cognito-stranger-secret")  # not a client of the portal
COGNITO_WRONG_USE = ("cognito-wrong-use", "cognito-wrong-use-secret")  # token_use = "id"
COGNITO_EXPIRED = ("cognito-expired", "cognito-expired-secret")  # expired an hour ago


@dataclass
class Provider:
    issuer: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()


def ensure_installed() -> None:
    """`make test` runs `npm ci` here; a bare `pytest` gets the same, once."""
    if (HERE / "node_modules" / "oidc-provider").is_dir():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("the OIDC tests need Node.js and npm (see tests/oidc/package.json)")
    subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=HERE, check=True)


@contextmanager
def start_provider(log_dir: Path, *, audience: str = AUDIENCE) -> Iterator[Provider]:
    ensure_installed()
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("the OIDC tests need Node.js")
    log = log_dir / "oidc-provider.log"
    env = {**os.environ, "PORT": "0", "AUDIENCE": audience}
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [node, str(HERE / "provider.mjs")],
            cwd=HERE,
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
    assert process.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + 30
    line = b""
    while not line.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0 or process.poll() is not None:
            process.kill()
            raise RuntimeError(f"oidc-provider did not start: {log.read_text()}")
        if selector.select(timeout=remaining):
            chunk = os.read(process.stdout.fileno(), 1)
            if not chunk:
                continue
            line += chunk
    selector.close()
    word, _, issuer = line.decode().strip().partition(" ")
    assert word == "ready", line
    provider = Provider(issuer, process, log)
    try:
        yield provider
    finally:
        provider.stop()


def client_credentials_token(
    provider: Provider, client: tuple[str, str], scope: str = "access:stable access:ea"
) -> str:
    """An access token of a machine client (client credentials grant) for the API audience."""
    response = httpx2.post(
        provider.issuer + "/token",
        auth=client,
        data={"grant_type": "client_credentials", "resource": AUDIENCE, "scope": scope},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def oidc_settings(
    provider: Provider | str,
    client: tuple[str, str] = PORTAL,
    *,
    method: str = "client_secret_basic",
    level_claim: str = "scope",
    level_prefix: str = "access:",
    level_source: str = "claims",
    audience: str | None = AUDIENCE,
    scopes: str = "openid profile email access:stable access:ea access:devel access:admin",
    extra: str = "",
) -> str:
    """The text that goes inside [auth] for a portal signing in through `provider` (or the
    provider at the issuer URL `provider`)."""
    issuer = provider if isinstance(provider, str) else provider.issuer
    lines = [
        'provider = "oidc"',
        "",
        "[auth.oidc]",
        f'issuer = "{issuer}"',
        f'client_id = "{client[0]}"',
        f'client_secret = "{client[1]}"',
        f'token_endpoint_auth_method = "{method}"',
        f'level_claim = "{level_claim}"',
        f'level_prefix = "{level_prefix}"',
        f'level_source = "{level_source}"',
        f'scopes = "{scopes}"',
        'name = "Test IdP"',
        'timeout = "5s"',
    ]
    if audience is not None:
        lines.append(f'audience = "{audience}"')
    return "\n".join(lines) + "\n" + extra


@contextmanager
def oidc_portal(tmp: Path, provider: Provider, **settings: Any) -> Iterator[RunningPortal]:
    """A test portal signing in through `provider` (keyword arguments: `oidc_settings`)."""
    with serve(tmp, auth=oidc_settings(provider, **settings)) as portal:
        yield portal


def audit_events(portal: RunningPortal, event: str) -> list[dict[str, Any]]:
    """The portal's audit entries named `event`, oldest first, detail decoded."""

    async def read(db: Database) -> list[dict[str, Any]]:
        async with db.session() as session:
            rows = await session.scalars(
                select(AuditEvent).where(AuditEvent.event == event).order_by(AuditEvent.id)
            )
            return [
                {"username": row.username, "client": row.client, **json.loads(row.detail or "{}")}
                for row in rows
            ]

    result: list[dict[str, Any]] = portal.run_db(read)
    return result


def user_row(portal: RunningPortal, *, subject: str) -> User | None:
    async def read(db: Database) -> User | None:
        async with db.session() as session:
            return await session.scalar(select(User).where(User.subject == subject))

    found: User | None = portal.run_db(read)
    return found
