"""friend help and friend quests; draw tickets in the ledger

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 03:30:00.000000
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

import server.db

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ledger_accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tickets", sa.BigInteger(), nullable=False, server_default="0"))

    op.create_table(
        "assists",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=24), nullable=False),
        sa.Column("member_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("target", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("target_key", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("quest_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("step_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("period", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("goal_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("team_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("amount", sa.Float(), nullable=False),
        sa.Column("tickets", sa.Integer(), nullable=False),
        sa.Column("helps_needed", sa.Integer(), nullable=False),
        sa.Column("helps", sa.Integer(), nullable=False),
        sa.Column("held", sa.Integer(), nullable=False),
        sa.Column("created_at", server.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", server.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("completed_at", server.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("assists", schema=None) as batch_op:
        batch_op.create_index("ix_assists_member", ["member_id", "created_at"], unique=False)
        batch_op.create_index(
            "ix_assists_member_target", ["member_id", "target_key", "expires_at"], unique=False
        )

    op.create_table(
        "assist_helps",
        sa.Column("assist_id", sqlmodel.sql.sqltypes.AutoString(length=24), nullable=False),
        sa.Column("helper_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("asker_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("day", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("at", server.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("new_member", sa.Boolean(), nullable=False),
        sa.Column("helper_joined_at", server.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("risk_score", sa.Integer(), nullable=False),
        sa.Column("risk_signals", sa.JSON(), nullable=False),
        sa.Column("reviewed_at", server.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("reviewed_by", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=True),
        sa.PrimaryKeyConstraint("assist_id", "helper_id"),
    )
    with op.batch_alter_table("assist_helps", schema=None) as batch_op:
        batch_op.create_index("ix_assist_helps_helper_day", ["helper_id", "day"], unique=False)
        batch_op.create_index("ix_assist_helps_asker", ["asker_id", "at"], unique=False)
        batch_op.create_index("ix_assist_helps_status", ["status", "at"], unique=False)

    op.create_table(
        "friend_quest_pairs",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=24), nullable=False),
        sa.Column("quest_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("period", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("inviter_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("invited_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("friend_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("inviter_progress", sa.Float(), nullable=False),
        sa.Column("friend_progress", sa.Float(), nullable=False),
        sa.Column("created_at", server.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("accepted_at", server.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("completed_at", server.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("friend_quest_pairs", schema=None) as batch_op:
        batch_op.create_index("ix_friend_quest_pairs_invited", ["invited_id", "status"], unique=False)

    op.create_table(
        "friend_quest_seats",
        sa.Column("member_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("quest_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("period", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("pair_id", sqlmodel.sql.sqltypes.AutoString(length=24), nullable=False),
        sa.PrimaryKeyConstraint("member_id", "quest_id", "period"),
    )
    with op.batch_alter_table("friend_quest_seats", schema=None) as batch_op:
        batch_op.create_index("ix_friend_quest_seats_pair", ["pair_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("friend_quest_seats", schema=None) as batch_op:
        batch_op.drop_index("ix_friend_quest_seats_pair")
    op.drop_table("friend_quest_seats")
    with op.batch_alter_table("friend_quest_pairs", schema=None) as batch_op:
        batch_op.drop_index("ix_friend_quest_pairs_invited")
    op.drop_table("friend_quest_pairs")
    with op.batch_alter_table("assist_helps", schema=None) as batch_op:
        batch_op.drop_index("ix_assist_helps_status")
        batch_op.drop_index("ix_assist_helps_asker")
        batch_op.drop_index("ix_assist_helps_helper_day")
    op.drop_table("assist_helps")
    with op.batch_alter_table("assists", schema=None) as batch_op:
        batch_op.drop_index("ix_assists_member_target")
        batch_op.drop_index("ix_assists_member")
    op.drop_table("assists")
    with op.batch_alter_table("ledger_accounts", schema=None) as batch_op:
        batch_op.drop_column("tickets")
