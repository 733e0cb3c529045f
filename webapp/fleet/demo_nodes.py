"""The demo's simulated fleet: real node databases in a folder, each watched by the real notifier
(webapp.notify, in this process) reporting to the centre over HTTP with its own derived key.

Operators change pipelines over time through each node's own store (as ``pipeline-manager set``
does); one node stops reporting (it turns stale) and one node's database is replaced by a file
that is not a database (its reports then carry an error). No Flask.
"""

import contextlib
import logging
import os
import random
import threading

from webapp.accounts.signatures import derive_node_key
from webapp.core.pipelines import PIPELINE_TYPES
from webapp.core.store import PipelineStore
from webapp.notify.fleet import fleet_target
from webapp.notify.notifier import Notifier
from webapp.notify.state import NotifyState

SITES = (("eu", "berlin"), ("eu", "paris"), ("us", "boston"), ("us", "austin"), ("ap", "tokyo"))
OPERATORS = ("alice", "bob", "rollout-bot")
REASONS = {
    "raw": "Debugging a sensor: keep everything",
    "schematized": "New schema v2 validated on this site",
    "filtered": "Business rules approved (ticket OPS-42)",
    "aggregated": "Bandwidth is short here: send aggregates",
}
NOT_A_DATABASE = b"This file replaced the node's database: a bad restore.\n" * 64


class DemoNode:
    """One simulated edge board: its database, and the notifier that reports it."""

    def __init__(self, folder, index: int, centre_url: str, secret: str, heartbeat: int):
        self.name = f"edge-{index + 1:03d}"
        region, site = SITES[index % len(SITES)]
        self.path = os.path.join(folder, f"{self.name}.db")
        self.store = PipelineStore(self.path, create=True)
        config = {"FLEET_KEY": derive_node_key(secret, self.name)}
        labels = [f"region={region}", f"site={site}"]
        self.target = fleet_target(config, centre_url, self.name, labels, heartbeat, False)
        self.notifier = None
        self.thread = None

    def change(self, pipeline_type: str, who: str) -> None:
        """Set ``pipeline_type`` through the node's store, as an operator's CLI would."""
        self.store.set(pipeline_type, updated_by=who, reason=REASONS[pipeline_type], source="cli")

    def start_reporting(self) -> None:
        """Start the real notifier (watcher and fleet reporter threads) for this node."""
        state = NotifyState.open(self.path + ".notify-state.json")
        self.notifier = Notifier(
            lambda: PipelineStore(self.path), [], state, interval=0.5, fleet=self.target
        )
        self.notifier.start()
        self.thread = threading.Thread(target=self.notifier.run, name=self.name, daemon=True)
        self.thread.start()

    def stop_reporting(self) -> None:
        """Stop the notifier: the node falls silent (the centre shows it stale in time)."""
        if self.notifier is not None:
            self.notifier.stop()
            self.notifier.close(grace=5.0)
            self.notifier.state.close()
            self.notifier = None

    def break_database(self) -> None:
        """Replace the database with a file that is not one: its reports carry an error.

        Its -wal and -shm files go too: SQLite would still read the old pages from a WAL left
        beside a replaced file, and the node would go on reporting its old state.
        """
        with open(self.path + ".broken", "wb") as handle:
            handle.write(NOT_A_DATABASE)
        os.replace(self.path + ".broken", self.path)
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.path + suffix)


class DemoFleet:
    """``count`` nodes with a first history, reporting to ``centre_url``."""

    def __init__(self, folder, count: int, centre_url: str, secret: str, heartbeat: int, seed=None):
        self.random = random.Random(seed)
        self.nodes = [DemoNode(folder, i, centre_url, secret, heartbeat) for i in range(count)]
        self.stale = self.nodes[-1] if count >= 3 else None
        self.broken = self.nodes[-2] if count >= 3 else None
        # The notifier logs every report; the demo's own lines are what a newcomer reads.
        logging.getLogger("webapp.notify").setLevel(logging.WARNING)

    def seed_history(self) -> None:
        """Give every node a first change or three, most of the fleet rolled forward."""
        for node in self.nodes:
            node.store.set("raw", updated_by="installer", reason="First start", source="cli")
            for _ in range(self.random.choice((0, 1, 1, 2))):
                node.change(self.random.choice(PIPELINE_TYPES[1:]), self.random.choice(OPERATORS))

    def start(self) -> None:
        for node in self.nodes:
            node.start_reporting()

    def quieten_and_break(self) -> None:
        """Silence the stale node and break the error node (call once their first report is in)."""
        if self.stale is not None:
            self.stale.stop_reporting()
        if self.broken is not None:
            self.broken.break_database()

    def change_one(self) -> tuple[str, str, str]:
        """Change a random healthy node's pipeline; return (node, type, operator)."""
        healthy = [n for n in self.nodes if n not in (self.stale, self.broken)]
        node = self.random.choice(healthy)
        current = node.store.current().pipeline_type
        pipeline_type = self.random.choice([t for t in PIPELINE_TYPES if t != current])
        who = self.random.choice(OPERATORS)
        node.change(pipeline_type, who)
        return node.name, pipeline_type, who

    def stop(self) -> None:
        for node in self.nodes:
            node.stop_reporting()
            node.store.close()
