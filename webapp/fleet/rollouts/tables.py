"""The rollout tables (revision 0003), on the centre's metadata, and what a node's rollout status
means for its ``sync``. No queries here: store.py, gates.py and delivery.py write them.

- ``rollouts``: one row per rollout; ``version`` moves on every change (compare-and-set).
- ``rollout_nodes``: the nodes a rollout selected, their wave (fixed at creation), the type they
  ran then, ``expect_id`` (fixed when their wave started) and their status.
- ``rollout_counts``: maintained (rollout, wave, status) counts, so gates and pages read a few
  rows at any rollout size.
- ``rollout_audit``: every action, who, when, why.
- ``node_rollouts`` (revision 0002, schema.py): the one rollout that covers a node now, its status
  mirrored, read by primary key at each report.
"""

from sqlalchemy import BigInteger, Column, Index, Integer, String, Table, Text

from webapp.fleet.schema import Name, metadata, node_rollouts

__all__ = ["node_rollouts", "rollout_audit", "rollout_counts", "rollout_nodes", "rollouts"]

# A node's status in a rollout.
WAITING = "waiting"  # its wave has not started
PENDING = "pending"  # its wave started: the desire is due (or the Bacalhau job runs)
TAKEN = "taken"  # it reported the rollout's type
CONFLICT = "conflict"  # its pipeline changed locally since the centre knew it: not retried
ERROR = "error"  # it could not apply the desire (its message kept): not retried
SKIPPED = "skipped"  # an operator went on without it
DRIFTED = "drifted"  # it took the type, then reported another (a local change)
NODE_STATUSES = (WAITING, PENDING, TAKEN, CONFLICT, ERROR, SKIPPED, DRIFTED)

#: A node's ``sync`` from the status of the rollout that covers it (no row: None).
SYNC_OF_STATUS = {
    WAITING: "pending",
    PENDING: "pending",
    ERROR: "pending",
    TAKEN: "in_sync",
    DRIFTED: "drifted",
    CONFLICT: "conflict",
    SKIPPED: None,
}
SYNC_STATES = ("in_sync", "pending", "drifted", "conflict")


def statuses_of_sync(sync: str) -> tuple:
    """Return the statuses a ``sync`` filter value stands for."""
    return tuple(status for status, value in SYNC_OF_STATUS.items() if value == sync)


# A rollout's status.
AWAITING_APPROVAL = "awaiting_approval"
APPROVED = "approved"
RUNNING = "running"
PAUSED = "paused"
FINISHED = "finished"
ABORTED = "aborted"
ACTIVE = (AWAITING_APPROVAL, APPROVED, RUNNING, PAUSED)

rollouts = Table(
    "rollouts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("selector", Text, nullable=False),  # canonical "key=value,..." ("" = every node)
    Column("pipeline_type", String(64), nullable=False),
    Column("reason", Text, nullable=False),
    Column("waves", Text, nullable=False),  # JSON: the cumulative targets as asked
    Column("sizes", Text, nullable=False),  # JSON: each wave's node count
    Column("wave_timeout_s", Integer, nullable=False),
    Column("author", Name, nullable=False),
    Column("approvals_needed", Integer, nullable=False),
    Column("approvers", Text, nullable=False),  # JSON list of names
    Column("status", String(24), nullable=False),
    Column("wave", Integer, nullable=False),  # the started wave (0-based), -1 before the start
    Column("wave_started_ms", BigInteger),
    Column("paused_reason", Text),
    Column("version", Integer, nullable=False),
    Column("nodes_total", Integer, nullable=False),
    Column("revert_of", Integer),
    Column("groups", Text, nullable=False),  # JSON {type the nodes ran before: count}
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    Index("ix_rollouts_status", "status", "id"),
)

rollout_nodes = Table(
    "rollout_nodes",
    metadata,
    Column("rollout_id", Integer, primary_key=True),
    Column("node_id", Integer, primary_key=True),
    Column("node_name", Name, nullable=False),
    Column("wave", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("previous_type", Text),
    Column("expect_id", BigInteger),
    Column("message", Text),
    Column("updated_ms", BigInteger, nullable=False),
    Index("ix_rollout_nodes_wave", "rollout_id", "wave", "status", "node_name"),
    Index("ix_rollout_nodes_wave_name", "rollout_id", "wave", "node_name"),
    Index("ix_rollout_nodes_name", "rollout_id", "node_name"),
)

rollout_counts = Table(
    "rollout_counts",
    metadata,
    Column("rollout_id", Integer, primary_key=True),
    Column("wave", Integer, primary_key=True),
    Column("status", String(16), primary_key=True),
    Column("n", BigInteger, nullable=False),
)

rollout_audit = Table(
    "rollout_audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rollout_id", Integer, nullable=False),
    Column("at_ms", BigInteger, nullable=False),
    Column("actor", Name, nullable=False),
    Column("action", String(32), nullable=False),
    Column("detail", Text, nullable=False),  # JSON: why, wave, names
    Index("ix_rollout_audit_rollout", "rollout_id", "id"),
)

Index("ix_node_rollouts_status", node_rollouts.c.status, node_rollouts.c.node_id)
