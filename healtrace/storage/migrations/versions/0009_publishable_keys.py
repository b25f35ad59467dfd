"""publishable_keys: API key kind (secret / publishable) and a publishable key's origins

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 19:55:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="secret"))
        batch.add_column(sa.Column("allowed_origins", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("allowed_origins")
        batch.drop_column("kind")
