"""boards that rank teams

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 03:30:00.000000
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import server.db


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A team's score rows live with the members' (leaderboard_scores, the team id as member_id);
    # what each member brought to the team in a period is kept here, for the team's breakdown.
    op.create_table('leaderboard_team_shares',
    sa.Column('board_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('period', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('team_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('member_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('score', sa.BigInteger(), nullable=False),
    sa.Column('reached_at', server.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', server.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('board_id', 'period', 'team_id', 'member_id')
    )


def downgrade() -> None:
    op.drop_table('leaderboard_team_shares')
