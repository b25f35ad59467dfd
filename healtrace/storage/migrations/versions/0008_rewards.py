"""rewards: per-patient lock rows, claims, the append-only ledger, mint batches

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 19:20:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "reward_accounts",
        sa.Column("tenant_id", sa.String(64), primary_key=True),
        sa.Column("patient_id", sa.String(64), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "reward_claims",
        sa.Column("seq", _SEQ, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(32), nullable=False, unique=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("event_id", sa.String(128), nullable=False),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("event_type", sa.String(32), nullable=False),
        sa.Column("rule_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(48), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("amount", sa.String(80), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=True),
        sa.Column("valid", sa.Boolean(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
    )
    op.create_index(
        "ix_reward_claims_event", "reward_claims", ["tenant_id", "event_id"], unique=True
    )
    op.create_index(
        "ix_reward_claims_fingerprint",
        "reward_claims",
        ["tenant_id", "patient_id", "fingerprint"],
        unique=True,
    )
    op.create_index(
        "ix_reward_claims_patient",
        "reward_claims",
        ["tenant_id", "patient_id", "event_type", "received_at"],
    )
    op.create_index(
        "ix_reward_claims_rule_day",
        "reward_claims",
        ["tenant_id", "patient_id", "rule_id", "status", "day"],
    )
    op.create_table(
        "reward_ledger",
        sa.Column("seq", _SEQ, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("claim_id", sa.String(32), nullable=False),
        sa.Column("rule_id", sa.String(64), nullable=False),
        sa.Column("amount", sa.String(80), nullable=False),
        sa.Column("minted_of", sa.BigInteger(), nullable=True, unique=True),
        sa.Column("batch_id", sa.String(32), nullable=True),
        sa.Column("tx_hash", sa.String(66), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "ix_reward_ledger_patient", "reward_ledger", ["tenant_id", "patient_id", "kind"]
    )
    op.create_table(
        "reward_mint_batches",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("chain_batch_id", sa.String(66), nullable=False, unique=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("award_count", sa.Integer(), nullable=False),
        sa.Column("total", sa.String(80), nullable=False),
        sa.Column("tx_hash", sa.String(66), nullable=True),
        sa.Column("block_number", sa.BigInteger(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(300), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("minted_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index(
        "ix_reward_mint_batches_status", "reward_mint_batches", ["status", "created_at"]
    )
    op.create_table(
        "reward_mint_items",
        sa.Column("award_seq", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("batch_id", sa.String(32), nullable=False),
        sa.Column("address", sa.String(42), nullable=False),
        sa.Column("amount", sa.String(80), nullable=False),
    )
    op.create_index("ix_reward_mint_items_batch_id", "reward_mint_items", ["batch_id"])


def downgrade() -> None:
    op.drop_table("reward_mint_items")
    op.drop_table("reward_mint_batches")
    op.drop_table("reward_ledger")
    op.drop_table("reward_claims")
    op.drop_table("reward_accounts")
