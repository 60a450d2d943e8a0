"""index personal_values.replaces_id, so erasing a subject does not scan every value

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 12:00:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Deleting a value makes the database check that no correction refers to it (the self
    # foreign key replaces_id): without this index, one full scan of the table per value.
    with op.batch_alter_table("personal_values", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_personal_values_replaces_id"), ["replaces_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("personal_values", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_personal_values_replaces_id"))
