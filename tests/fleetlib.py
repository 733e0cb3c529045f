"""Helpers for the fleet centre's tests: a fleet secret, records and reports, signed requests."""

import json
import time

from live import LiveServer

from webapp.accounts.signatures import derive_node_key, new_message_id, sign

#: A fleet secret the centre accepts (webapp/accounts/keys.py rules), fixed for the run.
FLEET_SECRET = "3c9e1f7a2b6d4e8f0a5c1b9d7e3f2a6c8b4d0e1f9a7c5b3d2e6f8a0c4b1d9e7f"
REPORT_URL = "/api/fleet/report"


def record(change_id=1, pipeline_type="raw", who="alice", reason="test", when=None):
    """Return a record as ``pipeline-manager get --json`` prints it."""
    return {
        "id": change_id,
        "pipeline_type": pipeline_type,
        "bucket": None,
        "managed": True,
        "updated_at": when or "2026-12-03T05:00:00.000Z",
        "updated_by": who,
        "metadata": {"reason": reason, "source": "cli"},
        "default": change_id == 0,
    }


def report(node="edge-001", *, current=None, changes=(), labels=None, seq=1, interval_s=60):
    """Return a report body (a dict) as the node's reporter sends it."""
    return {
        "node": node,
        "labels": {"region": "eu"} if labels is None else labels,
        "interval_s": interval_s,
        "agent": "pipeline-manager/test",
        "seq": seq,
        "current": current if current is not None else record(),
        "changes": list(changes),
        "accept_rollouts": False,
        "rollout": None,
    }


def signed(body, node=None, *, key=None, timestamp=None, msg_id=None):
    """Return (body bytes, headers) signed with ``node``'s key (or ``key``)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    name = node or (body.get("node") if isinstance(body, dict) else "edge-001")
    key = key or derive_node_key(FLEET_SECRET, name)
    stamp = int(time.time()) if timestamp is None else timestamp
    headers = sign(key, msg_id or new_message_id(), stamp, data)
    return data, {**headers, "Content-Type": "application/json"}


def post(client, body, **signing):
    """POST a signed report through a Flask test client; return the response."""
    data, headers = signed(body, **signing)
    return client.post(REPORT_URL, data=data, headers=headers)


class FleetServer(LiveServer):
    """A real gunicorn serving ``webapp.fleet:create_app()`` on a free loopback port."""

    app_spec = "webapp.fleet:create_app()"

    def __init__(self, fleet_db, state_path, *, workers=2, env=None):
        super().__init__(
            state_path,
            workers=workers,
            env={
                "PIPELINE_FLEET_DB": str(fleet_db),
                "PIPELINE_FLEET_SECRET": FLEET_SECRET,
                **(env or {}),
            },
        )
