"""A node's rollout assignment (issue 18): one row per node, read by primary key at ingest.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "node_rollouts",
        sa.Column("node_id", sa.Integer, sa.ForeignKey("nodes.id"), primary_key=True),
        sa.Column("rollout_id", sa.BigInteger, nullable=False),
        sa.Column("wave", sa.Integer, nullable=False),
        sa.Column("expect_id", sa.BigInteger),
        sa.Column("status", sa.String(16), nullable=False),
    )
    op.create_index("ix_node_rollouts_rollout", "node_rollouts", ["rollout_id", "wave"])


def downgrade() -> None:
    op.drop_table("node_rollouts")
