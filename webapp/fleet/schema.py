"""The centre's tables (SQLAlchemy Core), the same on SQLite and PostgreSQL.

Alembic's revisions (migrations/versions/) create and change them; this module is what the store's
queries are written against, and must describe the head revision. Times are integer
milliseconds since the epoch (UTC), so "stale" is one indexed comparison on both backends.

Why each table exists:
- ``nodes``: one row per node, its newest report; ``state`` is kept exact by the read-time sweep
  (store_write.sweep) so filters and counts use an index instead of computing every row.
- ``node_labels``: one row per label, with the node's name, for keyset pages by selector.
- ``changes``: the node's change rows as reported, keyed (node, epoch, id): a restore starts an
  epoch, so ids the restored database reuses never collide with the ones before.
- ``events``: what happened to a node that is not one of its changes (a restore).
- ``counts``, ``label_counts``, ``day_counts``: maintained counts, so the summary and the 7-day
  mix read a few rows at any fleet size.
- ``meta``: single values; ``version`` moves when any node changes type, state or labels.
- ``node_rollouts`` (revision 0002, issue 18): a node's rollout assignment, read by primary key
  at ingest.
"""

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()
# Node names sort by their bytes on both backends (PostgreSQL's locale collations do not), so
# keyset cursors and name-prefix ranges mean the same thing everywhere.
Name = String(200).with_variant(String(200, collation="C"), "postgresql")

STATES = ("reporting", "stale", "error")
NO_TYPE = ""  # counts' key for a node that never reported a record (only errors)

nodes = Table(
    "nodes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", Name, nullable=False, unique=True),
    Column("labels", Text, nullable=False),  # JSON object, keys sorted
    Column("interval_s", Integer, nullable=False),  # as the node reported it
    Column("agent", Text),
    Column("report_ts", BigInteger, nullable=False),  # order key: webhook-timestamp ...
    Column("seq", BigInteger, nullable=False),  # ... then the node's report counter
    Column("last_msg_id", String(64), nullable=False),
    Column("last_report_ms", BigInteger, nullable=False),  # the centre's clock
    Column("stale_at_ms", BigInteger, nullable=False),  # last report + 3 × the interval asked
    Column("state", String(16), nullable=False),
    Column("error", Boolean, nullable=False),  # the last report carried an error
    Column("pipeline_type", Text),  # the newest type reported (kept through errors)
    Column("current", Text, nullable=False),  # JSON: the record (or error) as reported
    Column("epoch", Integer, nullable=False),
    Column("acked_id", BigInteger, nullable=False),  # newest change id held in this epoch
    Column("change_id", BigInteger, nullable=False),  # the current record's id
    Column("mix_day", Integer),  # day (since 1970) of the types counted in day_counts
    Column("mix_types", Text),  # those types, JSON list
    Column("created_ms", BigInteger, nullable=False),
    Index("ix_nodes_state_name", "state", "name"),
    Index("ix_nodes_type_name", "pipeline_type", "name"),
    Index("ix_nodes_state_deadline", "state", "stale_at_ms"),
)

node_labels = Table(
    "node_labels",
    metadata,
    Column("node_id", Integer, ForeignKey("nodes.id"), primary_key=True),
    Column("key", String(63), primary_key=True),
    Column("value", String(512), nullable=False),
    Column("node_name", Name, nullable=False),
    Index("ix_node_labels_selector", "key", "value", "node_name"),
)

changes = Table(
    "changes",
    metadata,
    Column("node_id", Integer, ForeignKey("nodes.id"), primary_key=True),
    Column("epoch", Integer, primary_key=True),
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("pipeline_type", Text),
    Column("record", Text, nullable=False),  # JSON, as reported
    Column("received_ms", BigInteger, nullable=False),
)

events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("node_id", Integer, ForeignKey("nodes.id"), nullable=False),
    Column("at_ms", BigInteger, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("detail", Text, nullable=False),  # JSON
    Index("ix_events_node", "node_id", "id"),
)

counts = Table(
    "counts",
    metadata,
    Column("pipeline_type", Text, primary_key=True),
    Column("state", String(16), primary_key=True),
    Column("n", BigInteger, nullable=False),
)

label_counts = Table(
    "label_counts",
    metadata,
    Column("key", String(63), primary_key=True),
    Column("value", String(512), primary_key=True),
    Column("n", BigInteger, nullable=False),
    Index("ix_label_counts_n", "n"),
)

day_counts = Table(
    "day_counts",
    metadata,
    Column("day", Integer, primary_key=True),
    Column("pipeline_type", Text, primary_key=True),
    Column("n", BigInteger, nullable=False),
)

meta = Table(
    "meta",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("value", BigInteger, nullable=False),
)

node_rollouts = Table(
    "node_rollouts",
    metadata,
    Column("node_id", Integer, ForeignKey("nodes.id"), primary_key=True),
    Column("rollout_id", BigInteger, nullable=False),
    Column("wave", Integer, nullable=False),
    Column("expect_id", BigInteger),  # the node's change id when its wave started
    Column("status", String(16), nullable=False),
    Index("ix_node_rollouts_rollout", "rollout_id", "wave"),
)
