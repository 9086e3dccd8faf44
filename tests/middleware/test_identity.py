"""Identity (middleware/identity.py) in process: what its caches keep."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from portal_asgi import claims
from portal_asgi.db import store
from portal_asgi.middleware import inbound as incoming
from portal_asgi.middleware.identity import Identity
from portal_asgi.runtime import Runtime

from ..asgi import http_scope, started

pytestmark = pytest.mark.anyio


def identity_of(runtime: Runtime) -> Identity:
    return Identity(
        codec=runtime.codec,
        directory=runtime.directory,
        levels=runtime.levels,
        cookie=runtime.cookie,
        idle_timeout=runtime.settings.auth.idle_timeout,
    )


async def who(identity: Identity, token: str) -> str:
    scope = http_scope("GET", "/x", [(b"authorization", f"Bearer {token}".encode())])
    await identity.identify(scope, incoming.read(scope))
    return str(scope["user"].display_name) if scope["user"].is_authenticated else ""


async def test_a_revoked_tokens_verdict_and_claims_are_forgotten_at_the_next_change(
    tmp_path: Path,
) -> None:
    """A token nobody will present again (a revoked session's) leaves both caches when the
    directory learns of the revocation, instead of staying until the caches fill; the token of
    a live session is judged again and still speaks for its user."""
    async with started(tmp_path) as (_, runtime):
        identity = identity_of(runtime)
        tokens = {}
        for name in ("alice", "bob"):
            await store.add_user(runtime.db, name, level="ea", password=f"{name}-password")
            await runtime.directory.refresh()
            sid, user = await store.open_session(runtime.db, name, lifetime=3600, kind="api")
            made = claims.api_token(
                runtime.levels, name, user, sid=sid, now=int(time.time()), ttl=3600
            )
            tokens[name] = (sid, runtime.codec.sign(made))
        for name, (_, token) in tokens.items():
            assert await who(identity, token) == name
        assert set(tokens.values()) <= {(c[1]["sid"], t) for t, c in runtime.codec._cache.items()}
        assert len(identity._known) == 2

        assert await store.revoke_session(runtime.db, tokens["alice"][0])
        assert await runtime.directory.refresh()

        assert identity._known == {}
        assert tokens["alice"][1] not in runtime.codec._cache
        assert tokens["bob"][1] in runtime.codec._cache
        assert await who(identity, tokens["alice"][1]) == ""
        assert await who(identity, tokens["bob"][1]) == "bob"
