"""The rollout pages: the list with the form that creates one (``/rollouts``), one rollout's page
(waves with a bar each, the nodes that hold it, the audit trail, the actions the signed-in
operator may take; live by the 204 poll), and each started wave's push specs.

Writes are CSRF-protected forms (web/security.py) by the signed-in operator (the session names
them, never the form); a stale form (the rollout moved since the page was drawn) is answered
409 with who acted meanwhile, as the node dashboard answers a stale change.
"""

import htmx_flask
from flask import Blueprint, Response, current_app, redirect, render_template, request, url_for

from webapp.core.errors import ConflictError, InvalidInput, PipelineError
from webapp.core.pipelines import PIPELINE_TYPES
from webapp.core.text import clean_text
from webapp.web.auth import current_operator
from webapp.web.render import NAVIGATION, set_navigation

from . import push
from .model import PROGRESS
from .plan import DEFAULT_TIMEOUT_S, read_names, read_new_rollout
from .service import rollout_store
from .support import whole_arg
from .tables import ABORTED, CONFLICT, DRIFTED, ERROR, FINISHED, PENDING

bp = Blueprint("rollouts", __name__, url_prefix="/rollouts")

HOLDERS_SHOWN = 50
BAR_ORDER = ("taken", "pending", "conflict", "error", "drifted", "skipped", "waiting")
FORM_FIELDS = (
    "selector",
    "pipeline_type",
    "reason",
    "waves",
    "wave_timeout_s",
    "revert_of",
    "previous_type",
)


class SignInRequired(PipelineError):
    http_status = 403


def operator_or_refuse() -> str:
    operator = current_operator()
    if not operator:
        raise SignInRequired("sign in to act on rollouts")
    return operator


def poll_seconds() -> float:
    return max(current_app.config["POLL_SECONDS"], 0.2)


@bp.get("")
def index(form=None, problem=None, status=200):
    """List rollouts, newest first, with the form that creates one."""
    before = whole_arg(request.args.get("before"), "before", 1, 2**31 - 1, None)
    found = rollout_store().list(50, before)
    if form is None:
        form = {name: request.args.get(name, "") for name in FORM_FIELDS}
        form["waves"] = form["waves"] or "1, 10%, 100%"
        form["wave_timeout_s"] = form["wave_timeout_s"] or str(DEFAULT_TIMEOUT_S)
    context = {
        "rollouts": found,
        "form": form,
        "problem": problem,
        "types": PIPELINE_TYPES,
        "operator": current_operator(),
        "next_before": found[-1].id if len(found) == 50 else None,
    }
    return render_template("fleet/rollouts/index.html", **context), status


@bp.post("")
def create():
    """Create a rollout as the signed-in operator; its page shows the nodes and waves."""
    operator = operator_or_refuse()
    form = {name: request.form.get(name, "") for name in FORM_FIELDS}
    try:
        new = read_new_rollout({k: v for k, v in form.items() if v != ""})
        approvals = int(current_app.config.get("FLEET_APPROVALS") or 1)
        rollout = rollout_store().create(new, operator, approvals)
    except (InvalidInput, ConflictError) as error:
        return index(form, str(error), error.http_status)
    return redirect(url_for("rollouts.page", rollout_id=rollout.id), 303)


def wave_bars(rollout) -> list[dict]:
    """Return each wave's bar: segments (status, x %, width %) in BAR_ORDER."""
    bars = []
    for wave in rollout.waves:
        x, segments = 0.0, []
        for status in BAR_ORDER:
            width = wave.percent(status)
            if width:
                segments.append({"status": status, "x": round(x, 3), "width": round(width, 3)})
                x += width
        title = ", ".join(f"{wave.counts.get(s, 0)} {s}" for s in PROGRESS if wave.counts.get(s))
        bars.append({"wave": wave, "segments": segments, "title": title or "nothing yet"})
    return bars


def page_context(rollout_id: int, problem=None) -> dict:
    store = rollout_store()
    rollout = store.get(rollout_id)
    holding = []
    if rollout.wave >= 0:
        statuses = (PENDING, CONFLICT, ERROR, DRIFTED)
        holding = store.wave_nodes(rollout_id, rollout.wave, statuses, HOLDERS_SHOWN)
    operator = current_operator()
    return {
        "rollout": rollout,
        "bars": wave_bars(rollout),
        "holding": holding,
        "operator": operator,
        "actions": rollout.actions_for(operator),
        "problem": problem,
        "groups": store.groups(rollout_id) if rollout.status in (FINISHED, ABORTED) else {},
        "poll_seconds": poll_seconds(),
        "poll_timeout_ms": int(max(2.0, 2 * poll_seconds()) * 1000),
    }


@bp.get("/<int:rollout_id>")
def page(rollout_id):
    """Show one rollout: its waves and their progress, who holds it, its audit trail, actions."""
    return render_template("fleet/rollouts/page.html", **page_context(rollout_id))


@bp.get("/<int:rollout_id>/poll")
def poll(rollout_id):
    """Answer 204 while the rollout's version is the page's; else its live part again."""
    since = request.args.get("since", type=int)
    if since is not None and rollout_store().version(rollout_id) == since:
        return "", 204
    context = page_context(rollout_id)
    context["announce"] = f"Rollout {rollout_id} is {context['rollout'].status.replace('_', ' ')}"
    return htmx_flask.make_response(render_template("fleet/rollouts/_live.html", **context))


@bp.post("/<int:rollout_id>/<action>")
def act(rollout_id, action):
    """Take ``action`` on the rollout as the signed-in operator, at the version the page showed."""
    operator = operator_or_refuse()
    try:
        version = whole_arg(request.form.get("version"), "version", 0, 2**31 - 1, None)
        if version is None:
            raise InvalidInput("the form has no version: reload the page")
        why = clean_text(request.form.get("reason"), "reason", 2000)
        skip = read_names(request.form.get("skip"), "skip")
        retry = read_names(request.form.get("retry"), "retry")
        rollout_store().act(rollout_id, action, operator, version, why, skip, retry)
    except (InvalidInput, ConflictError) as error:
        context = page_context(rollout_id, str(error))
        return render_template("fleet/rollouts/page.html", **context), error.http_status
    return redirect(url_for("rollouts.page", rollout_id=rollout_id), 303)


@bp.get("/<int:rollout_id>/waves/<int:wave>/<kind>.yaml")
def push_spec(rollout_id, wave, kind):
    """Download the Bacalhau jobs or Kubernetes Jobs that set a started wave's pending nodes."""
    store = rollout_store()
    rollout = store.get(rollout_id)
    if kind not in ("bacalhau", "kubernetes") or not 1 <= wave <= rollout.wave + 1:
        raise InvalidInput("push specs exist for started waves only: bacalhau or kubernetes")
    nodes, after = [], None
    while True:  # a wave's pending nodes, read a page at a time
        rows = store.wave_nodes(rollout_id, wave - 1, (PENDING,), 500, after)
        nodes += rows
        if len(rows) < 500:
            break
        after = rows[-1].node_name
    text = (push.bacalhau if kind == "bacalhau" else push.kubernetes)(rollout, wave, nodes)
    response = Response(text, mimetype="application/yaml")
    name = f"rollout-{rollout_id}-wave-{wave}-{kind}.yaml"
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


def init_app(app) -> None:
    from . import notify

    app.register_blueprint(bp)
    notify.init_app(app)
    brand, links = app.extensions[NAVIGATION]
    set_navigation(app, brand, [*links, ("rollouts.index", "Rollouts")])
