"""fhir_resources: the embedded FHIR store

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 19:20:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fhir_resources",
        sa.Column("tenant_id", sa.String(64), primary_key=True),
        sa.Column("resource_type", sa.String(64), primary_key=True),
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("categories", sa.Text(), nullable=False),
        sa.Column("codes", sa.Text(), nullable=False),
        sa.Column("clinical_date", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_updated", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resource", sa.JSON(), nullable=False),
    )
    op.create_index(
        "ix_fhir_resources_patient",
        "fhir_resources",
        ["tenant_id", "patient_id", "resource_type", "clinical_date"],
    )
    op.create_index("ix_fhir_resources_updated", "fhir_resources", ["tenant_id", "last_updated"])


def downgrade() -> None:
    op.drop_index("ix_fhir_resources_updated", table_name="fhir_resources")
    op.drop_index("ix_fhir_resources_patient", table_name="fhir_resources")
    op.drop_table("fhir_resources")
