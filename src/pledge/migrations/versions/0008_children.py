"""children: subjects' age bands and frozen state

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 11:20:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subjects", schema=None) as batch_op:
        batch_op.add_column(sa.Column("age_band", sa.String(length=10), nullable=True))
        batch_op.add_column(sa.Column("age_band_until", sa.Date(), nullable=True))
        batch_op.add_column(sa.Column("parental_consent_id", sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column("frozen_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("subjects", schema=None) as batch_op:
        batch_op.drop_column("frozen_at")
        batch_op.drop_column("parental_consent_id")
        batch_op.drop_column("age_band_until")
        batch_op.drop_column("age_band")
