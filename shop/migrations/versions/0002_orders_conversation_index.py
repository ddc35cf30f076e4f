"""Index orders by conversation: the chat finds "my order" (payment confirmation, "did my payment go
through?") by the conversation it was placed in, which scanned every order before.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

INDEX = "ix_orders_conversation_id"


def _has_index() -> bool:
    return any(index["name"] == INDEX for index in sa.inspect(op.get_bind()).get_indexes("orders"))


def upgrade() -> None:
    # An unversioned database built by create_schema() from newer models has the index already.
    if not _has_index():
        op.create_index(INDEX, "orders", ["conversation_id"])


def downgrade() -> None:
    op.drop_index(INDEX, table_name="orders")
