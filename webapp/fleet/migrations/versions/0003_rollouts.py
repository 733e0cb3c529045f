"""Fleet rollouts (issue 18): rollouts, their nodes, maintained counts and audit trail.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

NAME = sa.String(200).with_variant(sa.String(200, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "rollouts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("selector", sa.Text, nullable=False),
        sa.Column("pipeline_type", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("waves", sa.Text, nullable=False),
        sa.Column("sizes", sa.Text, nullable=False),
        sa.Column("wave_timeout_s", sa.Integer, nullable=False),
        sa.Column("author", NAME, nullable=False),
        sa.Column("approvals_needed", sa.Integer, nullable=False),
        sa.Column("approvers", sa.Text, nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("wave", sa.Integer, nullable=False),
        sa.Column("wave_started_ms", sa.BigInteger),
        sa.Column("paused_reason", sa.Text),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("nodes_total", sa.Integer, nullable=False),
        sa.Column("revert_of", sa.Integer),
        sa.Column("groups", sa.Text, nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("updated_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_rollouts_status", "rollouts", ["status", "id"])
    op.create_table(
        "rollout_nodes",
        sa.Column("rollout_id", sa.Integer, primary_key=True),
        sa.Column("node_id", sa.Integer, primary_key=True),
        sa.Column("node_name", NAME, nullable=False),
        sa.Column("wave", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("previous_type", sa.Text),
        sa.Column("expect_id", sa.BigInteger),
        sa.Column("message", sa.Text),
        sa.Column("updated_ms", sa.BigInteger, nullable=False),
    )
    op.create_index(
        "ix_rollout_nodes_wave", "rollout_nodes", ["rollout_id", "wave", "status", "node_name"]
    )
    op.create_index(
        "ix_rollout_nodes_wave_name", "rollout_nodes", ["rollout_id", "wave", "node_name"]
    )
    op.create_index("ix_rollout_nodes_name", "rollout_nodes", ["rollout_id", "node_name"])
    op.create_table(
        "rollout_counts",
        sa.Column("rollout_id", sa.Integer, primary_key=True),
        sa.Column("wave", sa.Integer, primary_key=True),
        sa.Column("status", sa.String(16), primary_key=True),
        sa.Column("n", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "rollout_audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("rollout_id", sa.Integer, nullable=False),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
        sa.Column("actor", NAME, nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index("ix_rollout_audit_rollout", "rollout_audit", ["rollout_id", "id"])
    op.create_index("ix_node_rollouts_status", "node_rollouts", ["status", "node_id"])


def downgrade() -> None:
    op.drop_index("ix_node_rollouts_status", "node_rollouts")
    for table in ("rollout_audit", "rollout_counts", "rollout_nodes", "rollouts"):
        op.drop_table(table)
