"""The fleet view (issue 17): nodes, their labels, changes and events, and maintained counts.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

NAME = sa.String(200).with_variant(sa.String(200, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "nodes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", NAME, nullable=False, unique=True),
        sa.Column("labels", sa.Text, nullable=False),
        sa.Column("interval_s", sa.Integer, nullable=False),
        sa.Column("agent", sa.Text),
        sa.Column("report_ts", sa.BigInteger, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("last_msg_id", sa.String(64), nullable=False),
        sa.Column("last_report_ms", sa.BigInteger, nullable=False),
        sa.Column("stale_at_ms", sa.BigInteger, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("error", sa.Boolean, nullable=False),
        sa.Column("pipeline_type", sa.Text),
        sa.Column("current", sa.Text, nullable=False),
        sa.Column("epoch", sa.Integer, nullable=False),
        sa.Column("acked_id", sa.BigInteger, nullable=False),
        sa.Column("change_id", sa.BigInteger, nullable=False),
        sa.Column("mix_day", sa.Integer),
        sa.Column("mix_types", sa.Text),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_nodes_state_name", "nodes", ["state", "name"])
    op.create_index("ix_nodes_type_name", "nodes", ["pipeline_type", "name"])
    op.create_index("ix_nodes_state_deadline", "nodes", ["state", "stale_at_ms"])
    op.create_table(
        "node_labels",
        sa.Column("node_id", sa.Integer, sa.ForeignKey("nodes.id"), primary_key=True),
        sa.Column("key", sa.String(63), primary_key=True),
        sa.Column("value", sa.String(512), nullable=False),
        sa.Column("node_name", NAME, nullable=False),
    )
    op.create_index("ix_node_labels_selector", "node_labels", ["key", "value", "node_name"])
    op.create_table(
        "changes",
        sa.Column("node_id", sa.Integer, sa.ForeignKey("nodes.id"), primary_key=True),
        sa.Column("epoch", sa.Integer, primary_key=True),
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("pipeline_type", sa.Text),
        sa.Column("record", sa.Text, nullable=False),
        sa.Column("received_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("node_id", sa.Integer, sa.ForeignKey("nodes.id"), nullable=False),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index("ix_events_node", "events", ["node_id", "id"])
    op.create_table(
        "counts",
        sa.Column("pipeline_type", sa.Text, primary_key=True),
        sa.Column("state", sa.String(16), primary_key=True),
        sa.Column("n", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "label_counts",
        sa.Column("key", sa.String(63), primary_key=True),
        sa.Column("value", sa.String(512), primary_key=True),
        sa.Column("n", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_label_counts_n", "label_counts", ["n"])
    op.create_table(
        "day_counts",
        sa.Column("day", sa.Integer, primary_key=True),
        sa.Column("pipeline_type", sa.Text, primary_key=True),
        sa.Column("n", sa.BigInteger, nullable=False),
    )
    meta = op.create_table(
        "meta",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
    )
    op.bulk_insert(meta, [{"name": "version", "value": 0}, {"name": "nodes", "value": 0}])


def downgrade() -> None:
    for table in ("meta", "day_counts", "label_counts", "counts", "events", "changes"):
        op.drop_table(table)
    op.drop_table("node_labels")
    op.drop_table("nodes")
