"""content versions remember the directory they were published from

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 00:30:00.000000
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('content_versions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('source_dir', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('content_versions', schema=None) as batch_op:
        batch_op.drop_column('source_dir')
