"""Tables, as SQLAlchemy 2 declarative models. Times are naive UTC (MariaDB DATETIME has no zone)."""

from __future__ import annotations

import datetime as dt
import secrets

from sqlalchemy import Boolean, DateTime, ForeignKey, Integer, MetaData, String, Text, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)


def new_uid() -> str:
    """A user's public id: random, so never handed out twice, whatever the database does with
    deleted rows' integer ids (SQLite reuses the highest one) or a restore from backup."""
    return secrets.token_urlsafe(16)


class Base(DeclarativeBase):
    # Named constraints, the same on SQLite and MariaDB, so a later migration can drop them by name.
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            # no "pk": MariaDB names every primary key PRIMARY, and warns about any other name
        }
    )


# MariaDB: utf8mb4 whatever the server's default, and a binary collation so that names and
# session ids compare exactly as on SQLite (`Alice` and `alice` are two users on both).
MARIADB_TABLE = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}


# AUTOINCREMENT on SQLite: a change id is never reused, even after the newest rows were deleted
# (MariaDB never reuses one anyway); a reused id would sit below what workers have read.
CHANGES_TABLE = {**MARIADB_TABLE, "sqlite_autoincrement": True}

# The same for signing keys: the newest key is the one with the highest id, ever.
SIGNING_KEYS_TABLE = {**MARIADB_TABLE, "sqlite_autoincrement": True}


class User(Base):
    __tablename__ = "users"
    __table_args__ = MARIADB_TABLE

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # What tokens name the user by (claim `uid`): a new user with a deleted user's name gets a
    # new uid, so the old user's tokens do not fit them. The empty server default only exists
    # because SQLite cannot add a NOT NULL column without one (r0003).
    uid: Mapped[str] = mapped_column(
        String(32), default=new_uid, server_default=text("''"), unique=True, index=True
    )
    username: Mapped[str] = mapped_column(String(150), unique=True)
    email: Mapped[str] = mapped_column(String(254), default="")
    name: Mapped[str] = mapped_column(String(200), default="")
    level: Mapped[str] = mapped_column(String(64))
    password_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    provider: Mapped[str] = mapped_column(String(32), default="local")
    subject: Mapped[str | None] = mapped_column(String(255), unique=True, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    last_login_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    # set by an admin's password reset and the first start's admin: the next sign-in leads to
    # /account until the user chose a password of their own (r0005)
    must_change_password: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=text("0")
    )


class Session(Base):
    """A browser session or an API token: both are tokens with a `sid` that can be revoked."""

    __tablename__ = "sessions"
    __table_args__ = MARIADB_TABLE

    sid: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16), default="browser")  # "browser" or "api"
    label: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime, index=True)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    # when the person behind a browser session last proved who they are (sign-in, or the
    # current password asked again): what re-authentication before sensitive admin actions
    # reads; None for API tokens (r0005)
    authenticated_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    # the address the session was opened from (or the token minted from), when known (r0005)
    client: Mapped[str] = mapped_column(String(64), default="", server_default=text("''"))


class Change(Base):
    """The change feed every worker polls: what changed, never why."""

    __tablename__ = "changes"
    __table_args__ = CHANGES_TABLE

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))  # "user", "session", "mount", "key"
    key: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)


class MountLevel(Base):
    """A product level set at run time (admin area), overriding settings.toml."""

    __tablename__ = "mount_levels"
    __table_args__ = MARIADB_TABLE

    path: Mapped[str] = mapped_column(String(255), primary_key=True)
    level: Mapped[str] = mapped_column(String(64))
    changed_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    changed_by: Mapped[str] = mapped_column(String(150), default="")


class AuditEvent(Base):
    __tablename__ = "audit_events"
    __table_args__ = MARIADB_TABLE

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    event: Mapped[str] = mapped_column(String(64), index=True)
    username: Mapped[str] = mapped_column(String(150), default="", index=True)
    client: Mapped[str] = mapped_column(String(64), default="")
    detail: Mapped[str] = mapped_column(Text, default="")


class SigningKeyRow(Base):
    """One of the portal's signing keys, when they are kept in the database (`[portal]
    key_rotation = "database"`, db/signing_keys.py): every worker and host reads its key set
    here. `private_pem` is as secret as a key file: encrypted when `key_passphrase` is set."""

    __tablename__ = "signing_keys"
    __table_args__ = SIGNING_KEYS_TABLE

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kid: Mapped[str] = mapped_column(String(64), unique=True)
    private_pem: Mapped[str] = mapped_column(Text)
    origin: Mapped[str] = mapped_column(String(16))  # "key_file", "key" (imported) or "rotate"
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    active_from: Mapped[dt.datetime] = mapped_column(DateTime)  # signs from then on
    # when the next key took over (set by the rotation that made it): verifies only from then on
    retired_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
