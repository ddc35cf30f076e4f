"""Sales and retention: lead qualification and CRM delivery state on leads, scheduled cart reminders
and their opt-outs, stock and price alerts, and promotion broadcasts with one delivery per channel.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision: str = '0003'
down_revision: Union[str, Sequence[str], None] = '0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def _existing_tables() -> set:
    return set(sa.inspect(op.get_bind()).get_table_names())


def _lead_columns() -> set:
    return {column["name"] for column in sa.inspect(op.get_bind()).get_columns("leads")}


def upgrade() -> None:
    # An unversioned database built by create_schema() from newer models has these already.
    existing = _existing_tables()
    if "broadcasts" not in existing:
        _create_new_tables()
    if "crm_status" not in _lead_columns():
        _qualify_leads()


def _create_new_tables() -> None:
    op.create_table('broadcasts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=120), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('subject', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key')
    )
    op.create_table('cart_reminder_opt_outs',
    sa.Column('conversation_id', sa.String(length=255), nullable=False),
    sa.Column('opted_out_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('conversation_id')
    )
    op.create_table('broadcast_deliveries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('broadcast_id', sa.Integer(), nullable=False),
    sa.Column('subscriber_id', sa.Integer(), nullable=False),
    sa.Column('channel', sa.String(length=10), nullable=False),
    sa.Column('conversation_id', sa.String(length=255), nullable=True),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('product_handles', sa.JSON(), nullable=False),
    sa.Column('error', sa.String(length=300), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('sent_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['broadcast_id'], ['broadcasts.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['subscriber_id'], ['newsletter_subscribers.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('broadcast_id', 'subscriber_id', 'channel', name='broadcast_delivery_once_per_channel')
    )
    with op.batch_alter_table('broadcast_deliveries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_broadcast_deliveries_broadcast_id'), ['broadcast_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_broadcast_deliveries_subscriber_id'), ['subscriber_id'], unique=False)

    op.create_table('cart_reminders',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('cart_id', sa.Integer(), nullable=False),
    sa.Column('conversation_id', sa.String(length=255), nullable=False),
    sa.Column('sequence', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('due_at', sa.DateTime(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('discount_code_id', sa.Integer(), nullable=True),
    sa.Column('sent_at', sa.DateTime(), nullable=True),
    sa.Column('stop_reason', sa.String(length=20), nullable=False),
    sa.Column('recovered_order_id', sa.Integer(), nullable=True),
    sa.Column('recovered_cents', sa.Integer(), nullable=False),
    sa.Column('recovered_at', sa.DateTime(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['cart_id'], ['carts.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['discount_code_id'], ['discount_codes.id'], ),
    sa.ForeignKeyConstraint(['recovered_order_id'], ['orders.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('cart_reminders', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_cart_reminders_cart_id'), ['cart_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_cart_reminders_conversation_id'), ['conversation_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_cart_reminders_due_at'), ['due_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_cart_reminders_recovered_at'), ['recovered_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_cart_reminders_sent_at'), ['sent_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_cart_reminders_status'), ['status'], unique=False)

    op.create_table('stock_alerts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('variant_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('conversation_id', sa.String(length=255), nullable=True),
    sa.Column('email', sa.String(length=255), nullable=False),
    sa.Column('email_consent', sa.Boolean(), nullable=False),
    sa.Column('consent_text', sa.String(length=255), nullable=False),
    sa.Column('price_cents_at_subscription', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(), nullable=True),
    sa.Column('notified_at', sa.DateTime(), nullable=True),
    sa.Column('channel', sa.String(length=10), nullable=False),
    sa.Column('notified_price_cents', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['variant_id'], ['variants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('stock_alerts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_stock_alerts_conversation_id'), ['conversation_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_stock_alerts_notified_at'), ['notified_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_stock_alerts_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_stock_alerts_variant_id'), ['variant_id'], unique=False)


def _qualify_leads() -> None:
    with op.batch_alter_table('leads', schema=None) as batch_op:
        batch_op.add_column(sa.Column('source', sa.String(length=40), server_default='chat', nullable=False))
        batch_op.add_column(sa.Column('reasons', sa.JSON(), server_default='[]', nullable=False))
        batch_op.add_column(sa.Column('consent_text', sa.String(length=500), server_default='', nullable=False))
        batch_op.add_column(sa.Column('consented_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('callback_phone', sa.String(length=40), server_default='', nullable=False))
        batch_op.add_column(sa.Column('callback_requested_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('updated_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('crm_status', sa.String(length=20), server_default='pending', nullable=False))
        batch_op.add_column(sa.Column('crm_version', sa.Integer(), server_default='1', nullable=False))
        batch_op.add_column(sa.Column('crm_attempts', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('crm_next_attempt_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('crm_last_error', sa.String(length=500), server_default='', nullable=False))
        batch_op.add_column(sa.Column('crm_delivered_at', sa.DateTime(), nullable=True))
        batch_op.drop_index(batch_op.f('ix_leads_conversation_id'))
        batch_op.create_index(batch_op.f('ix_leads_conversation_id'), ['conversation_id'], unique=True)
        batch_op.create_index(batch_op.f('ix_leads_crm_status'), ['crm_status'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('leads', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_leads_crm_status'))
        batch_op.drop_index(batch_op.f('ix_leads_conversation_id'))
        batch_op.create_index(batch_op.f('ix_leads_conversation_id'), ['conversation_id'], unique=False)
        batch_op.drop_column('crm_delivered_at')
        batch_op.drop_column('crm_last_error')
        batch_op.drop_column('crm_next_attempt_at')
        batch_op.drop_column('crm_attempts')
        batch_op.drop_column('crm_version')
        batch_op.drop_column('crm_status')
        batch_op.drop_column('updated_at')
        batch_op.drop_column('callback_requested_at')
        batch_op.drop_column('callback_phone')
        batch_op.drop_column('consented_at')
        batch_op.drop_column('consent_text')
        batch_op.drop_column('reasons')
        batch_op.drop_column('source')

    with op.batch_alter_table('stock_alerts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_stock_alerts_variant_id'))
        batch_op.drop_index(batch_op.f('ix_stock_alerts_status'))
        batch_op.drop_index(batch_op.f('ix_stock_alerts_notified_at'))
        batch_op.drop_index(batch_op.f('ix_stock_alerts_conversation_id'))

    op.drop_table('stock_alerts')
    with op.batch_alter_table('cart_reminders', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_cart_reminders_status'))
        batch_op.drop_index(batch_op.f('ix_cart_reminders_sent_at'))
        batch_op.drop_index(batch_op.f('ix_cart_reminders_recovered_at'))
        batch_op.drop_index(batch_op.f('ix_cart_reminders_due_at'))
        batch_op.drop_index(batch_op.f('ix_cart_reminders_conversation_id'))
        batch_op.drop_index(batch_op.f('ix_cart_reminders_cart_id'))

    op.drop_table('cart_reminders')
    with op.batch_alter_table('broadcast_deliveries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_broadcast_deliveries_subscriber_id'))
        batch_op.drop_index(batch_op.f('ix_broadcast_deliveries_broadcast_id'))

    op.drop_table('broadcast_deliveries')
    op.drop_table('cart_reminder_opt_outs')
    op.drop_table('broadcasts')
