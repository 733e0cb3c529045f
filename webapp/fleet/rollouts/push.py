"""For fleets that push: the Bacalhau jobs and Kubernetes Jobs that run ``pipeline-manager set
... --expect-id`` on exactly one wave's pending nodes, each with its own ``expect_id``.

One job per node, because each node's ``expect_id`` is its own: Kubernetes takes the whole
stream (``kubectl apply -f``); Bacalhau takes one spec per file (the header says how to split
it). Values are written as JSON strings, which YAML reads as they are: no text a rollout holds
can change the document's shape. Progress still comes from the nodes' reports. No Flask.
"""

import hashlib
import json
import re

DB = "/data/sensor_data.db"
SOURCE = "/var/lib/sensor/data"
NODE_LABEL = "pipeline-node"  # the Bacalhau compute node's label carrying its fleet node name
_q = json.dumps  # a YAML-safe scalar


def command(rollout, expect_id) -> list[str]:
    """Return the node's command: the rollout's type, compare-and-set on ``expect_id``."""
    return [
        "pipeline-manager",
        "--db",
        DB,
        "set",
        rollout.pipeline_type,
        "--by",
        f"fleet:{rollout.author} (rollout {rollout.id})",
        "--reason",
        rollout.reason,
        "--expect-id",
        str(expect_id if expect_id is not None else 0),
        "--json",
    ]


def k8s_name(rollout_id: int, wave: int, node: str) -> str:
    """Return a DNS-label Job name for the node (lowercase, ≤ 63, unique by a hash suffix)."""
    plain = re.sub(r"[^a-z0-9-]+", "-", node.lower()).strip("-")[:30] or "node"
    digest = hashlib.sha256(node.encode()).hexdigest()[:8]
    return f"pipeline-rollout-{rollout_id}-w{wave}-{plain}-{digest}"


def items(lines) -> str:
    return "\n".join(lines)


def bacalhau(rollout, wave: int, nodes) -> str:
    """Return the wave's Bacalhau job specs, one per node, as a stream of YAML documents."""
    header = [
        f"# Rollout {rollout.id}, wave {wave}: {len(nodes)} node(s), set {rollout.pipeline_type}",
        f"# Each compute node carries the label {NODE_LABEL}=<its fleet node name>.",
        "# One spec per node (its own --expect-id); submit them one by one:",
        f"#   csplit -z -f rollout-{rollout.id}-w{wave}- THIS_FILE '/^---$/' '{{*}}'",
        f'#   for f in rollout-{rollout.id}-w{wave}-*; do bacalhau job run "$f" --wait; done',
        "# Exit 3 on a node: its pipeline changed since the centre knew it (a conflict, kept).",
    ]
    docs = []
    for node in nodes:
        constraints = [(NODE_LABEL, node.node_name)] + sorted(rollout_labels(rollout).items())
        lines = [
            "---",
            f"Name: {_q(k8s_name(rollout.id, wave, node.node_name))}",
            "Type: batch",
            "Count: 1",
            "Constraints:",
        ]
        for key, value in constraints:
            lines += [f"  - Key: {_q(key)}", '    Operator: "="', f"    Values: [{_q(value)}]"]
        lines += [
            "Tasks:",
            "  - Name: set",
            "    Engine:",
            "      Type: docker",
            "      Params:",
            '        Image: "pipeline-manager:latest"',
            '        Entrypoint: ["pipeline-manager"]',
            f"        Parameters: {_q(command(rollout, node.expect_id)[1:])}",
            "    InputSources:",
            '      - Target: "/data"',
            "        Source:",
            "          Type: local",
            "          Params:",
            f"            SourcePath: {_q(SOURCE)}",
            "            ReadWrite: true",
            "    Network:",
            "      Type: None",
            "    Timeouts:",
            "      ExecutionTimeout: 60",
        ]
        docs.append(items(lines))
    return items(header) + "\n" + "\n".join(docs) + "\n"


def kubernetes(rollout, wave: int, nodes) -> str:
    """Return the wave's Kubernetes Jobs, one per node (``nodeSelector`` on its host name)."""
    header = [
        f"# Rollout {rollout.id}, wave {wave}: {len(nodes)} node(s), set {rollout.pipeline_type}",
        "# One Job per node, pinned by kubernetes.io/hostname = its fleet node name:",
        "#   kubectl apply -f THIS_FILE",
        "# Exit 3: the node's pipeline changed since the centre knew it (a conflict, kept).",
    ]
    docs = []
    for node in nodes:
        lines = [
            "---",
            "apiVersion: batch/v1",
            "kind: Job",
            "metadata:",
            f"  name: {_q(k8s_name(rollout.id, wave, node.node_name))}",
            "  labels:",
            '    app.kubernetes.io/name: "pipeline-manager"',
            f'    pipeline-manager/rollout: "{rollout.id}"',
            "spec:",
            "  backoffLimit: 5",
            "  ttlSecondsAfterFinished: 86400",
            "  template:",
            "    spec:",
            "      restartPolicy: Never",
            f'      nodeSelector: {{"kubernetes.io/hostname": {_q(node.node_name)}}}',
            "      automountServiceAccountToken: false",
            "      securityContext: {runAsNonRoot: true, runAsUser: 10001, runAsGroup: 10001}",
            "      containers:",
            "        - name: set",
            '          image: "pipeline-manager:latest"',
            f"          command: {_q(command(rollout, node.expect_id))}",
            "          securityContext:",
            "            allowPrivilegeEscalation: false",
            "            readOnlyRootFilesystem: true",
            '            capabilities: {drop: ["ALL"]}',
            "          volumeMounts: [{name: sensor-data, mountPath: /data}]",
            "      volumes:",
            f"        - {{name: sensor-data, hostPath: {{path: {_q(SOURCE)}, type: Directory}}}}",
        ]
        docs.append(items(lines))
    return items(header) + "\n" + "\n".join(docs) + "\n"


def rollout_labels(rollout) -> dict:
    """Return the rollout's selector as labels (Bacalhau constraints beside the node's name)."""
    labels = {}
    for part in rollout.selector.split(","):
        key, _, value = part.partition("=")
        if key:
            labels[key] = value
    return labels
