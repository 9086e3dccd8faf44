"""The request path (app.py), in process: the steps in order, and that nothing downstream of a
product decides anything from what the product wrote."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Coroutine
from pathlib import Path

import pytest
from sqlalchemy import select

from portal_asgi.db.models import AuditEvent
from portal_asgi.runtime import Runtime

from .asgi import request, started

MOUNTS = (
    '[[mount]]\npath = "/rude"\napp = "tests.asgi_products:rude"\nlevel = "public"\n\n'
    '[[mount]]\npath = "/broken"\napp = "tests.asgi_products:broken"\nlevel = "public"\n\n'
    '[[mount]]\npath = "/ea"\napp = "products.test.app:app"\nlevel = "ea"\n\n'
)


def run(tmp: Path, scenario: Coroutine[None, None, None]) -> None:
    asyncio.run(scenario)


async def audit_events(runtime: Runtime) -> list[AuditEvent]:
    async with runtime.db.session() as session:
        return list(await session.scalars(select(AuditEvent).order_by(AuditEvent.id)))


def test_a_product_gets_its_mount_and_trusted_headers_only(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with started(tmp_path, mounts=MOUNTS) as (portal, _):
            forged = [(b"x-portal-user", b"admin"), (b"x_portal_level", b"admin")]
            answer = await request(portal, "/rude/x", headers=forged)
            seen = json.loads(answer.body)
            assert seen["path"] == "/rude/x" and seen["root_path"] == "/rude"
            assert seen["portal"] == {"mount": "/rude", "level": "public"}
            # anonymous: no X-Portal-*, and the forged ones gone; the portal's request id
            assert seen["headers"] == ["x-request-id"]

    run(tmp_path, scenario())


def test_a_products_own_refusal_keeps_product_headers_and_is_not_audited(tmp_path: Path) -> None:
    """It rewrote scope["portal"] and scope["path"] to look like a portal page: nothing after
    it reads them, so its 403 gets product headers and no `denied` event."""

    async def scenario() -> None:
        async with started(tmp_path, mounts=MOUNTS) as (portal, runtime):
            answer = await request(portal, "/rude/x", headers=[(b"accept", b"text/html")])
            assert answer.status == 403
            assert answer.header("x-frame-options") == "SAMEORIGIN"
            assert answer.header("content-security-policy") is None
            assert answer.header("x-content-type-options") == "nosniff"
            refused = await request(portal, "/ea/whoami")  # a portal refusal, for contrast
            assert refused.status == 401 and refused.header("content-security-policy")
            for _ in range(100):  # written after the answer: poll
                events = await audit_events(runtime)
                if any(json.loads(e.detail)["path"] == "/ea/whoami" for e in events):
                    break
                await asyncio.sleep(0.05)
            denied = [e for e in await audit_events(runtime) if e.event == "denied"]
            assert [json.loads(e.detail)["path"] for e in denied] == ["/ea/whoami"]

    run(tmp_path, scenario())


def test_a_product_error_is_a_500_without_its_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        async with started(tmp_path, mounts=MOUNTS) as (portal, _):
            with caplog.at_level(logging.ERROR, logger="portal_asgi"):
                answer = await request(portal, "/broken/", headers=[(b"accept", b"text/html")])
            assert answer.status == 500
            assert b"secret" not in answer.body and b"Traceback" not in answer.body
            assert any(
                "a secret in a traceback" in r.getMessage() or r.exc_info for r in caplog.records
            )

    run(tmp_path, scenario())


def test_refusals_come_in_order_headers_then_paths_then_level(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with started(tmp_path, mounts=MOUNTS) as (portal, _):
            many = [(f"x-h{i}".encode(), b"v") for i in range(101)]
            assert (await request(portal, "/ea/../rude/x", headers=many)).status == 431
            assert (await request(portal, "/ea/../rude/x")).status == 400
            assert (await request(portal, "/ea/x")).status == 401
            assert (await request(portal, "/nothing/here")).status == 404
            bare = await request(portal, "/ea")
            assert bare.status == 307 and bare.header("location") == "/ea/"

    run(tmp_path, scenario())


def test_a_body_too_large_for_a_portal_page_is_413_before_the_page_reads_it(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with started(tmp_path, mounts=MOUNTS) as (portal, runtime):
            size = runtime.settings.security.max_body_size + 1
            headers = [(b"content-length", str(size).encode())]
            answer = await request(portal, "/auth/login", method="POST", headers=headers)
            assert answer.status == 413

    run(tmp_path, scenario())
