"""The fleet's settings, in the shape of config.py's ``Setting`` (which holds them all): the
centre's (its store, the secret node keys derive from, the report rate) and the node's (where and
as whom ``pipeline notify --fleet`` reports). Kept apart so config.py stays one screenful of rules.
"""

# (env, key, default, kind, help), as webapp.core.config.Setting.
FLEET_SETTINGS = (
    (
        "PIPELINE_FLEET_DB",
        "FLEET_DB",
        None,
        "str",
        "The fleet centre's store: a SQLite path or a `postgresql://` URL (several centre hosts "
        "share one PostgreSQL). Unset: the embedded `instance/fleet.db`. Its schema is created "
        "when empty; `flask --app webapp.fleet fleet db upgrade` migrates an older one.",
    ),
    (
        "PIPELINE_FLEET_DB_FILE",
        "FLEET_DB_FILE",
        None,
        "path",
        "File holding `PIPELINE_FLEET_DB` (a Docker or Kubernetes secret: a PostgreSQL URL holds "
        "its password); used when `PIPELINE_FLEET_DB` is unset.",
    ),
    (
        "PIPELINE_FLEET_SECRET",
        "FLEET_SECRET",
        None,
        "str",
        "The centre's secret that every node key is derived from (`fleet keys` prints them); "
        "the rules of `PIPELINE_SECRET_KEY`. Unset: the centre refuses every report.",
    ),
    (
        "PIPELINE_FLEET_SECRET_FILE",
        "FLEET_SECRET_FILE",
        None,
        "path",
        "File holding the fleet secret (a Docker or Kubernetes secret); used when "
        "`PIPELINE_FLEET_SECRET` is unset.",
    ),
    (
        "PIPELINE_FLEET_REPORT_RATE",
        "FLEET_REPORT_RATE",
        500,
        "rate",
        "Reports per second the centre spreads the fleet's heartbeats to: with more nodes than "
        "this × their interval, each answer asks for a longer one (`next_report_s`).",
    ),
    (
        "PIPELINE_FLEET_URL",
        "FLEET_URL",
        None,
        "str",
        "The fleet centre `pipeline notify` reports this node to (`--fleet` replaces it): its "
        "base http(s) URL; reports go to `/api/fleet/report` under it.",
    ),
    (
        "PIPELINE_NODE",
        "NODE",
        None,
        "str",
        "This node's name in the fleet (`--node`): letters, digits, `.`, `_`, `-`, `@`, at most "
        "64. Unset: the host name.",
    ),
    (
        "PIPELINE_NODE_LABELS",
        "NODE_LABELS",
        None,
        "str",
        "This node's labels for the fleet view, `region=eu,site=berlin` (`--label` replaces "
        "them). Self-reported: they select and group, they grant nothing.",
    ),
    (
        "PIPELINE_FLEET_HEARTBEAT",
        "FLEET_HEARTBEAT",
        60,
        "str",
        "Seconds between two reports while nothing changes (5 to 86400, ±20 % jitter; the "
        "centre may ask for longer). A change is reported at once.",
    ),
    (
        "PIPELINE_FLEET_KEY",
        "FLEET_KEY",
        None,
        "str",
        "This node's key, `whsec_…`, that signs its reports (the centre prints it: `flask "
        "--app webapp.fleet fleet keys`).",
    ),
    (
        "PIPELINE_FLEET_KEY_FILE",
        "FLEET_KEY_FILE",
        None,
        "path",
        "File holding this node's key (a Docker or Kubernetes secret), used when "
        "`PIPELINE_FLEET_KEY` is unset; refused if other users may read it.",
    ),
    (
        "PIPELINE_FLEET_APPROVALS",
        "FLEET_APPROVALS",
        1,
        "int",
        "Operators who must agree before a fleet rollout may start: `1`, its author alone; "
        "`2`, another operator must approve it (the approver is recorded).",
    ),
    (
        "PIPELINE_FLEET_ACCEPT_ROLLOUTS",
        "FLEET_ACCEPT_ROLLOUTS",
        False,
        "bool",
        "`1`: this node applies the pipeline a fleet rollout asks for in the centre's signed "
        "answer (`--accept-rollouts`). Off: the node only reports.",
    ),
)
