"""Points expiry: the "expiring soon" notices claimed once per member and date

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24 17:05:00.000000
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import server.db


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('points_expiry_notices',
    sa.Column('member_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('expires_on', sa.Date(), nullable=False),
    sa.Column('created_at', server.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('member_id', 'expires_on')
    )


def downgrade() -> None:
    op.drop_table('points_expiry_notices')
