"""The admin area's data: `users.must_change_password` (a reset or first-start password must be
changed at the next sign-in), `sessions.authenticated_at` (when the person behind a browser
session last proved who they are, for re-authentication before sensitive admin actions),
`sessions.client` (the address a session was opened from), and an
index on `audit_events.username` for the audit log's filter.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-16
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def _columns(table: str) -> set[str]:
    return {column["name"] for column in sa.inspect(op.get_bind()).get_columns(table)}


def _indexes(table: str) -> set[str]:
    return {str(index["name"]) for index in sa.inspect(op.get_bind()).get_indexes(table)}


def upgrade() -> None:
    # A database made by `create_all` (stamped at 0001, db/migrate.py) may already have them.
    # Columns are added in place, never by copying a table (see r0003).
    if "must_change_password" not in _columns("users"):
        op.add_column(
            "users",
            sa.Column(
                "must_change_password",
                sa.Boolean(),
                server_default=sa.text("0"),
                nullable=False,
            ),
        )
    if "authenticated_at" not in _columns("sessions"):
        op.add_column("sessions", sa.Column("authenticated_at", sa.DateTime(), nullable=True))
    if "client" not in _columns("sessions"):
        op.add_column(
            "sessions",
            sa.Column("client", sa.String(length=64), server_default=sa.text("''"), nullable=False),
        )
    if "ix_audit_events_username" not in _indexes("audit_events"):
        op.create_index(
            op.f("ix_audit_events_username"), "audit_events", ["username"], unique=False
        )


def downgrade() -> None:
    op.drop_index(op.f("ix_audit_events_username"), table_name="audit_events")
    op.drop_column("sessions", "client")
    op.drop_column("sessions", "authenticated_at")
    op.drop_column("users", "must_change_password")
