"""Users get a public id that is never reused (`users.uid`, the `uid` claim of every token), and
the change feed's ids are never reused on SQLite either (AUTOINCREMENT).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import secrets
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

MARIADB_TABLE: dict[str, Any] = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}


def upgrade() -> None:
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    # A database made by `create_all` (stamped at 0001) may already have the column.
    if "uid" not in {column["name"] for column in inspector.get_columns("users")}:
        # Added in place, never by copying the table: on SQLite a copy drops `users`, and with
        # foreign keys on that deletes every session row (ON DELETE CASCADE), revoked ones
        # included. SQLite adds a NOT NULL column only with a default, hence the "".
        op.add_column(
            "users",
            sa.Column("uid", sa.String(length=32), server_default=sa.text("''"), nullable=False),
        )
        users = sa.table("users", sa.column("id", sa.Integer), sa.column("uid", sa.String))
        for (user_id,) in bind.execute(sa.select(users.c.id)).all():
            bind.execute(
                users.update().where(users.c.id == user_id).values(uid=secrets.token_urlsafe(16))
            )
        op.create_index(op.f("ix_users_uid"), "users", ["uid"], unique=True)
    if bind.dialect.name == "sqlite":
        # Nothing references `changes`, so copying it is safe; the copy is what gives it
        # AUTOINCREMENT (on MariaDB AUTO_INCREMENT already never reuses an id).
        with op.batch_alter_table(
            "changes", recreate="always", table_kwargs={"sqlite_autoincrement": True}
        ):
            pass


def downgrade() -> None:
    op.drop_index(op.f("ix_users_uid"), table_name="users")
    op.drop_column("users", "uid")
