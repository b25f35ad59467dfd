"""wechat (placeholder: filled in by the part that owns these tables)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 19:55:00
"""

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
