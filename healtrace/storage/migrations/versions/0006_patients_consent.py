"""patients, consent grant mirror, patient keys and sessions, audit entries by patient

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 19:20:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "patients",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("fhir_patient_id", sa.String(64), nullable=False),
        sa.Column("address", sa.String(42), nullable=False),
        sa.Column("sealed_key", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "ix_patients_tenant_fhir", "patients", ["tenant_id", "fhir_patient_id"], unique=True
    )
    op.create_index("ix_patients_address", "patients", ["address"])
    op.create_table(
        "consent_grants",
        sa.Column("grant_id", sa.String(66), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("patient_id", sa.String(32), sa.ForeignKey("patients.id"), nullable=False),
        sa.Column("grantee", sa.String(42), nullable=False),
        sa.Column("grantee_label", sa.String(100), nullable=False),
        sa.Column("scope", sa.String(200), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("tx_hash", sa.String(66), nullable=False),
        sa.Column("revoked_tx_hash", sa.String(66), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_consent_grants_patient_id", "consent_grants", ["patient_id"])
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("patient_id", sa.String(32), nullable=True))
    with op.batch_alter_table("chat_sessions") as batch:
        batch.add_column(sa.Column("patient_id", sa.String(32), nullable=True))
    with op.batch_alter_table("audit_log") as batch:
        batch.add_column(sa.Column("patient_id", sa.String(32), nullable=True))
    op.create_index("ix_audit_log_patient_id", "audit_log", ["patient_id"])


def downgrade() -> None:
    op.drop_index("ix_audit_log_patient_id", "audit_log")
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_column("patient_id")
    with op.batch_alter_table("chat_sessions") as batch:
        batch.drop_column("patient_id")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("patient_id")
    op.drop_table("consent_grants")
    op.drop_table("patients")
