"""wechat: one session per (tenant, openid), received messages deduplicated by MsgId

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 19:55:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "wechat_users",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("openid", sa.String(128), nullable=False),
        sa.Column("session_id", sa.String(32), sa.ForeignKey("chat_sessions.id"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "ix_wechat_users_tenant_openid", "wechat_users", ["tenant_id", "openid"], unique=True
    )
    op.create_table(
        "wechat_messages",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("msg_key", sa.String(192), nullable=False),
        sa.Column("openid", sa.String(128), nullable=False),
        sa.Column("msg_type", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("turn_id", sa.String(32), nullable=True),
        sa.Column("reply", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "ix_wechat_messages_key", "wechat_messages", ["tenant_id", "msg_key"], unique=True
    )


def downgrade() -> None:
    op.drop_index("ix_wechat_messages_key", table_name="wechat_messages")
    op.drop_table("wechat_messages")
    op.drop_index("ix_wechat_users_tenant_openid", table_name="wechat_users")
    op.drop_table("wechat_users")
