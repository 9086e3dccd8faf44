"""Login throttling: failed logins and bans, shared by every worker (db/throttle.py).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

MARIADB_TABLE: dict[str, Any] = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}


def upgrade() -> None:
    # A database made by `create_all` before migrations existed is stamped at 0001 (db/migrate.py)
    # and may already hold these tables: create only what is missing.
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if "login_bans" not in existing:
        op.create_table(
            "login_bans",
            sa.Column("kind", sa.String(length=16), nullable=False),
            sa.Column("key", sa.String(length=255), nullable=False),
            sa.Column("until", sa.DateTime(), nullable=False),
            sa.Column("created_at", sa.DateTime(), nullable=False),
            sa.Column("failures", sa.Integer(), nullable=False),
            sa.PrimaryKeyConstraint("kind", "key"),
            **MARIADB_TABLE,
        )
        op.create_index(op.f("ix_login_bans_until"), "login_bans", ["until"])
    if "login_failures" not in existing:
        op.create_table(
            "login_failures",
            sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
            sa.Column("kind", sa.String(length=16), nullable=False),
            sa.Column("key", sa.String(length=255), nullable=False),
            sa.Column("at", sa.DateTime(), nullable=False),
            sa.PrimaryKeyConstraint("id"),
            **MARIADB_TABLE,
        )
        op.create_index(op.f("ix_login_failures_at"), "login_failures", ["at"])
        op.create_index("ix_login_failures_kind_key_at", "login_failures", ["kind", "key", "at"])


def downgrade() -> None:
    op.drop_table("login_failures")
    op.drop_table("login_bans")
