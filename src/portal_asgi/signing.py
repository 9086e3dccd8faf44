"""Where the portal's signing keys come from, and how each worker keeps its `KeyRing` current.

`[portal] key_rotation` chooses (docs/keys.md):

- "database" (the default): the keys live in the `signing_keys` table (db/signing_keys.py).
  The key settings name (`key`, else `key_file`, created on first start) is only the first one,
  imported when the table is empty; from then on the table alone decides, on every host.
  `portal-asgi keys rotate` adds a key, and each worker reloads its ring (`KeyKeeper`) when the
  change feed announces it, when a new key's time to sign comes, and when a retired key's last
  token may have expired (directory.py calls it).
- "manual": settings pin the key (`key`, else `key_file`, read and never written), and
  `verify_keys` are accepted too; the operator rotates by deploying keys. Nothing is stored in
  the database, and `keys rotate` refuses.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from .db import signing_keys
from .db.engine import Database
from .db.models import utcnow
from .exceptions import KeyUnusable, UserError
from .keys import (
    KeyRing,
    SigningKey,
    generate_key,
    key_from_pem,
    load_or_create_key,
    read_key,
    sealed_pem,
)
from .settings import KeySource, PortalSettings

logger = logging.getLogger("portal_asgi.keys")

# After a reload that failed (a key the passphrase does not open), when to try again.
RETRY = dt.timedelta(minutes=1)


def _from_source(source: KeySource) -> SigningKey:
    if source.pem is not None:
        return key_from_pem(source.pem, where=source.label)
    assert source.path is not None
    return read_key(source.path)


def settings_key(portal: PortalSettings) -> SigningKey:
    """The key settings name: `key` (the environment), else `key_file`, which is created on
    first start unless the key is pinned (then it is the operator's to provide)."""
    if portal.key is not None:
        return _from_source(portal.key)
    if portal.key_rotation == "manual":
        return read_key(portal.key_file)
    return load_or_create_key(portal.key_file)


def _settings_label(portal: PortalSettings) -> str:
    return portal.key.label if portal.key is not None else f"file {portal.key_file}"


def _origin(portal: PortalSettings) -> str:
    return "key" if portal.key is not None else "key_file"


class KeyKeeper:
    """Keeps a worker's ring equal to the `signing_keys` table (key_rotation = "database")."""

    def __init__(
        self, portal: PortalSettings, db: Database, ring: KeyRing, *, first: SigningKey
    ) -> None:
        self.portal = portal
        self.db = db
        self.ring = ring
        self.first = first  # what an empty table gets
        self.loaded = False
        self.next_check: dt.datetime | None = None
        self._opened: dict[str, SigningKey] = {}  # by kid: a reload decrypts new keys only

    def due(self, now: dt.datetime) -> bool:
        """A key starts signing, or may have stopped verifying: time to read the table again."""
        return self.next_check is not None and now >= self.next_check

    async def load(self, now: dt.datetime | None = None) -> None:
        """Read the table (importing the first key into an empty one) and hold what it says. A
        key that cannot be opened fails the first load (the portal does not start on keys it
        cannot use); later, it is logged and the keys held so far are kept."""
        now = now or utcnow()
        rows = await signing_keys.read(self.db, now=now)
        if not rows:
            sealed = sealed_pem(self.first, self.portal.key_passphrase)
            if await signing_keys.import_first(
                self.db, self.first.kid, sealed, origin=_origin(self.portal), now=now
            ):
                logger.info(
                    "signing keys: imported %s (%s) into the database as the first key",
                    self.first.kid,
                    _settings_label(self.portal),
                )
            rows = await signing_keys.read(self.db, now=now)
        try:
            current, others, self.next_check = self._parts(rows, now)
        except KeyUnusable as exc:
            if not self.loaded:
                raise
            logger.error("signing keys: %s; keeping the keys held so far", exc)
            self.next_check = now + RETRY
            return
        # said when a running portal's keys change (the first load is every start's)
        if self.ring.replace(current, others) and self.loaded:
            logger.warning(
                "signing keys: signing with %s; verifying %s",
                current.kid,
                ", ".join(self.ring.kids),
            )
        self.loaded = True

    def _parts(
        self, rows: list[signing_keys.KeyRow], now: dt.datetime
    ) -> tuple[SigningKey, list[SigningKey], dt.datetime | None]:
        live = [row for row in rows if row.not_after is None or row.not_after > now]
        signing = signing_keys.signing_row(live, now)
        if signing is None:
            raise KeyUnusable("the signing_keys table holds no key that may sign now")
        keys = {row.kid: self._open(row) for row in live}
        self._opened = keys
        checks = [row.active_from for row in live if row.active_from > now]
        checks += [row.not_after for row in live if row.not_after is not None]
        others = [key for kid, key in keys.items() if kid != signing.kid]
        return keys[signing.kid], others, min(checks, default=None)

    def _open(self, row: signing_keys.KeyRow) -> SigningKey:
        known = self._opened.get(row.kid)
        if known is not None:
            return known
        key = key_from_pem(
            row.private_pem,
            where=f"signing key {row.kid} in the database",
            passphrase=self.portal.key_passphrase,
        )
        if key.kid != row.kid:
            raise KeyUnusable(f"signing key {row.kid} in the database: its PEM is another key")
        return key

    async def prune(self, now: dt.datetime | None = None) -> list[str]:
        return await signing_keys.prune(self.db, now=now)


def startup(portal: PortalSettings, db: Database) -> tuple[KeyRing, KeyKeeper | None]:
    """The ring a worker starts with, before the database answers: the key settings name (and
    `verify_keys`); with key_rotation = "database", the keeper that replaces it with the table's
    keys once the database answers."""
    first = settings_key(portal)
    if portal.key_rotation == "manual":
        return KeyRing(first, [_from_source(source) for source in portal.verify_keys]), None
    ring = KeyRing(first)
    return ring, KeyKeeper(portal, db, ring, first=first)


async def current_ring(
    portal: PortalSettings, db: Database, now: dt.datetime | None = None
) -> KeyRing:
    """The keys the running portal holds now (what the command line signs and verifies with)."""
    ring, keeper = startup(portal, db)
    if keeper is not None:
        await keeper.load(now)
    return ring


def pinned(portal: PortalSettings) -> str | None:
    """Why `keys rotate` cannot rotate these keys, or None when it can."""
    if portal.key_rotation != "manual":
        return None
    where = "key" if portal.key is not None else "key_file"
    return (
        f'the signing key is pinned by [portal] {where} (key_rotation = "manual"): rotate it '
        f"by deploying the new key as {where}, with the old one listed in [portal] verify_keys "
        "until its tokens have expired"
    )


@dataclass(frozen=True, slots=True)
class Rotation:
    kid: str
    active_from: dt.datetime
    replaced: list[str]


async def rotate(
    portal: PortalSettings, db: Database, *, activate_in: float, now: dt.datetime | None = None
) -> Rotation:
    """Add a new key that signs from `activate_in` seconds on; the key(s) it replaces verify
    until their tokens have expired."""
    refusal = pinned(portal)
    if refusal is not None:
        raise UserError(refusal)
    now = now or utcnow()
    # The settings' key goes in first when the table is empty: tokens it signed stay valid.
    await current_ring(portal, db, now)
    key = generate_key()
    active_from = now + dt.timedelta(seconds=activate_in)
    replaced = await signing_keys.add_next(
        db, key.kid, sealed_pem(key, portal.key_passphrase), active_from=active_from, now=now
    )
    return Rotation(key.kid, active_from, replaced)


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """One line of `portal-asgi keys list`."""

    kid: str
    created: str
    state: str
    source: str


def when(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


_SOURCES = {
    "key_file": "database (from key_file)",
    "key": "database (from [portal] key)",
    "rotate": "database (keys rotate)",
}


def _state(row: signing_keys.KeyRow, signing: signing_keys.KeyRow | None, now: dt.datetime) -> str:
    if row.active_from > now:
        return f"next: signs from {when(row.active_from)}"
    if signing is not None and row.id == signing.id:
        if row.retired_at is not None and row.retired_at > now:
            return f"signing until {when(row.retired_at)}"
        return "signing"
    if row.not_after is not None and row.not_after <= now:
        return "retired"
    if row.not_after is not None:
        return f"verifying only, until {when(row.not_after)}"
    return "verifying only"


async def describe(
    portal: PortalSettings, db: Database | None, now: dt.datetime | None = None
) -> list[KeyInfo]:
    """Every key the portal knows, with its state; `db` only for key_rotation = "database"."""
    if portal.key_rotation == "manual":
        first = settings_key(portal)
        infos = [KeyInfo(first.kid, "-", "signing", _settings_label(portal))]
        for source in portal.verify_keys:
            key = _from_source(source)
            infos.append(KeyInfo(key.kid, "-", "verifying only (verify_keys)", source.label))
        return infos
    assert db is not None, "keys kept in the database are listed from the database"
    now = now or utcnow()
    rows = await signing_keys.read(db, now=now)
    signing = signing_keys.signing_row(
        [row for row in rows if row.not_after is None or row.not_after > now], now
    )
    return [
        KeyInfo(
            row.kid,
            when(row.created_at),
            _state(row, signing, now),
            _SOURCES.get(row.origin, row.origin),
        )
        for row in rows
    ]
