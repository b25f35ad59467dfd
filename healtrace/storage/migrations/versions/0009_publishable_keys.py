"""publishable_keys (placeholder: filled in by the part that owns these tables)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 19:55:00
"""

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
