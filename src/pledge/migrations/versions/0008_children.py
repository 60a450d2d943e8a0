"""children: subjects' age bands and frozen state, records kept through erasures; parental
consents

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
        batch_op.add_column(sa.Column("kept_from", sa.String(length=36), nullable=True))
        batch_op.create_index(batch_op.f("ix_subjects_kept_from"), ["kept_from"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_subjects_parental_consent_id"), ["parental_consent_id"], unique=True
        )

    op.create_table(
        "parental_consents",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("reason", sa.String(length=20), nullable=False),
        sa.Column("collection_point", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("parent_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("parent_index", sa.String(length=64), nullable=True),
        sa.Column("token_sha256", sa.String(length=64), nullable=True),
        sa.Column("child_token_sha256", sa.String(length=64), nullable=True),
        sa.Column("child_subject_id", sa.String(length=36), nullable=True),
        sa.Column("child_erased", sa.Boolean(), nullable=False),
        sa.Column("third_party_asked", sa.Boolean(), nullable=False),
        sa.Column("third_party_consented", sa.Boolean(), nullable=False),
        sa.Column("method", sa.String(length=30), nullable=True),
        sa.Column("evidence_reference", sa.Text(), nullable=True),
        sa.Column("evidence_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("evidence_key_id", sa.String(length=36), nullable=True),
        sa.Column("evidence_type", sa.String(length=100), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_parental_consents")),
    )
    with op.batch_alter_table("parental_consents", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_parental_consents_child_subject_id"), ["child_subject_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_parental_consents_expires_at"), ["expires_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_parental_consents_parent_index"), ["parent_index"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_parental_consents_status"), ["status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("parental_consents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_parental_consents_status"))
        batch_op.drop_index(batch_op.f("ix_parental_consents_parent_index"))
        batch_op.drop_index(batch_op.f("ix_parental_consents_expires_at"))
        batch_op.drop_index(batch_op.f("ix_parental_consents_child_subject_id"))

    op.drop_table("parental_consents")
    with op.batch_alter_table("subjects", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_subjects_parental_consent_id"))
        batch_op.drop_index(batch_op.f("ix_subjects_kept_from"))
        batch_op.drop_column("kept_from")
        batch_op.drop_column("frozen_at")
        batch_op.drop_column("parental_consent_id")
        batch_op.drop_column("age_band_until")
        batch_op.drop_column("age_band")
