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
    pass


def downgrade() -> None:
    pass
