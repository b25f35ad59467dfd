"""evidence records (the anchoring outbox) and anchor batches

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 19:20:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "anchor_batches",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("root", sa.String(66), nullable=False, unique=True),
        sa.Column("leaf_count", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("chain_id", sa.BigInteger(), nullable=True),
        sa.Column("contract", sa.String(42), nullable=True),
        sa.Column("tx_hash", sa.String(66), nullable=True),
        sa.Column("block_number", sa.BigInteger(), nullable=True),
        sa.Column("gas_used", sa.BigInteger(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(300), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("anchored_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_anchor_batches_status", "anchor_batches", ["status"])
    op.create_table(
        "evidence_records",
        sa.Column("seq", _BIGINT, primary_key=True, autoincrement=True),
        sa.Column("record_hash", sa.String(66), nullable=False, unique=True),
        sa.Column("message_id", sa.String(32), nullable=False, unique=True),
        sa.Column("session_id", sa.String(32), nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("record", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("batch_id", sa.String(32), sa.ForeignKey("anchor_batches.id"), nullable=True),
        sa.Column("leaf_index", sa.Integer(), nullable=True),
    )
    op.create_index("ix_evidence_records_session_id", "evidence_records", ["session_id"])
    op.create_index("ix_evidence_pending", "evidence_records", ["batch_id", "seq"])


def downgrade() -> None:
    op.drop_table("evidence_records")
    op.drop_table("anchor_batches")
