"""team goals: totals, contributions, milestones

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 03:30:00.000000
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import server.db


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('team_goal_totals',
    sa.Column('goal_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('period', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('team_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('total', sa.Float(), nullable=False),
    sa.Column('contributors', sa.Integer(), nullable=False),
    sa.Column('starts_at', server.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('ends_at', server.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('updated_at', server.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('summarized', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('goal_id', 'period', 'team_id')
    )
    with op.batch_alter_table('team_goal_totals', schema=None) as batch_op:
        batch_op.create_index('ix_team_goal_totals_rank', ['goal_id', 'period', 'total'], unique=False)
        batch_op.create_index('ix_team_goal_totals_ends', ['summarized', 'ends_at'], unique=False)

    op.create_table('team_goal_contributions',
    sa.Column('goal_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('period', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('team_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('member_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('amount', sa.Float(), nullable=False),
    sa.Column('first_at', server.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', server.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('goal_id', 'period', 'team_id', 'member_id')
    )
    with op.batch_alter_table('team_goal_contributions', schema=None) as batch_op:
        batch_op.create_index(
            'ix_team_goal_contributions_rank', ['goal_id', 'period', 'team_id', 'amount'], unique=False
        )

    op.create_table('team_goal_levels',
    sa.Column('goal_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('period', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('team_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('amount', sa.Float(), nullable=False),
    sa.Column('members', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('goal_id', 'period', 'team_id', 'amount')
    )

    op.create_table('team_goal_milestones',
    sa.Column('goal_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('period', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('team_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('at', sa.Integer(), nullable=False),
    sa.Column('reached_at', server.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('total', sa.Float(), nullable=False),
    sa.Column('period_start', server.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('phase', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('cursor', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('paid', sa.Integer(), nullable=False),
    sa.Column('claimed_by', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
    sa.Column('claimed_until', server.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('paid_at', server.db.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('goal_id', 'period', 'team_id', 'at')
    )
    with op.batch_alter_table('team_goal_milestones', schema=None) as batch_op:
        batch_op.create_index('ix_team_goal_milestones_paying', ['status', 'claimed_until'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('team_goal_milestones', schema=None) as batch_op:
        batch_op.drop_index('ix_team_goal_milestones_paying')
    op.drop_table('team_goal_milestones')
    op.drop_table('team_goal_levels')
    with op.batch_alter_table('team_goal_contributions', schema=None) as batch_op:
        batch_op.drop_index('ix_team_goal_contributions_rank')
    op.drop_table('team_goal_contributions')
    with op.batch_alter_table('team_goal_totals', schema=None) as batch_op:
        batch_op.drop_index('ix_team_goal_totals_ends')
        batch_op.drop_index('ix_team_goal_totals_rank')
    op.drop_table('team_goal_totals')
