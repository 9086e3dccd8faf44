"""The portal's signing keys in the database (`signing_keys`), so that every worker and host
shares one key set that `portal-asgi keys rotate` can change without a restart.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-09
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

# As in models.py (copied, not imported: a revision must not change when the models do).
MARIADB_TABLE: dict[str, Any] = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}


def upgrade() -> None:
    # A database made by `create_all` (stamped at 0001, db/migrate.py) may already have it.
    if "signing_keys" in set(sa.inspect(op.get_bind()).get_table_names()):
        return
    op.create_table(
        "signing_keys",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kid", sa.String(length=64), nullable=False),
        sa.Column("private_pem", sa.Text(), nullable=False),
        sa.Column("origin", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("active_from", sa.DateTime(), nullable=False),
        sa.Column("retired_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("kid", name=op.f("uq_signing_keys_kid")),
        sqlite_autoincrement=True,
        **MARIADB_TABLE,
    )


def downgrade() -> None:
    op.drop_table("signing_keys")
