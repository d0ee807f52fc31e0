"""members get a public handle

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 00:40:00.000000
"""
import secrets

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

# As server.members.models.new_handle draws them, written out: a migration keeps working
# whatever the code becomes.
_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_CHUNK = 5000


def _handle() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(12))


def upgrade() -> None:
    with op.batch_alter_table('members', schema=None) as batch_op:
        batch_op.add_column(sa.Column('handle', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True))
    conn = op.get_bind()
    members = sa.table('members', sa.column('id', sa.String()), sa.column('handle', sa.String()))
    ids = [row[0] for row in conn.execute(sa.select(members.c.id).order_by(members.c.id))]
    drawn: set[str] = set()
    update = members.update().where(members.c.id == sa.bindparam('member')).values(handle=sa.bindparam('h'))
    for lo in range(0, len(ids), _CHUNK):
        rows = []
        for member in ids[lo:lo + _CHUNK]:
            h = _handle()
            while h in drawn:
                h = _handle()
            drawn.add(h)
            rows.append({'member': member, 'h': h})
        conn.execute(update, rows)
    with op.batch_alter_table('members', schema=None) as batch_op:
        batch_op.alter_column('handle', existing_type=sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False)
        batch_op.create_index('ix_members_handle', ['handle'], unique=True)


def downgrade() -> None:
    with op.batch_alter_table('members', schema=None) as batch_op:
        batch_op.drop_index('ix_members_handle')
        batch_op.drop_column('handle')
