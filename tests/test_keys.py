"""Signing key rotation (keys.py, signing.py, db/signing_keys.py, docs/keys.md): keys kept in the
database and rotated by `portal-asgi keys rotate` reach every worker and host through the change
feed, tokens of a retired key verify until their last one has expired; keys pinned by the
environment or a mounted secret are read, never written, never rotated by the portal. On SQLite
and MariaDB where the database is involved."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import time
import tomllib
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx2
import pytest
from itsdangerous import BadSignature, URLSafeTimedSerializer
from jose import jwt

from portal_asgi.db import signing_keys, store
from portal_asgi.db.engine import Database
from portal_asgi.db.models import utcnow
from portal_asgi.directory import Directory
from portal_asgi.exceptions import KeyUnusable, SettingsError, UnknownKey
from portal_asgi.keys import KeyRing, generate_key, key_from_pem, sealed_pem
from portal_asgi.settings import PortalSettings, parse_settings
from portal_asgi.signing import KeyKeeper, rotate, startup
from portal_asgi.tokens import TokenCodec

from .cli_runner import mint_token, run_cli
from .helpers import Clock
from .servers import RunningPortal, serve, settings_text

pytestmark = pytest.mark.anyio

ISSUER = "http://127.0.0.1:8000"
HOUR = dt.timedelta(hours=1)
JSON = {"accept": "application/json"}


def claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    body = {"sub": "alice", "uid": "u-1", "sid": "s-1", "iat": now, "exp": now + 600}
    return body | changes


def kid_of(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


# --- the ring: sign with one key, verify with any ----------------------------------------------


def test_a_rotated_ring_signs_with_the_new_key_and_verifies_both() -> None:
    old, new = generate_key(), generate_key()
    ring = KeyRing(old)
    codec = TokenCodec(ring, issuer=ISSUER)
    before = codec.sign(claims())
    assert codec.verify(before)["sub"] == "alice"  # now in the cache, too
    ring.replace(new, [old])
    after = codec.sign(claims())
    assert (kid_of(before), kid_of(after)) == (old.kid, new.kid)
    assert codec.key is new
    assert codec.verify(before)["sub"] == codec.verify(after)["sub"] == "alice"
    assert [jwk["kid"] for jwk in ring.jwks["keys"]] == [new.kid, old.kid]


def test_a_dropped_key_is_refused_even_for_a_cached_token() -> None:
    """A token verified before its key left the ring must not live on in the verify cache."""
    old, new = generate_key(), generate_key()
    ring = KeyRing(new, [old])
    codec = TokenCodec(ring, issuer=ISSUER)
    token = TokenCodec(old, issuer=ISSUER).sign(claims())
    assert codec.verify(token)["sub"] == "alice"
    ring.replace(new)
    with pytest.raises(UnknownKey):
        codec.verify(token)
    assert ring.jwks["keys"] == [new.public_jwk]


def test_csrf_and_login_cookies_survive_rotation_and_die_with_the_key() -> None:
    """The derived secrets follow the ring: new values signed with the new key's secret, old
    ones accepted while their key is held (itsdangerous's own key rotation)."""
    old, new = generate_key(), generate_key()
    ring = KeyRing(old)
    serializer: URLSafeTimedSerializer = URLSafeTimedSerializer(old.secret, salt="s")
    ring.track(serializer)
    issued = serializer.dumps("value")
    ring.replace(new, [old])
    assert serializer.loads(issued) == "value"
    fresh = serializer.dumps("value")
    assert URLSafeTimedSerializer(new.secret, salt="s").loads(fresh) == "value"
    ring.replace(new)
    with pytest.raises(BadSignature):
        serializer.loads(issued)
    assert serializer.loads(fresh) == "value"


def test_a_key_stored_with_a_passphrase_is_encrypted() -> None:
    key = generate_key()
    sealed = sealed_pem(key, "a long passphrase from the environment")
    assert sealed.startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert key.private_pem not in sealed
    opened = key_from_pem(sealed, where="row", passphrase="a long passphrase from the environment")
    assert opened.kid == key.kid and opened.secret == key.secret
    with pytest.raises(KeyUnusable, match="key_passphrase"):
        key_from_pem(sealed, where="row")
    with pytest.raises(KeyUnusable, match="wrong passphrase"):
        key_from_pem(sealed, where="row", passphrase="guess")


# --- settings ---------------------------------------------------------------------------------


def portal_settings(tmp_path: Path, portal: str, environ: dict[str, str]) -> PortalSettings:
    data = tomllib.loads(f"[portal]\n{portal}\n")
    return parse_settings(data, file=str(tmp_path / "settings.toml"), environ=environ).portal


def test_settings_key_sources(tmp_path: Path) -> None:
    pem = generate_key().private_pem
    env = {"PORTAL_SIGNING_KEY": pem, "PORTAL_OLD_KEY": pem}
    pinned = portal_settings(
        tmp_path,
        'key = "env:PORTAL_SIGNING_KEY"\nverify_keys = ["env:PORTAL_OLD_KEY", "old.pem"]',
        env,
    )
    assert pinned.key_rotation == "manual"  # a key from the environment pins it
    assert pinned.key is not None and pinned.key.label == "env PORTAL_SIGNING_KEY"
    assert pinned.key.pem == pem and "BEGIN" not in repr(pinned)
    assert [source.label for source in pinned.verify_keys] == [
        "env PORTAL_OLD_KEY",
        f"file {tmp_path / 'old.pem'}",
    ]
    default = portal_settings(tmp_path, 'key_passphrase = "env:PASS"', {"PASS": "p" * 20})
    assert default.key_rotation == "database" and default.key_passphrase == "p" * 20
    bootstrap = portal_settings(
        tmp_path, 'key = "env:PORTAL_SIGNING_KEY"\nkey_rotation = "database"', env
    )
    assert bootstrap.key_rotation == "database"


@pytest.mark.parametrize(
    ("portal", "key", "problem"),
    [
        ('key = "-----BEGIN PRIVATE KEY-----"', "portal.key", "env:NAME"),
        ('key = "/run/secrets/key.pem"', "portal.key", "key_file"),
        ('key = "env:NOT_SET_HERE"', "portal.key", "NOT_SET_HERE is not set"),
        ('verify_keys = ["old.pem"]', "portal.verify_keys", "manual"),
        ('verify_keys = ["-----BEGIN PRIVATE KEY-----"]', "portal.verify_keys", "never lives"),
        ('key_rotation = "manual"\nkey_passphrase = "x"', "portal.key_passphrase", "database"),
        ('key_rotation = "sometimes"', "portal.key_rotation", "must be one of"),
    ],
)
def test_settings_refuse_misplaced_keys(
    tmp_path: Path, portal: str, key: str, problem: str
) -> None:
    with pytest.raises(SettingsError) as refused:
        portal_settings(tmp_path, portal, {})
    assert refused.value.key == key
    assert problem in refused.value.problem


# --- the database's key set, as workers see it (a clock moved by hand) ---------------------------


def keeper_for(db: Database, key_file: Path, passphrase: str = "") -> tuple[KeyRing, KeyKeeper]:
    extra = {"key_passphrase": passphrase} if passphrase else {}
    portal = PortalSettings(key_file=str(key_file), **extra)  # type: ignore[arg-type]
    ring, keeper = startup(portal, db)
    assert keeper is not None
    return ring, keeper


async def test_next_key_is_published_before_it_signs_and_the_old_one_kept_for_its_last_token(
    db: Database, other_worker: Database, tmp_path: Path
) -> None:
    clock = Clock()
    t0 = clock.now
    ring, keeper = keeper_for(other_worker, tmp_path / "worker.pem")
    worker = Directory(other_worker, interval=60, clock=clock, keys=keeper)
    await worker.load()  # the first start: the worker's key file becomes the first key
    first = ring.current.kid
    assert [row.kid for row in await signing_keys.read(db)] == [first]
    await store.add_user(db, "alice", level="ea", password=None)
    # an API token of three hours, made before the rotation: the old key must outlive it
    await store.open_session(db, "alice", lifetime=3 * 3600, kind="api", now=t0)

    portal = PortalSettings(key_file=str(tmp_path / "cli.pem"))
    done = await rotate(portal, db, activate_in=600, now=t0)
    assert done.replaced == [first]
    clock.now = t0 + dt.timedelta(seconds=1)
    await worker.refresh()
    # published at once, not signing yet: whoever caches the JWKS has it before a token arrives
    assert ring.current.kid == first and ring.kids == (first, done.kid)

    clock.now = t0 + dt.timedelta(minutes=10, seconds=1)
    await worker.refresh()  # nothing in the feed: time alone makes the new key sign
    assert ring.current.kid == done.kid and ring.kids == (done.kid, first)

    # the old key verifies until the API token's row expires, plus GRACE
    clock.now = t0 + 3 * HOUR + store.GRACE - dt.timedelta(seconds=1)
    await worker.refresh()
    assert ring.get(first) is not None
    assert await worker.prune() is not None
    assert [row.kid for row in await signing_keys.read(db)] == [first, done.kid]

    clock.now = t0 + 3 * HOUR + store.GRACE + dt.timedelta(seconds=1)
    await worker.refresh()
    assert ring.get(first) is None and list(ring.kids) == [done.kid]
    await worker.prune()
    assert [row.kid for row in await signing_keys.read(db)] == [done.kid]


async def test_hosts_with_different_key_files_starting_at_once_sign_with_one_key(
    db: Database, other_worker: Database, tmp_path: Path
) -> None:
    """Nobody copies a PEM any more: hosts with keys of their own agree on the table's."""
    rings = []
    keepers = []
    for index, engine in enumerate((db, other_worker, db, other_worker)):
        ring, keeper = keeper_for(engine, tmp_path / f"host-{index}.pem")
        rings.append(ring)
        keepers.append(keeper)
    await asyncio.gather(*(keeper.load() for keeper in keepers))
    await asyncio.gather(*(keeper.load() for keeper in keepers))  # as the feed would tell them
    assert len({ring.current.kid for ring in rings}) == 1
    rows = await signing_keys.read(db)
    assert [row.kid for row in rows if row.retired_at is None] == [rings[0].current.kid]


async def test_keys_in_the_database_are_encrypted_with_the_passphrase(
    db: Database, tmp_path: Path
) -> None:
    ring, keeper = keeper_for(db, tmp_path / "key.pem", passphrase="from-the-environment-" * 2)
    await keeper.load()
    (row,) = await signing_keys.read(db)
    assert row.private_pem.startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert ring.current.kid == row.kid
    # a worker without the passphrase does not start on keys it cannot open
    _, blind = keeper_for(db, tmp_path / "other.pem")
    with pytest.raises(KeyUnusable, match="key_passphrase"):
        await blind.load()


# --- rotation across two running portals on one database --------------------------------------


def cookie_name(portal: RunningPortal) -> str:
    runtime = portal.portal.runtime
    assert runtime is not None
    return runtime.cookie.name


def sign_in(portal: RunningPortal, username: str) -> str:
    """A fresh session cookie from `portal`'s login form."""
    with portal.client() as client:
        answer = portal.login(client, username)
        assert answer.status_code == 303, answer.text
        return str(client.cookies[cookie_name(portal)])


def whoami(portal: RunningPortal, *, cookie: str = "", token: str = "") -> int:
    headers = dict(JSON)
    if cookie:
        headers["cookie"] = f"{cookie_name(portal)}={cookie}"
    if token:
        headers["authorization"] = f"Bearer {token}"
    with portal.client() as client:
        return client.get("/ea/whoami", headers=headers).status_code


def jwks_kids(portal: RunningPortal) -> set[str]:
    answer = httpx2.get(portal.url + "/.well-known/jwks.json", timeout=10)
    assert answer.status_code == 200
    return {key["kid"] for key in answer.json()["keys"]}


def file_kid(path: Path) -> str:
    return key_from_pem(path.read_bytes(), where=str(path)).kid


def test_keys_rotate_reaches_every_portal_without_a_restart(
    database_url: str, tmp_path: Path
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with ExitStack() as stack:
        # hosts behind one load balancer: one origin, one token issuer
        origin = "http://portal.example"
        first = stack.enter_context(
            serve(tmp_path / "a", database_url=database_url, base_url=origin)
        )
        second = stack.enter_context(
            serve(tmp_path / "b", database_url=database_url, base_url=origin)
        )
        portals = (first, second)
        first.add_user("alice", "ea")
        for portal in portals:
            portal.wait_until(lambda p=portal: p.knows("alice"))
        # the second host's own key file is not what it signs with: the database's first key is
        old = file_kid(tmp_path / "a" / "key.pem")
        assert file_kid(tmp_path / "b" / "key.pem") != old
        old_cookies = [sign_in(portal, "alice") for portal in portals]
        assert [kid_of(cookie) for cookie in old_cookies] == [old, old]
        for portal in portals:
            for cookie in old_cookies:
                assert whoami(portal, cookie=cookie) == 200
        old_token = mint_token(first.settings_file, "alice")
        assert kid_of(old_token) == old
        assert jwks_kids(first) == jwks_kids(second) == {old}

        done = run_cli(second.settings_file, "keys", "rotate", "--activate-in", "0s")
        assert done.returncode == 0, done.stderr
        new = re.search(r"new signing key (\S+):", done.stdout)
        assert new is not None, done.stdout
        new_kid = new.group(1)
        assert new_kid != old

        # within a few feed intervals (0.2 s here; generous for a loaded machine)
        for portal in portals:
            portal.wait_until(lambda p=portal: jwks_kids(p) == {old, new_kid}, timeout=20)
        for portal in portals:
            assert kid_of(sign_in(portal, "alice")) == new_kid
            for cookie in old_cookies:
                assert whoami(portal, cookie=cookie) == 200
            assert whoami(portal, token=old_token) == 200
        assert kid_of(mint_token(first.settings_file, "alice")) == new_kid

        listed = run_cli(first.settings_file, "keys", "list")
        assert listed.returncode == 0, listed.stderr
        states = {line.split()[0]: line for line in listed.stdout.splitlines()[1:]}
        assert "signing" in states[new_kid] and "database (keys rotate)" in states[new_kid]
        assert "verifying only, until" in states[old]
        assert "database (from key_file)" in states[old]

        # the old API token (30 days, `token mint`'s default) keeps the old key for that long
        soon = utcnow() + dt.timedelta(days=29)
        assert first.run_db(lambda db: signing_keys.prune(db, now=soon)) == []
        # later, every token the old key signed has expired (the clock moved by hand here)
        later = utcnow() + dt.timedelta(days=31)
        assert first.run_db(lambda db: signing_keys.prune(db, now=later)) == [old]
        for portal in portals:
            portal.wait_until(lambda p=portal: jwks_kids(p) == {new_kid}, timeout=20)
        for portal in portals:
            for cookie in old_cookies:
                assert whoami(portal, cookie=cookie) == 401
            assert whoami(portal, token=old_token) == 401
            assert whoami(portal, cookie=sign_in(portal, "alice")) == 200


# --- keys pinned by the environment or a mounted secret ----------------------------------------


def test_a_key_from_the_environment_pins_the_signing_key(tmp_path: Path) -> None:
    key, previous = generate_key(), generate_key()
    env = {"PORTAL_SIGNING_KEY": key.private_pem, "PORTAL_PREVIOUS_KEY": previous.private_pem}
    extra = 'key = "env:PORTAL_SIGNING_KEY"\nverify_keys = ["env:PORTAL_PREVIOUS_KEY"]'
    with serve(tmp_path, extra_portal=extra, env=env) as portal:
        portal.add_user("alice", "ea", wait=True)
        assert kid_of(sign_in(portal, "alice")) == key.kid
        assert jwks_kids(portal) == {key.kid, previous.kid}
        # a token of the previous key (deployed before this one) still opens the mount
        sid, user = portal.run_db(
            lambda db: store.open_session(db, "alice", lifetime=600, kind="api")
        )
        token = TokenCodec(previous, issuer=portal.url).sign(
            claims(typ="api", sub="alice", uid=user.uid, sid=sid, lvl="ea")
        )
        assert whoami(portal, token=token) == 200
        minted = run_cli(portal.settings_file, "token", "mint", "alice", env=env)
        assert minted.returncode == 0, minted.stderr
        assert kid_of(minted.stdout.splitlines()[-1]) == key.kid

        refused = run_cli(portal.settings_file, "keys", "rotate", env=env)
        assert refused.returncode != 0
        assert "pinned by [portal] key" in refused.stderr
        assert "verify_keys" in refused.stderr
        listed = run_cli(portal.settings_file, "keys", "list", env=env)
        assert listed.returncode == 0, listed.stderr
        assert re.search(rf"{key.kid}\s+-\s+signing\s+env PORTAL_SIGNING_KEY", listed.stdout)
        assert previous.kid in listed.stdout and "env PORTAL_PREVIOUS_KEY" in listed.stdout
        # nothing of it in the database, nor on disk
        assert portal.run_db(lambda db: signing_keys.read(db)) == []
    assert not (tmp_path / "key.pem").exists()


def test_a_mounted_secret_file_is_read_and_never_written(tmp_path: Path) -> None:
    secret = tmp_path / "key.pem"  # where settings_text puts key_file
    key = generate_key()
    secret.write_text(key.private_pem)
    secret.chmod(0o400)
    before = (secret.read_bytes(), secret.stat().st_mtime_ns)
    with serve(tmp_path, extra_portal='key_rotation = "manual"') as portal:
        portal.add_user("alice", "ea", wait=True)
        assert kid_of(sign_in(portal, "alice")) == key.kid
        assert jwks_kids(portal) == {key.kid}
        refused = run_cli(portal.settings_file, "keys", "rotate")
        assert refused.returncode != 0 and "pinned by [portal] key_file" in refused.stderr
        assert portal.run_db(lambda db: signing_keys.read(db)) == []
    assert (secret.read_bytes(), secret.stat().st_mtime_ns) == before

    # a pinned key file that is missing is an error, never a key made up on the spot
    secret.unlink()
    missing = run_cli(portal.settings_file, "keys", "list")
    assert missing.returncode != 0
    assert "no such key file" in missing.stderr and "never created" in missing.stderr
    assert not secret.exists()


def test_the_default_still_creates_the_key_file_on_first_start(tmp_path: Path) -> None:
    """`make run`: no key anywhere; the first start makes var/'s file and imports it."""
    assert not (tmp_path / "key.pem").exists()
    with serve(tmp_path) as portal:
        runtime = portal.portal.runtime
        assert runtime is not None
        assert file_kid(tmp_path / "key.pem") == runtime.key.kid
        rows = portal.run_db(lambda db: signing_keys.read(db))
        assert [(row.kid, row.origin) for row in rows] == [(runtime.key.kid, "key_file")]
        assert os.stat(tmp_path / "key.pem").st_mode & 0o777 == 0o600


def test_keys_rotate_before_any_start_keeps_the_key_file_valid(tmp_path: Path) -> None:
    """An upgrade: the key file that signed the sessions out there, an empty table, and
    `keys rotate` before any portal of this version started. The file's key goes in first (its
    tokens stay valid) and keeps signing until the new key, published meanwhile, takes over."""
    settings = tmp_path / "settings.toml"
    settings.write_text(settings_text(tmp_path))
    assert run_cli(settings, "db", "upgrade").returncode == 0
    key = generate_key()
    (tmp_path / "key.pem").write_text(key.private_pem)

    done = run_cli(settings, "keys", "rotate")  # the default: published 5 minutes ahead
    assert done.returncode == 0, done.stderr
    assert f"{key.kid} then verifies only" in done.stdout
    listed = run_cli(settings, "keys", "list")
    assert listed.returncode == 0, listed.stderr
    header, old, new = listed.stdout.splitlines()
    assert header.split() == ["kid", "created", "(UTC)", "state", "source"]
    assert old.startswith(key.kid) and "signing until" in old and "(from key_file)" in old
    assert "next: signs from" in new and "(keys rotate)" in new
    events = run_cli(settings, "audit", "tail")
    assert '"event": "key.rotate"' in events.stdout
