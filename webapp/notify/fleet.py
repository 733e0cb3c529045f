"""The fleet target of the notifier, as configured: the centre's URL, this node's name, labels,
heartbeat and key, each checked before anything starts (a bad value is one line, exit 2).

Options win over their ``PIPELINE_*`` settings. The key is never logged: logs, metrics and the
state file name the centre by ``scheme://host`` and a hash. No Flask, no SQL.
"""

import hashlib
import os
import socket
import stat
import urllib.parse
from dataclasses import dataclass, field

from webapp.accounts.signatures import key_problem
from webapp.accounts.users import NAME_CHARACTERS, name_problem
from webapp.core.config import read_secret_file
from webapp.core.errors import InvalidInput
from webapp.core.labels import parse_labels, split_labels
from webapp.notify.webhooks import Webhook, parse_webhook

REPORT_PATH = "/api/fleet/report"
MAX_NODE_NAME = 64
HEARTBEAT_DEFAULT = 60
HEARTBEAT_MIN, HEARTBEAT_MAX = 5, 86400
GENERATE_KEY = "flask --app webapp.fleet fleet keys (on the centre; node names on stdin)"


@dataclass(frozen=True)
class FleetTarget:
    """Where and as whom this node reports."""

    centre: Webhook  # the report URL (…/api/fleet/report), parsed as a webhook is
    node: str
    labels: dict = field(default_factory=dict)
    heartbeat: int = HEARTBEAT_DEFAULT
    key: str = field(default="", repr=False)
    accept_rollouts: bool = False

    @property
    def state_key(self) -> str:
        """The state file's key: one position per centre and node name."""
        text = f"fleet\0{self.centre.key}\0{self.node}"
        return hashlib.sha256(text.encode()).hexdigest()

    @property
    def label(self) -> str:
        return f"fleet {self.centre.label} as {self.node}"


def fleet_target(
    config, url=None, node=None, labels=(), heartbeat=None, accept_rollouts=False
) -> FleetTarget | None:
    """Return the fleet target the options (else ``config``'s settings) ask for, or None."""
    url = url or config.get("FLEET_URL")
    if not url:
        return None
    node = node if node is not None else (config.get("NODE") or socket.gethostname())
    if not labels:
        labels = split_labels(config.get("NODE_LABELS"))
    if heartbeat is None:
        heartbeat = config.get("FLEET_HEARTBEAT") or str(HEARTBEAT_DEFAULT)
    accept = accept_rollouts or bool(config.get("FLEET_ACCEPT_ROLLOUTS"))
    return FleetTarget(
        centre=report_url(url),
        node=node_name(node),
        labels=parse_labels(labels, "--label"),
        heartbeat=heartbeat_seconds(heartbeat),
        key=fleet_key(config),
        accept_rollouts=accept,
    )


def report_url(url: str) -> Webhook:
    """Return the centre's report endpoint under ``url`` (http or https, no query or fragment)."""
    url = url.strip()
    parse_webhook(url, where="--fleet")  # its checks first: scheme, host, characters
    parts = urllib.parse.urlsplit(url)
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise InvalidInput("--fleet: give the centre's base URL, without a query or fragment")
    path = parts.path.rstrip("/") + REPORT_PATH
    full = urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))
    return parse_webhook(full, where="--fleet")


def node_name(name: str) -> str:
    """Return ``name`` if it can name a node (account-name characters, ≤ 64), else raise."""
    if not isinstance(name, str):
        raise InvalidInput("--node must be text")
    problem = name_problem(name)
    if problem is None and len(name) > MAX_NODE_NAME:
        problem = f"is longer than {MAX_NODE_NAME} characters"
    if problem:
        raise InvalidInput(
            f"--node: the node name {problem}; use only {NAME_CHARACTERS} (at most "
            f"{MAX_NODE_NAME}, starting with a letter or digit)"
        )
    return name


def heartbeat_seconds(text) -> int:
    """Return the heartbeat from ``--heartbeat``/``PIPELINE_FLEET_HEARTBEAT``: whole seconds."""
    value = str(text).strip()
    # isdigit() alone accepts "²" and "٣": only ASCII digits, and no more than the range needs.
    if value.isascii() and value.isdigit() and len(value) <= 6:
        seconds = int(value)
        if HEARTBEAT_MIN <= seconds <= HEARTBEAT_MAX:
            return seconds
    raise InvalidInput(
        f"--heartbeat (PIPELINE_FLEET_HEARTBEAT) must be whole seconds from {HEARTBEAT_MIN} "
        f"to {HEARTBEAT_MAX} (got {value[:40]!r})"
    )


def fleet_key(config) -> str:
    """Return this node's key: ``PIPELINE_FLEET_KEY``, else the file ``PIPELINE_FLEET_KEY_FILE``.

    A key file others may read is refused (every account on the board could sign as this node);
    a key that is not ``whsec_`` + base64 of at least 24 bytes is refused.
    """
    source = "PIPELINE_FLEET_KEY"
    key = config.get("FLEET_KEY")
    if not key and config.get("FLEET_KEY_FILE"):
        path = config["FLEET_KEY_FILE"]
        source = "PIPELINE_FLEET_KEY_FILE"
        key = read_secret_file(path, source)
        if os.stat(path).st_mode & (stat.S_IROTH | stat.S_IWOTH):
            raise InvalidInput(
                f"{source}: {path} may be read by every user of this machine; "
                f"make it private (chmod 600 {path}, or defaultMode: 0400 in Kubernetes)"
            )
    if not key:
        raise InvalidInput(
            "--fleet needs this node's key: set PIPELINE_FLEET_KEY or PIPELINE_FLEET_KEY_FILE "
            f"(the centre prints each node's key: {GENERATE_KEY})"
        )
    problem = key_problem(key.strip())
    if problem:
        raise InvalidInput(f"{source}: the key {problem} (the centre prints it: {GENERATE_KEY})")
    return key.strip()
